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

from govloop.stats.quantiles import quantile_from_buckets

__all__ = ["CONFIDENCE_SCALE", "COUNTERS", "sliding_counters", "summarize_window", "window_start"]

#: The counters a window keeps, besides latency buckets (``lat:<bucket>``).
COUNTERS = ("count", "feedback", "labelled", "correct", "judged", "positive")

#: ``conf_sum`` holds the served class's probabilities in units of ``1 / CONFIDENCE_SCALE``
#: (integers, so Redis adds them exactly); ``conf_n`` counts the predictions that had one.
CONFIDENCE_SCALE = 1_000_000


def window_start(epoch: float, size: float) -> float:
    """Start of the tumbling window of length ``size`` seconds holding ``epoch``.

    >>> window_start(125.0, 60.0)
    120.0
    """
    return math.floor(epoch / size) * size


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summarize_window(counters: Mapping[str, int]) -> dict[str, Any]:
    """Metric fields of a snapshot from a window's counters.

    >>> m = summarize_window({"count": 10, "feedback": 5, "labelled": 4, "correct": 3,
    ...                       "judged": 2, "positive": 1})
    >>> m["accuracy"], m["feedback_rate"], m["positive_rate"], m["latency_p95_ms"]
    (0.75, 0.5, 0.5, None)

    ``estimated_accuracy`` is the confidence-based estimate (the idea of
    NannyML's CBPE, see :mod:`govloop.stats.cbpe`): the mean probability the
    model gave the class it served, which is the expected accuracy when those
    probabilities are calibrated; it needs no labels, so it is there before
    feedback arrives.

    >>> summarize_window({"count": 2, "conf_n": 2, "conf_sum": 1_700_000})["estimated_accuracy"]
    0.85
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
        "estimated_accuracy": (
            int(counters["conf_sum"]) / CONFIDENCE_SCALE / int(counters["conf_n"])
            if int(counters.get("conf_n", 0))
            else None
        ),
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
