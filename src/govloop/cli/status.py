"""``govloop status`` and ``govloop models``: what is running and what it has seen.

``status`` never fails because a service is down: saying so is its job.  It
reports each service (up or down, where, no password), the members of the
worker group and its lag per input partition, the policies
``GOVLOOP_POLICIES`` loads, each model version's reference (stored, or being
collected from its first events) and the windows open in Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from govloop.cli.output import (
    JsonOption,
    console,
    missing_sqlite_file,
    open_session,
    redact_url,
    shown,
    stderr,
)
from govloop.cli.settings import resolved_settings
from govloop.config import Settings
from govloop.errors import ConfigError

__all__ = ["end_offsets", "group_lag", "group_members", "models", "status"]

#: The topics the worker group consumes (govloop.streams.app.InputConsumer).
WORKER_INPUTS = ("predictions", "feedback", "metrics", "drift")
#: Polls of a quarter second at most to learn each partition's high watermark.
HIGHWATER_POLLS = 40


def group_members(settings: Settings) -> list[str]:
    """The member ids in the worker group: one per running stream worker.

    aiokafka's admin client, because kafka-python's cannot read the
    DescribeGroups answer of every broker (Tansu's authorised operations).
    """
    from aiokafka.admin import AIOKafkaAdminClient

    # aiokafka logs each failed connection as an ERROR; the caller reports the failure itself
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)

    async def describe() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=5000)
        await admin.start()
        try:
            found = await admin.describe_consumer_groups([settings.worker_group])
        finally:
            await admin.close()
        return [m[0] for response in found for g in response.groups for m in g[5]]

    try:
        return asyncio.run(describe())
    finally:
        quiet.setLevel(level)


def end_offsets(consumer: Any, partitions: list[Any]) -> dict[Any, int]:
    """Each partition's end offset: its high watermark, as a fetch reports it.

    Kafka clients ask ListOffsets, but the embedded broker (Tansu) answers it
    with the number of record batches, not of records: a producer that
    batches makes a partition look shorter than it is.  The high watermark
    in a fetch response is right on every broker, so each partition is
    fetched once from where ListOffsets points (never past the end).  The
    consumer is left assigned to ``partitions``.
    """
    listed = consumer.end_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, listed[tp])
    for _ in range(HIGHWATER_POLLS):
        if all(consumer.highwater(tp) is not None for tp in partitions):
            break
        consumer.poll(timeout_ms=250, max_records=1)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in partitions}


def group_lag(settings: Settings) -> list[dict[str, Any]]:
    """Per input partition: the end offset, the worker group's committed offset and the lag.

    A partition the group has never committed lags by all it holds.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=5000)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka, request_timeout_ms=5000)
    try:
        committed = admin.list_group_offsets([settings.worker_group]).get(settings.worker_group, {})
        parts = [
            TopicPartition(settings.topic(name), p)
            for name in WORKER_INPUTS
            for p in sorted(consumer.partitions_for_topic(settings.topic(name)) or ())
        ]
        ends = end_offsets(consumer, parts) if parts else {}
        starts = consumer.beginning_offsets(parts) if parts else {}
    finally:
        consumer.close()
        admin.close()
    rows = []
    for tp in parts:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else starts[tp]
        rows.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "end": ends[tp],
                "committed": None if done is None else done.offset,
                "lag": max(0, ends[tp] - position),
            }
        )
    return rows


def _probe_kafka(settings: Settings) -> dict[str, Any]:
    from aiokafka.errors import KafkaError as AioKafkaError
    from kafka.errors import KafkaError

    from govloop.runtime import answers

    if settings.kafka is None:
        return {"up": False, "where": None, "detail": "not configured and no `govloop up` found"}
    out: dict[str, Any] = {"up": False, "where": settings.kafka}
    host, _, port = settings.kafka.split(",")[0].rpartition(":")
    if not answers(host, int(port), timeout=2.0):
        return out | {"detail": "does not answer"}
    try:
        members = group_members(settings)
        lag = group_lag(settings)
    except (TimeoutError, KafkaError, AioKafkaError, OSError) as exc:
        return out | {"detail": f"{exc.__class__.__name__}: {exc}"}
    return out | {"up": True, "workers": members, "lag": lag}


def _probe_redis(settings: Settings) -> tuple[dict[str, Any], Any]:
    """Redis's entry in the status, and a client when it answers (else None)."""
    import redis

    if settings.redis_url is None:
        return {"up": False, "where": None, "detail": "not configured"}, None
    url = settings.redis_url.get_secret_value()
    entry: dict[str, Any] = {"up": False, "where": redact_url(url)}
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        return entry | {"detail": f"{exc.__class__.__name__}: {exc}"}, None
    return entry | {"up": True}, client


