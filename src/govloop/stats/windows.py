"""Tumbling windows and the metrics of one window, from plain counts.

The stream agent keeps per-window counters (in Redis, so every worker adds to
the same window); this module turns those counters into the published
metrics.  No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from govloop.stats.quantiles import quantile_from_buckets

__all__ = ["COUNTERS", "summarize_window", "window_start"]

#: The counters a window keeps, besides latency buckets (``lat:<bucket>``).
COUNTERS = ("count", "feedback", "labelled", "correct", "judged", "positive")


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
    }
