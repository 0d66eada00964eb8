"""Topic registry: each topic's name, event model and message key.

One validation path: :func:`decode` turns raw bytes from a topic into its
event model or raises :class:`~govloop.errors.EventError` with a reason that
names the field, ready for the dead-letter topic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from govloop.errors import EventError
from govloop.schemas.base import Event
from govloop.schemas.inputs import Assignment, Feedback, Label, Prediction
from govloop.schemas.results import (
    DatasetEvent,
    DeadLetter,
    DriftAlert,
    ExperimentEvent,
    GateResult,
    MetricSnapshot,
    SampleSelected,
)

__all__ = [
    "MAX_DEPTH",
    "TOPICS",
    "Topic",
    "decode",
    "describe_validation_error",
    "too_deep",
    "topic_of",
]

#: How deep a message's JSON may nest.  No event needs more than 3 levels;
#: the bound keeps a value of nested brackets from exhausting the parser's stack.
MAX_DEPTH = 64


@dataclass(frozen=True)
class Topic:
    """A registry entry: short name, event model, field used as message key."""

    name: str
    model: type[Event]
    key_field: str | None
    kind: str  # "input" | "result" | "deadletter"

    def key(self, event: Event) -> bytes | None:
        """The message key of ``event`` on this topic (UTF-8), if the topic has one."""
        if self.key_field is None:
            return None
        return str(getattr(event, self.key_field)).encode()


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic("predictions", Prediction, "request_id", "input"),
        Topic("feedback", Feedback, "request_id", "input"),
        Topic("assignments", Assignment, "subject_id", "input"),
        Topic("labels", Label, "sample_id", "input"),
        Topic("metrics", MetricSnapshot, "model", "result"),
        Topic("drift", DriftAlert, "model", "result"),
        Topic("gates", GateResult, "model", "result"),
        Topic("samples", SampleSelected, "sample_id", "result"),
        Topic("experiments", ExperimentEvent, "experiment", "result"),
        Topic("datasets", DatasetEvent, "dataset", "result"),
        Topic("deadletter", DeadLetter, None, "deadletter"),
    )
}


def topic_of(model: type[Event]) -> Topic:
    """The registry entry whose events are ``model``."""
    for topic in TOPICS.values():
        if topic.model is model:
            return topic
    raise KeyError(f"no topic carries {model.__name__}")


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every failing field: ``model_version: Field required; ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


#: What the nesting scan looks at: brackets, and the quotes and escapes that hide them.
_SPECIAL = re.compile(r'[\[\]{}"\\]')


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether ``text``'s brackets nest deeper than ``limit`` outside its strings.

    A scan of the brackets, so a hostile value costs no recursion; text with
    no more than ``limit`` brackets in all is not scanned at all.

    >>> too_deep('{"a": [1, {"b": "[[[["}]}', limit=3)
    False
    >>> too_deep('[[[[1]]]]', limit=3)
    True
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped_at = -1
    for m in _SPECIAL.finditer(text):
        i = m.start()
        if i == escaped_at:
            continue
        c = text[i]
        if in_string:
            if c == "\\":
                escaped_at = i + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


def decode(topic: str, raw: bytes | str | None) -> Event:
    """Validate one raw message of a registry topic (short name) into its model.

    Any bytes give the event or an :class:`~govloop.errors.EventError` saying
    what is wrong (no value, not UTF-8, nested too deep, not JSON, not an
    object, or the fields that fail the schema); nothing else is raised.  An
    event without ``event_id`` gets :meth:`~govloop.schemas.Event.content_id`.

    >>> decode("feedback", b'{"request_id": "r1", "positive": true}').positive
    True
    >>> decode("feedback", b'{"request_id": "r1", "rating": "5"}')
    Traceback (most recent call last):
    ...
    govloop.errors.EventError: invalid govloop.feedback/1: rating: Input should be a valid number...
    """
    model = TOPICS[topic].model
    if raw is None:
        raise EventError("empty message (no value)")
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventError(f"not UTF-8: {exc}") from None
    if too_deep(raw):
        raise EventError(f"not JSON we read: nested deeper than {MAX_DEPTH} levels")
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and the int digit limit
        raise EventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventError(f"expected a JSON object, got {type(data).__name__}")
    try:  # the JSON itself, not ``data``: the same validation as the worker's fast path
        return model.model_validate_json(raw).with_content_id()
    except ValidationError as exc:
        raise EventError(f"invalid {model.SCHEMA}: {describe_validation_error(exc)}") from None
