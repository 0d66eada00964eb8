"""Raw Kafka records in, events or dead letters out: the worker's one way of decoding.

Valid input takes pydantic's JSON path (parse and validate in one pass);
anything it rejects goes through :func:`govloop.schemas.decode`, so an event
is accepted or rejected, and a rejection worded, exactly as the one
validation path does it.  :class:`Decoder` adds a deployment's bounds: the
size of a value and, for input events, how far ``ts`` may lie in the past or
the future.  What fails becomes a :class:`DeadLetter` naming the reason, with
the payload as far as :data:`PAYLOAD_LIMIT`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import ValidationError

from govloop.config import Settings
from govloop.errors import EventError
from govloop.schemas import TOPICS, DeadLetter, Event, decode

__all__ = ["PAYLOAD_LIMIT", "Decoder", "RawRecord", "dead_letter", "decode_one"]

#: How much of an invalid payload a dead letter keeps (characters).
PAYLOAD_LIMIT = 8192


class RawRecord(NamedTuple):
    """The fields of a Kafka record the hot path reads (``aiokafka.ConsumerRecord`` has them)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


def dead_letter(
    source_topic: str, partition: int | None, offset: int | None, reason: str, raw: bytes | None
) -> DeadLetter:
    """The dead-letter event for one message that could not be processed."""
    text = (raw or b"").decode("utf-8", errors="replace")
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        reason=reason[:2000],
        payload=text[:PAYLOAD_LIMIT],
    )


#: Per topic, its model's JSON validator (``model_validate_json`` without the wrapper).
_VALIDATE_JSON: dict[str, Callable[[bytes], Event]] = {}


def decode_one(topic: str, raw: bytes | None) -> Event:
    """:func:`govloop.schemas.decode`, with the JSON parsed and validated in one pass.

    Valid input takes pydantic's JSON path; anything it rejects goes through
    :func:`~govloop.schemas.decode`, so an event is accepted or rejected, and a
    rejection worded, exactly as the one validation path does it.

    >>> decode_one("feedback", b'{"request_id": "r1", "positive": true}').positive
    True
    >>> decode_one("feedback", b'[1]')
    Traceback (most recent call last):
    ...
    govloop.errors.EventError: expected a JSON object, got list
    """
    if raw is not None:
        validate = _VALIDATE_JSON.get(topic)
        if validate is None:
            validator = TOPICS[topic].model.__pydantic_validator__
            validate = _VALIDATE_JSON[topic] = validator.validate_json
        try:
            event = validate(raw)  # what model_validate_json calls, without its Python frame
        except ValidationError:
            pass
        else:
            return event if "event_id" in event.model_fields_set else event.with_content_id()
    return decode(topic, raw)


class Decoder:
    """:func:`decode_one` for one deployment's topics, within its bounds.

    A value longer than ``settings.max_event_bytes`` is refused unparsed.  An
    input event (prediction, feedback) whose ``ts`` lies more than
    ``max_event_age_seconds`` (unset: the join horizon) before ``clock()``, or
    more than ``max_future_seconds`` after it, is refused with a reason naming
    the bound: such a time would open a window nothing closes in time, or one
    the calendar cannot hold.  A bound of 0 is no bound.

    >>> d = Decoder(Settings(), clock=lambda: 1_900_000_000.0)  # 2030-03-17T17:46:40Z
    >>> fb = b'{"request_id": "r", "label": 1, "ts": "%s"}'
    >>> d("govloop.feedback", fb % b"2030-03-17T17:40:00Z").label
    1
    >>> d("govloop.feedback", fb % b"9999-12-31T23:59:59Z")
    Traceback (most recent call last):
    ...
    govloop.errors.EventError: ts 9999-12-31T23:59:59+00:00 is more than 300 s in the future...
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.max_bytes = settings.max_event_bytes
        age = settings.max_event_age_seconds
        self.max_age = settings.join_horizon_seconds if age is None else age or math.inf
        self.max_future = settings.max_future_seconds or math.inf
        #: full topic name -> short name, and the short names whose times are bounded
        self.short = {settings.topic(n): n for n in TOPICS}
        self.bounded = {n for n, t in TOPICS.items() if t.kind == "input"}

    def __call__(self, topic: str, raw: bytes | None) -> Event:
        """The event of one record of ``topic`` (full name), or :class:`EventError`."""
        if raw is not None and len(raw) > self.max_bytes:
            raise EventError(
                f"value of {len(raw)} bytes is larger than {self.max_bytes} (max_event_bytes)"
            )
        short = self.short[topic]
        event = decode_one(short, raw)
        if short in self.bounded:
            now = self.clock()
            if not now - self.max_age <= event.ts.timestamp() <= now + self.max_future:
                self._refuse(event.ts, now)
        return event

    def _refuse(self, ts: datetime, now: float) -> None:
        """The reason ``ts`` is out of bounds at ``now``, as an :class:`EventError`."""
        if ts.timestamp() < now - self.max_age:
            raise EventError(
                f"ts {ts.isoformat()} is more than {self.max_age:g} s in the past "
                f"(max_event_age_seconds; now {_iso(now)})"
            )
        raise EventError(
            f"ts {ts.isoformat()} is more than {self.max_future:g} s in the future "
            f"(max_future_seconds; now {_iso(now)})"
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