def _probe_sql(settings: Settings) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from govloop.stores.sql import create_engine_for

    where = redact_url(settings.database_url)
    if missing_sqlite_file(settings) is not None:  # connecting would create it: say so instead
        return {"up": False, "where": where, "detail": "no database file yet"}
    try:
        engine = create_engine_for(settings)
    except ConfigError as exc:
        return {"up": False, "where": None, "detail": str(exc)}
    except (SQLAlchemyError, ImportError, OSError) as exc:
        return {"up": False, "where": None, "detail": f"GOVLOOP_DB_URL: {exc.__class__.__name__}"}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        return {"up": False, "where": where, "detail": reason[0] if reason else "error"}
    finally:
        engine.dispose()
    return {"up": True, "where": where}


def _policies(settings: Settings) -> dict[str, Any]:
    from govloop.errors import PolicyError
    from govloop.gates import load_policies

    try:
        loaded = load_policies(settings.policies)
    except PolicyError as exc:
        return {"spec": settings.policies, "error": str(exc).splitlines()[0], "loaded": []}
    return {
        "spec": settings.policies,
        "loaded": [
            {"name": p.name, "sha256": p.content_hash, "rules": len(p.rules)} for p in loaded
        ],
    }


def _references(settings: Settings, sql_up: bool, client: Any) -> list[dict[str, Any]]:
    """Per model version: its newest stored reference, or the events collected towards one."""
    from sqlmodel import select

    from govloop.stores.redis.reset import pending_references
    from govloop.stores.sql import ReferenceProfileRow

    stored: dict[tuple[str, str], ReferenceProfileRow] = {}
    if sql_up:
        with open_session(settings) as session:
            for ref in session.exec(select(ReferenceProfileRow)):
                key = (ref.model, ref.model_version)
                if key not in stored or ref.version > stored[key].version:
                    stored[key] = ref
    pending = pending_references(client, settings.redis_prefix) if client is not None else {}
    out = []
    for model, version in sorted(stored.keys() | pending.keys()):
        row = stored.get((model, version))
        out.append(
            {
                "model": model,
                "model_version": version,
                "reference": None if row is None else f"v{row.version} ({row.source})",
                "collected": pending.get((model, version)),
                "needed": settings.reference_events,
            }
        )
    return out


def _open_windows(settings: Settings, client: Any) -> list[dict[str, Any]]:
    from govloop.stores.redis.reset import open_windows

    if client is None:
        return []
    return [
        {
            "model": w.model,
            "model_version": w.model_version,
            "start": datetime.fromtimestamp(w.start, UTC).isoformat(),
            "end": datetime.fromtimestamp(w.end, UTC).isoformat(),
            "predictions": w.count,
        }
        for w in open_windows(client, settings.redis_prefix)
        if not w.slice
    ]


def _late(settings: Settings, client: Any) -> list[dict[str, Any]]:
    """Per model version, the events that came after their window had closed (not counted)."""
    from govloop.stores.redis.reset import late_counts

    if client is None:
        return []
    return [
        {"model": m, "model_version": v, "late": n}
        for (m, v), n in sorted(late_counts(client, settings.redis_prefix).items())
    ]


def gather_status(settings: Settings) -> dict[str, Any]:
    """Everything ``govloop status`` reports, as JSON-ready data."""
    kafka = _probe_kafka(settings)
    sql = _probe_sql(settings)
    redis_entry, client = _probe_redis(settings)
    try:
        return {
            "services": {
                "kafka": {k: v for k, v in kafka.items() if k not in ("workers", "lag")},
                "redis": redis_entry,
                "sql": sql,
            },
            "worker_group": settings.worker_group,
            "workers": kafka.get("workers"),
            "lag": kafka.get("lag"),
            "policies": _policies(settings),
            "references": _references(settings, sql["up"], client),
            "open_windows": _open_windows(settings, client),
            "late": _late(settings, client),
        }
    finally:
        if client is not None:
            client.close()


