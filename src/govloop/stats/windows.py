"""Tumbling and sliding windows and the metrics of one window, from plain counts.

The stream worker keeps per-window counters (in Redis, so every worker adds to
the same window); this module turns those counters into the published
metrics.  Every counter is a sum, so a sliding window is the sum of the
tumbling windows it spans (:func:`sliding_counters`).  No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from govloop.stats.binning import BinnedCalibration, bin_counts
from govloop.stats.quantiles import quantile_from_buckets

__all__ = [
    "BIN_COUNTERS",
    "CONFIDENCE_SCALE",
    "COUNTERS",
    "sliding_counters",
    "summarize_window",
    "window_start",
]

#: The counters a window keeps, besides latency buckets (``lat:<bucket>``).
COUNTERS = ("count", "feedback", "labelled", "correct", "judged", "positive")

#: ``conf_sum`` holds the served class's probabilities in units of ``1 / CONFIDENCE_SCALE``
#: (integers, so Redis adds them exactly); ``conf_n`` counts the predictions that had one.
CONFIDENCE_SCALE = 1_000_000

#: Prefixes of the per-confidence-bin counters (``cb:<bin>``, ...; bins of
#: :data:`govloop.stats.binning.CONFIDENCE_EDGES`): predictions, and labelled and correct
#: ones among them, counted where their label is (the window of the feedback).
BIN_COUNTERS = ("cb:", "cl:", "cc:")


def window_start(epoch: float, size: float) -> float:
    """Start of the tumbling window of length ``size`` seconds holding ``epoch``.

    >>> window_start(125.0, 60.0)
    120.0
    """
    return math.floor(epoch / size) * size


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summarize_window(
    counters: Mapping[str, int], calibration: BinnedCalibration | None = None
) -> dict[str, Any]:
    """Metric fields of a snapshot from a window's counters.

    >>> m = summarize_window({"count": 10, "feedback": 5, "labelled": 4, "correct": 3,
    ...                       "judged": 2, "positive": 1})
    >>> m["accuracy"], m["feedback_rate"], m["positive_rate"], m["latency_p95_ms"]
    (0.75, 0.5, 0.5, None)

    ``estimated_accuracy_raw`` is the mean probability the model gave the
    class it served: the expected accuracy only if those probabilities are
    calibrated.  ``estimated_accuracy`` (and its standard error) needs a
    ``calibration`` map fitted on labelled reference windows
    (:class:`~govloop.stats.binning.BinnedCalibration`): the predictions per
    confidence bin (``cb:<bin>``), each weighted by its bin's reference
    accuracy.  Without a map it is None.  Neither needs this window's labels.

    >>> raw = summarize_window({"count": 2, "conf_n": 2, "conf_sum": 1_700_000, "cb:16": 2})
    >>> raw["estimated_accuracy_raw"], raw["estimated_accuracy"]
    (0.85, None)
    >>> cal = BinnedCalibration((0,) * 16 + (40, 0), (0,) * 16 + (30, 0))
    >>> m = summarize_window({"count": 2, "conf_n": 2, "conf_sum": 1_700_000, "cb:16": 2}, cal)
    >>> m["estimated_accuracy"], round(m["estimated_accuracy_se"], 3)
    (0.75, 0.319)
    """
    c = {name: int(counters.get(name, 0)) for name in COUNTERS}
    latency = {
        int(k.removeprefix("lat:")): int(v) for k, v in counters.items() if k.startswith("lat:")
    }
    return {
        "count": c["count"],
        "feedback_count": c["feedback"],
        "labelled_count": c["labelled"],
        "correct_count": c["correct"],
        "judged_count": c["judged"],
        "positive_count": c["positive"],
        "accuracy": _rate(c["correct"], c["labelled"]),
        "feedback_rate": _rate(c["feedback"], c["count"]),
        "positive_rate": _rate(c["positive"], c["judged"]),
        "latency_p50_ms": quantile_from_buckets(latency, 0.50),
        "latency_p95_ms": quantile_from_buckets(latency, 0.95),
        **_estimates(counters, calibration),
    }


def _estimates(
    counters: Mapping[str, int], calibration: BinnedCalibration | None
) -> dict[str, float | None]:
    conf_n = int(counters.get("conf_n", 0))
    raw = int(counters["conf_sum"]) / CONFIDENCE_SCALE / conf_n if conf_n else None
    est = None
    if calibration is not None:
        est = calibration.estimate(bin_counts(counters, BIN_COUNTERS[0], calibration.bins))
    return {
        "estimated_accuracy": None if est is None else est.value,
        "estimated_accuracy_se": None if est is None else est.se,
        "estimated_accuracy_raw": raw,
    }


def sliding_counters(
    windows: Mapping[float, Mapping[str, int]], end: float, span: float
) -> dict[str, int]:
    """Counters of the sliding window ``[end - span, end)``: the sum of the tumbling windows in it.

    ``windows`` maps a tumbling window's start to its counters; windows that
    start before ``end - span`` or at or after ``end`` are left out, and a
    window with no events is simply absent.

    >>> recent = {0.0: {"count": 3, "lat:7": 1}, 60.0: {"count": 2},
    ...           120.0: {"count": 5, "lat:7": 2}}
    >>> sliding_counters(recent, end=180.0, span=120.0)
    {'count': 7, 'lat:7': 2}
    """
    total: dict[str, int] = {}
    for start, counters in windows.items():
        if end - span <= start < end:
            for name, n in counters.items():
                total[name] = total.get(name, 0) + int(n)
    return total
