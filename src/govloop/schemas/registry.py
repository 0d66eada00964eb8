"""Topic registry: each topic's name, event model and message key.

One validation path: :func:`decode` turns raw bytes from a topic into its
event model or raises :class:`~govloop.errors.EventError` with a reason that
names the field, ready for the dead-letter topic.
"""

from __future__ import annotations

import json
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

__all__ = ["TOPICS", "Topic", "decode", "describe_validation_error", "topic_of"]


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


def decode(topic: str, raw: bytes | str | None) -> Event:
    """Validate one raw message of a registry topic (short name) into its model.

    >>> decode("feedback", b'{"request_id": "r1", "positive": true}').positive
    True
    >>> decode("feedback", b'{"request_id": "r1", "rating": "high"}')
    Traceback (most recent call last):
    ...
    govloop.errors.EventError: invalid govloop.feedback/1: rating: Input should be a valid number...
    """
    model = TOPICS[topic].model
    if raw is None:
        raise EventError("empty message (no value)")
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EventError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EventError(f"invalid {model.SCHEMA}: {describe_validation_error(exc)}") from exc
