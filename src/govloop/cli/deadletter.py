"""``govloop deadletter tail``: what the workers could not process, read from the broker.

Each dead letter names the record it came from (source topic, partition,
offset), the reason, and carries the raw value; the value is shown truncated
and escaped (it is whatever a producer sent).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from govloop.cli.output import console, fail, shown
from govloop.cli.settings import resolved_settings
from govloop.cli.status import end_offsets

if TYPE_CHECKING:
    from govloop.config import Settings

__all__ = ["app", "tail"]

app = typer.Typer(help="The dead-letter topic: input the workers could not process.")

#: How long one poll of the topic waits for records (milliseconds).
POLL_MS = 500
#: Polls in a row that return nothing below the end offsets before the broker is given up on.
STALLED_POLLS = 40


def _consumer(settings: Settings) -> Any:
    """A consumer without a group on the dead-letter topic (reading commits nothing)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    if settings.kafka is None:
        fail("no broker configured: set GOVLOOP_KAFKA or run `govloop up`")
    try:
        return KafkaConsumer(
            bootstrap_servers=settings.kafka, enable_auto_commit=False, request_timeout_ms=10000
        )
    except KafkaError as exc:
        fail(f"Kafka at {settings.kafka}: {exc}")


def _last(consumer: Any, topic: str, count: int) -> list[Any]:
    """The newest ``count`` records of ``topic`` over all partitions, oldest first; the
    consumer is left positioned at each partition's end, ready to follow."""
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        fail(f"no topic {topic}: create it with `govloop topics create`")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends = end_offsets(consumer, tps)
    starts = consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(starts[tp], ends[tp] - count))
    records: list[Any] = []
    empty = 0
    # read each partition up to the end offset it had when we looked
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        got = consumer.poll(timeout_ms=POLL_MS)
        empty = 0 if got else empty + 1
        if empty >= STALLED_POLLS:
            fail(f"{topic}: the broker stopped delivering records below their end offsets")
        for tp, batch in got.items():
            records.extend(r for r in batch if r.offset < ends[tp])
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    return records[-count:] if count else []


def _letter(record: Any, width: int) -> dict[str, Any]:
    """A dead-letter record as data: the letter's fields, or what was found instead."""
    from pydantic import ValidationError

    from govloop.schemas import DeadLetter

    base = {"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp}
    try:
        letter = DeadLetter.model_validate_json(record.value)
    except (ValidationError, ValueError, TypeError) as exc:
        raw = (record.value or b"").decode("utf-8", errors="replace")
        return base | {
            "source_topic": None,
            "source_partition": None,
            "source_offset": None,
            "reason": f"not a dead letter ({exc.__class__.__name__})",
            "payload": raw[:width],
            "truncated": len(raw) > width,
        }
    return base | {
        "source_topic": letter.source_topic,
        "source_partition": letter.partition,
        "source_offset": letter.offset,
        "reason": letter.reason,
        "payload": letter.payload[:width],
        "truncated": len(letter.payload) > width,
    }


def _print(item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(item), flush=True)
        return
    source = (
        f"{shown(item['source_topic'])}[{item['source_partition']}]@{item['source_offset']}"
        if item["source_topic"] is not None
        else "?"
    )
    payload = shown(item["payload"]) + ("..." if item["truncated"] else "")
    console.print(
        f"{source}: [yellow]{shown(item['reason'])}[/] payload {payload}",
        soft_wrap=True,
        highlight=False,
    )


@app.command("tail")
def tail(
    count: Annotated[
        int, typer.Option("-n", "--lines", min=0, help="Dead letters to show from the end.")
    ] = 10,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new ones until Ctrl-C.")
    ] = False,
    width: Annotated[int, typer.Option(min=1, help="Characters of each payload shown.")] = 120,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")
    ] = False,
) -> None:
    """The last dead letters: source topic, partition, offset, reason, payload (truncated)."""
    from kafka.errors import KafkaError

    settings = resolved_settings()
    topic = settings.topic("deadletter")
    consumer = _consumer(settings)
    try:
        for record in _last(consumer, topic, count):
            _print(_letter(record, width), as_json)
        while follow:
            for batch in consumer.poll(timeout_ms=POLL_MS).values():
                for record in batch:
                    _print(_letter(record, width), as_json)
    except KeyboardInterrupt:
        return
    except KafkaError as exc:
        fail(f"Kafka at {settings.kafka}: {exc}")
    finally:
        consumer.close()
