"""Reading a decision's inputs again: the exact Kafka record, or the SQL store's copy.

Each input is held to the SHA-256 its manifest recorded: what was read is
noted, and a mismatch is a difference (:func:`held_to`).
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from sqlmodel import Session

from govloop.audit.manifest import event_digest
from govloop.config import Settings
from govloop.errors import GovloopError, RuntimeUnavailable
from govloop.runtime.ports import answers
from govloop.schemas import TOPICS, DriftAlert, MetricSnapshot, decode
from govloop.stores.sql.tables import DriftAlertRow, MetricSnapshotRow

__all__ = ["ReplayError", "held_to", "read_event", "read_record"]


class ReplayError(GovloopError):
    """A decision that cannot be replayed: no such result, no manifest, an input gone."""


def read_record(
    settings: Settings, topic: str, partition: int, offset: int, timeout: float = 10.0
) -> bytes | None:
    """The value of exactly one Kafka record; errors name topic, partition and offset."""
    where = f"{topic} partition {partition} offset {offset}"
    if settings.kafka is None:
        raise ReplayError(
            f"no Kafka address to re-read {where} from: set GOVLOOP_KAFKA or run govloop up"
        )
    if not any(_answers(server) for server in settings.kafka.split(",")):
        raise RuntimeUnavailable(
            f"Kafka at {settings.kafka} does not answer, cannot re-read {where}"
        )
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
    except KafkaError as exc:
        raise RuntimeUnavailable(
            f"Kafka at {settings.kafka} does not answer, cannot re-read {where}: {exc}"
        ) from exc
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts or partition not in parts:
            raise ReplayError(
                f"cannot re-read {where}: the broker has no such "
                f"{'topic' if not parts else 'partition'} (any more)"
            )
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        if not first <= offset < end:
            held = f"offsets {first}..{end - 1}" if end > first else "no records"
            raise ReplayError(
                f"cannot re-read {where}: the record is gone (the partition holds {held})"
            )
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if record.offset == offset:
                    return record.value  # type: ignore[no-any-return]
                if record.offset > offset:
                    raise ReplayError(
                        f"cannot re-read {where}: the record is gone "
                        f"(the next one is at offset {record.offset})"
                    )
        raise ReplayError(f"cannot re-read {where}: nothing came within {timeout:g} s")
    except KafkaError as exc:
        raise RuntimeUnavailable(
            f"Kafka at {settings.kafka} failed while re-reading {where}: {exc}"
        ) from exc
    finally:
        consumer.close()


def _stored_event(session: Session, event_id: str | None) -> Any:
    """The metric snapshot or drift alert ``event_id`` as the SQL store holds it, or None."""
    if event_id is None:
        return None
    row = session.get(MetricSnapshotRow, event_id)
    if row is not None:
        return MetricSnapshot.model_validate_json(row.body)
    alert = session.get(DriftAlertRow, event_id)
    return None if alert is None else DriftAlert.model_validate_json(alert.body)


def read_event(
    session: Session,
    settings: Settings,
    spec: dict[str, Any],
    strict: bool,
    seen: list[str],
    differences: list[str],
) -> Any:
    """One event input of a manifest, re-read and held to its digest (noted in ``seen``).

    ``kafka``: the record at its topic, partition and offset; when the broker
    cannot give it back, the SQL store's copy (unless ``strict``).  ``stored``:
    the SQL store's copy of the event ``event_id`` (e.g. the snapshot a drift
    alert was judged with).
    """
    if spec["kind"] == "stored":
        where = f"stored event {spec['event_id']}"
        event = _stored_event(session, spec["event_id"])
        if event is None:
            raise ReplayError(f"cannot re-read {where}: it is not in the SQL store")
        source = f"read {where} from the SQL store"
    else:
        topic, partition, offset = spec["topic"], int(spec["partition"]), int(spec["offset"])
        where = f"{topic} partition {partition} offset {offset}"
        try:
            event = decode(
                _short_topic(settings, topic), read_record(settings, topic, partition, offset)
            )
            source = f"re-read kafka {where}"
        except (ReplayError, RuntimeUnavailable) as exc:
            event = None if strict else _stored_event(session, spec.get("event_id"))
            if event is None:
                raise
            source = (
                f"Kafka cannot give {where} back ({exc}); read the event's copy "
                "in the SQL store instead"
            )
    held_to(
        spec["sha256"],
        event_digest(event),
        f"{source}: {event.SCHEMA} {event.event_id}",
        f"input {where}",
        "re-read",
        seen,
        differences,
    )
    return event


def held_to(
    recorded: str,
    digest: str,
    source: str,
    name: str,
    now: str,
    seen: list[str],
    differences: list[str],
) -> bool:
    """Compare an input's digest with the manifest's: noted in ``seen``, a mismatch in
    ``differences``.  True when they match."""
    same = digest == recorded
    seen.append(
        f"{source}, sha256 {digest[:12]} "
        + ("matches the manifest" if same else "DIFFERS from the manifest")
    )
    if not same:
        differences.append(f"{name}: sha256 {recorded} (manifest) != {digest} ({now})")
    return same


def _answers(server: str) -> bool:
    """Whether a bootstrap server accepts connections (before a client leaks sockets on it)."""
    host, _, port = server.strip().rpartition(":")
    try:
        return answers(host.strip("[]") or "localhost", int(port), timeout=2.0)
    except ValueError:
        return True  # not host:port; let the client say what is wrong with it


def _short_topic(settings: Settings, topic: str) -> str:
    if topic.startswith(settings.topic_prefix) and topic[len(settings.topic_prefix) :] in TOPICS:
        return topic[len(settings.topic_prefix) :]
    known = [n for n in TOPICS if topic.endswith(n)]
    if not known:
        raise ReplayError(f"{topic}: not a govloop topic, cannot decode its records")
    return max(known, key=len)
