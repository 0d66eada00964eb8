"""Raw Kafka records in, events or dead letters out: the worker's one way of decoding.

Valid input takes pydantic's JSON path (parse and validate in one pass);
anything it rejects goes through :func:`govloop.schemas.decode`, so an event
is accepted or rejected, and a rejection worded, exactly as the one
validation path does it.  What fails becomes a :class:`DeadLetter` naming the
reason, with the payload as far as :data:`PAYLOAD_LIMIT`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import ValidationError

from govloop.schemas import TOPICS, DeadLetter, Event, decode

__all__ = ["PAYLOAD_LIMIT", "RawRecord", "dead_letter", "decode_one"]

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
            return validate(raw)  # what model_validate_json calls, without its Python frame
        except ValidationError:
            pass
    return decode(topic, raw)
