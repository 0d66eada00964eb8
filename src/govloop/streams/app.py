"""The faust app: ``create_app(settings)`` builds it, no module-level state.

Agents are thin: decode a batch, call pure code (:mod:`govloop.streams.records`,
:mod:`govloop.gates`), apply the effect, publish the result.

* ``observe``   predictions + feedback -> join and window counters (Redis)
* timer         closes due windows -> ``metrics`` topic and SQL
* ``judge``     metric snapshots -> every matching policy -> ``gates`` topic and SQL

Input that fails its contract goes to ``deadletter`` with the reason; an error
that is not about the input (Redis or the database gone) crashes the worker,
which then exits non-zero, rather than dropping events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import faust
from sqlmodel import Session

from govloop.config import Settings
from govloop.errors import EventError
from govloop.gates import Policy, judge_snapshot, load_policies
from govloop.schemas import DeadLetter, Feedback, MetricSnapshot, Prediction, decode
from govloop.stores.sql import (
    create_engine_for,
    init_db,
    save_gate_result,
    save_policy,
    save_snapshot,
)
from govloop.stores.window_state import WindowStore
from govloop.streams.monitor import DriftMonitor
from govloop.streams.records import record_of, snapshot_of

__all__ = ["create_app"]

log = logging.getLogger("govloop.streams")

PAYLOAD_LIMIT = 8192


def dead_letter(source_topic: str, partition: int | None, offset: int | None,
                reason: str, raw: bytes | None) -> DeadLetter:
    """The dead-letter event for one message that could not be processed."""
    text = (raw or b"").decode("utf-8", errors="replace")
    return DeadLetter(source_topic=source_topic, partition=partition, offset=offset,
                      reason=reason[:2000], payload=text[:PAYLOAD_LIMIT])


def _save_all(save: Callable[[Session, Any], bool], items: Sequence[Any],
              session: Session) -> int:
    """Insert-once every item; return how many were new."""
    return sum(save(session, item) for item in items)


def input_partitions(settings: Settings) -> list[str]:
    """Every ``topic:partition`` of the input topics, as the broker reports them."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka)
    try:
        return [f"{topic}:{p}" for topic in (settings.topic("predictions"),
                                             settings.topic("feedback"))
                for p in sorted(consumer.partitions_for_topic(topic) or ())]
    finally:
        consumer.close()


def create_app(settings: Settings, policies: Sequence[Policy] | None = None) -> faust.App:
    """Build the stream worker's faust app for ``settings``."""
    import redis.asyncio as aioredis

    if settings.kafka is None or settings.redis_url is None:
        raise ValueError("create_app needs resolved settings (kafka and redis_url set)")
    policies = list(policies) if policies is not None else load_policies(settings.policies)
    app_id = settings.topic_prefix.rstrip(".") + "-worker"
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(1.0, settings.session_timeout_seconds / 4),
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_enabled=settings.worker_web_port is not None,
        web_port=settings.worker_web_port or 6066,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
    )
    engine = create_engine_for(settings)
    redis = aioredis.from_url(settings.redis_url.get_secret_value())
    store = WindowStore(
        redis,
        prefix=settings.redis_prefix,
        window_seconds=settings.window_seconds,
        grace_seconds=settings.window_grace_seconds,
        idle_close_seconds=settings.idle_close_seconds,
        horizon_seconds=settings.join_horizon_seconds,
        dedupe_seconds=settings.dedupe_seconds,
        partitions=input_partitions(settings),
    )
    def raw_topic(*names: str) -> Any:
        """Topics whose keys and values stay bytes: decoding is ours, not faust's."""
        return app.topic(*(settings.topic(n) for n in names),
                         value_serializer="raw", key_serializer="raw")

    inputs = raw_topic("predictions", "feedback")
    metrics_topic = raw_topic("metrics")
    gates_topic = raw_topic("gates")
    deadletter_topic = raw_topic("deadletter")
    drift_topic = raw_topic("drift")
    drift = DriftMonitor(settings, redis, engine)
    short = {settings.topic(n): n for n in ("predictions", "feedback", "metrics")}

    def in_db(fn: Callable[[Session], Any]) -> Awaitable[Any]:
        def run() -> Any:
            with Session(engine) as session:
                result = fn(session)
                session.commit()
                return result
        return asyncio.to_thread(run)

    async def send_dead(letters: list[DeadLetter]) -> None:
        for letter in letters:
            await deadletter_topic.send(value=letter.to_json())
        if letters:
            log.warning("sent %d invalid events to %s", len(letters), deadletter_topic)

    def decode_batch(events: Sequence[Any]) -> tuple[list[tuple[Any, Any]], list[DeadLetter]]:
        good, bad = [], []
        for ev in events:
            msg = ev.message
            try:
                good.append((decode(short[msg.topic], ev.value), msg))
            except EventError as exc:
                bad.append(dead_letter(msg.topic, msg.partition, msg.offset, exc.reason, ev.value))
        return good, bad

    @app.task
    async def record_policies() -> None:
        def save(session: Session) -> None:
            for p in policies:
                save_policy(session, p.name, p.content_hash, p.model_dump(mode="json"),
                            datetime.now(UTC))
        await asyncio.to_thread(init_db, engine)
        await in_db(save)

    @app.agent(inputs)
    async def observe(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=0.2):
            good, bad = decode_batch(events)
            records = [
                record_of(e, m.topic, m.partition, m.offset)
                for e, m in good
                if isinstance(e, Prediction | Feedback)
            ]
            await store.apply(records)
            await drift.observe([(e, f"{m.topic}:{m.partition}", m.offset)
                                 for e, m in good if isinstance(e, Prediction)])
            await send_dead(bad)

    @app.timer(interval=0.5)
    async def close_windows() -> None:
        windows = await store.claim_closed()
        if not windows:
            return
        snaps = [
            snapshot_of(settings.topic_prefix, w.model, w.model_version, w.start,
                        settings.window_seconds, w.counters)
            for w in windows
        ]
        for snap in snaps:
            await metrics_topic.send(key=snap.model.encode(), value=snap.to_json())
        await in_db(partial(_save_all, save_snapshot, snaps))
        await drift.close(windows, lambda alert: drift_topic.send(
            key=alert.model.encode(), value=alert.to_json()))
        await store.acknowledge(windows)
        await drift.forget(windows)

    @app.agent(metrics_topic)
    async def judge(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=0.2):
            good, bad = decode_batch(events)
            results = [
                judge_snapshot(policy, snap)
                for snap, _ in good
                if isinstance(snap, MetricSnapshot)
                for policy in policies
                if policy.applies_to(snap.model)
            ]
            for result in results:
                await gates_topic.send(key=result.model.encode(), value=result.to_json())
            await in_db(partial(_save_all, save_gate_result, results))
            await send_dead(bad)

    app.govloop_store = store  # type: ignore[attr-defined]
    return app