def status(as_json: JsonOption = False) -> None:
    """Services, workers, lag per partition, policies loaded, references, open windows."""
    report = gather_status(resolved_settings())
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    from rich.table import Table

    services = Table("service", "state", "where", "detail", title="services", title_justify="left")
    for name, s in report["services"].items():
        state = "[green]up[/]" if s["up"] else "[bold red]down[/]"
        services.add_row(name, state, shown(s.get("where") or "-"), shown(s.get("detail", "")))
    console.print(services)
    workers = report["workers"]
    console.print(
        f"workers in group {shown(report['worker_group'])}: "
        + ("unknown (broker down)" if workers is None else str(len(workers)))
        + "".join(f"\n  {shown(member)}" for member in workers or []),
        soft_wrap=True,
    )
    if report["lag"]:
        lag = Table("topic", "partition", "end", "committed", "lag", title="lag of the workers")
        for r in report["lag"]:
            committed = "-" if r["committed"] is None else str(r["committed"])
            lag.add_row(r["topic"], str(r["partition"]), str(r["end"]), committed, str(r["lag"]))
        console.print(lag)
    pol = report["policies"]
    if "error" in pol:
        console.print(f"policies: [bold red]{shown(pol['error'])}[/]", soft_wrap=True)
    elif pol["loaded"]:
        names = ", ".join(f"{shown(p['name'])} ({p['rules']} rules)" for p in pol["loaded"])
        console.print(f"policies: {names}", soft_wrap=True)
    else:
        console.print("policies: none (GOVLOOP_POLICIES is empty)")
    if report["references"]:
        refs = Table("model", "version", "reference", "collecting", title="references")
        for r in report["references"]:
            collecting = "-" if r["collected"] is None else f"{r['collected']} of {r['needed']}"
            refs.add_row(
                shown(r["model"]),
                shown(r["model_version"]),
                shown(r["reference"] or "-"),
                collecting,
            )
        console.print(refs)
    windows = Table("model", "version", "window (UTC)", "predictions", title="open windows")
    for w in report["open_windows"]:
        windows.add_row(
            shown(w["model"]),
            shown(w["model_version"]),
            f"{w['start'][:19]} - {w['end'][11:19]}",
            str(w["predictions"]),
        )
    console.print(windows if report["open_windows"] else "open windows: none")
    for item in report["late"]:
        console.print(
            f"[yellow]late:[/] {item['late']} events of {shown(item['model'])} "
            f"{shown(item['model_version'])} came after their window had closed",
            soft_wrap=True,
        )


def gather_models(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    """Each model version seen: stored windows (SQL) and open ones (Redis, when it answers);
    and a note when Redis did not answer."""
    import redis
    from sqlalchemy import func, select
    from sqlmodel import col

    from govloop.stores.redis.reset import open_windows
    from govloop.stores.sql import MetricSnapshotRow

    seen: dict[tuple[str, str], dict[str, Any]] = {}
    with open_session(settings) as session:
        r = MetricSnapshotRow
        query = (
            select(
                col(r.model),
                col(r.model_version),
                func.count(),
                func.sum(col(r.count)),
                func.max(col(r.window_end)),
            )
            .where(col(r.window_kind) == "tumbling", col(r.slice_kind) == "")
            .group_by(col(r.model), col(r.model_version))
        )
        for model, version, windows, predictions, last in session.execute(query):
            seen[(model, version)] = {
                "windows": windows,
                "predictions": int(predictions or 0),
                "last_window_end": last.replace(tzinfo=UTC).isoformat() if last else None,
            }
    note = None
    if settings.redis_url is not None:
        client = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5)
        try:
            for w in open_windows(client, settings.redis_prefix):
                if not w.slice:
                    entry = seen.setdefault(
                        (w.model, w.model_version),
                        {"windows": 0, "predictions": 0, "last_window_end": None},
                    )
                    entry["open_predictions"] = entry.get("open_predictions", 0) + w.count
        except (redis.RedisError, OSError) as exc:
            # the stored windows are the record: shown anyway, with a word about the rest
            where = redact_url(settings.redis_url.get_secret_value())
            note = f"Redis at {where} did not answer ({exc.__class__.__name__}): no open windows"
        finally:
            client.close()
    items = [
        {"model": m, "model_version": v, "open_predictions": 0} | entry
        for (m, v), entry in sorted(seen.items())
    ]
    return items, note


def models(as_json: JsonOption = False) -> None:
    """The models and versions seen, with their last window and counts of predictions."""
    items, note = gather_models(resolved_settings())
    if note is not None:
        stderr.print(f"note: {shown(note)}", soft_wrap=True)
    if as_json:
        print(json.dumps(items, indent=2))
        return
    if not items:
        console.print("no models seen yet: the worker stores a snapshot as each window closes")
        return
    from rich.table import Table

    table = Table("model", "version", "windows", "predictions", "open", "last window end (UTC)")
    for i in items:
        table.add_row(
            shown(i["model"]),
            shown(i["model_version"]),
            str(i["windows"]),
            str(i["predictions"]),
            str(i["open_predictions"]),
            (i["last_window_end"] or "-")[:19].replace("T", " "),
        )
    console.print(table)
