"""Pure translation between events and the compact records the window store applies.

No I/O: a decoded event plus where it came from (topic, partition, offset) in,
a flat list out; a closed window's counters in, a :class:`MetricSnapshot` out.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from govloop.schemas import Feedback, MetricSnapshot, Prediction, Scalar
from govloop.stats import bucket_of, summarize_window

__all__ = ["label_key", "record_of", "snapshot_id", "snapshot_of"]


def label_key(value: Scalar | None) -> str:
    """A label's comparison key, so ``1``, ``1.0`` and ``"1"`` match but ``True`` is ``"true"``.

    >>> label_key(1), label_key(1.0), label_key("1"), label_key(True), label_key(None)
    ('1', '1', '1', 'true', '')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def record_of(event: Prediction | Feedback, topic: str, partition: int, offset: int) -> list[Any]:
    """The record the window store applies for one input event."""
    where = f"{topic}:{partition}"
    if isinstance(event, Prediction):
        latency = "" if event.latency_ms is None else str(bucket_of(event.latency_ms))
        return [
            "p", where, offset, event.event_id, event.request_id, event.epoch,
            event.model, event.model_version, label_key(event.predicted_label), latency,
        ]
    positive = "" if event.positive is None else ("1" if event.positive else "0")
    return [
        "f", where, offset, event.event_id, event.request_id, event.epoch,
        label_key(event.label), positive,
    ]


def snapshot_id(prefix: str, model: str, version: str, start: float) -> str:
    """Deterministic event id of a window's snapshot: a re-publish is a duplicate, not new."""
    digest = hashlib.sha256(f"{prefix}\x1f{model}\x1f{version}\x1f{start:.3f}".encode())
    return digest.hexdigest()[:32]


def snapshot_of(
    prefix: str, model: str, version: str, start: float, size: float, counters: dict[str, int]
) -> MetricSnapshot:
    """The metric snapshot of a closed window.

    >>> s = snapshot_of("g.", "m", "1", 120.0, 60.0, {"count": 4, "feedback": 2,
    ...                 "labelled": 2, "correct": 1})
    >>> s.window_end.isoformat(), s.accuracy, s.feedback_rate
    ('1970-01-01T00:03:00+00:00', 0.5, 0.5)
    """
    window_end = datetime.fromtimestamp(start + size, UTC)
    return MetricSnapshot(
        event_id=snapshot_id(prefix, model, version, start),
        ts=window_end,
        model=model,
        model_version=version,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=window_end,
        **summarize_window(counters),
    )
