"""Pure translation between events and the compact records the window store applies.

No I/O: a decoded event plus where it came from (topic, partition, offset) in,
a flat list out; a closed window's counters in, a :class:`MetricSnapshot` out.

Besides its model version's overall window, a prediction counts in one
*slice* per A/B variant it was served under and per segment attribute it
carries.  A slice is named by a short string (:func:`slices_of`):
``x<US>experiment<US>variant`` or ``s<US>attribute<US>value``, with ``US`` the
ASCII unit separator ``\\x1e``; the overall window's slice is ``""``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from govloop.schemas import Feedback, MetricSnapshot, Prediction, Scalar
from govloop.stats import CONFIDENCE_SCALE, BinnedCalibration, bucket_of, summarize_window
from govloop.stats.binning import confidence_bin

__all__ = [
    "OTHER",
    "feedback_record",
    "label_key",
    "prediction_record",
    "record_of",
    "skip_record",
    "slices_of",
    "snapshot_id",
    "snapshot_of",
]

US = "\x1e"
#: The segment value that stands for every value beyond the per-window cap.
OTHER = "__other__"


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


def slices_of(event: Prediction) -> list[str]:
    """The slices a prediction counts in besides the overall window (see the module doc).

    >>> slices_of(Prediction(model="m", model_version="1", request_id="r", prediction=1,
    ...                      experiment="ranker", variant="b", segment={"site": "north"}))
    ['x\\x1eranker\\x1eb', 's\\x1esite\\x1enorth']
    """
    out = [] if event.variant is None else [f"x{US}{event.experiment}{US}{event.variant}"]
    for name, value in event.segment.items():
        out.append(f"s{US}{name}{US}{label_key(value)}")
    return out


def record_of(event: Prediction | Feedback, topic: str, partition: int, offset: int) -> list[Any]:
    """The record the window store applies for one input event."""
    where = f"{topic}:{partition}"
    if isinstance(event, Prediction):
        return prediction_record(event, where, offset, event.epoch, event.predicted_label)
    return feedback_record(event, where, offset, event.epoch)


def prediction_record(
    event: Prediction, where: str, offset: int, epoch: float, label: Scalar | None
) -> list[Any]:
    """:func:`record_of` a prediction, given its ``epoch`` and ``predicted_label``."""
    latency = "" if event.latency_ms is None else str(bucket_of(event.latency_ms))
    served = label if type(label) is str else label_key(label)
    confidence: Any = ""
    bin_: Any = ""  # the confidence's calibration bin (govloop.stats.binning)
    if event.probabilities:
        p = event.probabilities.get(served)
        if p is not None:
            confidence = round(p * CONFIDENCE_SCALE)
            bin_ = str(confidence_bin(p))
    slices = slices_of(event) if event.segment or event.variant is not None else []
    return [
        "p",
        where,
        offset,
        event.event_id,
        event.request_id,
        epoch,
        event.model,
        event.model_version,
        served,
        latency,
        confidence,
        slices,
        bin_,
    ]


def feedback_record(event: Feedback, where: str, offset: int, epoch: float) -> list[Any]:
    """:func:`record_of` a feedback event, given its ``epoch``."""
    positive = "" if event.positive is None else ("1" if event.positive else "0")
    return [
        "f",
        where,
        offset,
        event.event_id,
        event.request_id,
        epoch,
        label_key(event.label),
        positive,
    ]


def skip_record(where: str, offset: int) -> list[Any]:
    """The record of a dead-lettered message: only its offset counts as applied, so input
    progress (applied offset against Kafka's end offset) sees the partition caught up.

    >>> skip_record("t.predictions:0", 7)
    ['x', 't.predictions:0', 7]
    """
    return ["x", where, offset]


def snapshot_id(
    prefix: str,
    model: str,
    version: str,
    start: float,
    slice_: str = "",
    window: str = "tumbling",
    revision: int = 0,
) -> str:
    """Deterministic event id of a window's snapshot: a re-publish is a duplicate, not new;
    an amendment by late events (``revision`` > 0) is a new snapshot."""
    key = f"{prefix}\x1f{model}\x1f{version}\x1f{start:.3f}"
    if slice_ or window != "tumbling":
        key += f"\x1f{slice_}\x1f{window}"
    if revision:
        key += f"\x1frevision {revision}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _slice_fields(slice_: str) -> dict[str, Any]:
    if not slice_:
        return {}
    kind, name, value = slice_.split(US, 2)
    if kind == "x":
        return {"experiment": name, "variant": value}
    return {"segment": {name: value}}


def snapshot_of(
    prefix: str,
    model: str,
    version: str,
    start: float,
    size: float,
    counters: dict[str, int],
    slice_: str = "",
    window: str = "tumbling",
    revision: int = 0,
    calibration: BinnedCalibration | None = None,
    calibration_label: str | None = None,
) -> MetricSnapshot:
    """The metric snapshot of a closed window (``start``, ``size``) of one slice.

    With a ``calibration`` map (named ``calibration_label``) its
    ``estimated_accuracy`` is calibrated; without one it is None.

    >>> s = snapshot_of("g.", "m", "1", 120.0, 60.0, {"count": 4, "feedback": 2,
    ...                 "labelled": 2, "correct": 1})
    >>> s.window_end.isoformat(), s.accuracy, s.feedback_rate
    ('1970-01-01T00:03:00+00:00', 0.5, 0.5)
    >>> s = snapshot_of("g.", "m", "1", 0.0, 300.0, {"count": 1}, "s\\x1esite\\x1enorth", "sliding")
    >>> s.segment, s.window, s.window_end.isoformat()
    ({'site': 'north'}, 'sliding', '1970-01-01T00:05:00+00:00')
    """
    window_end = datetime.fromtimestamp(start + size, UTC)
    return MetricSnapshot(
        event_id=snapshot_id(prefix, model, version, start, slice_, window, revision),
        ts=window_end,
        model=model,
        model_version=version,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=window_end,
        window=window,  # type: ignore[arg-type]
        **_slice_fields(slice_),
        **summarize_window(counters, calibration),
        calibration=None if calibration is None else calibration_label,
        revision=revision,
        late_count=int(counters.get("late", 0)),
    )
