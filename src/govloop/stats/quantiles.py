"""Log-bucketed quantile sketch (the DDSketch idea): bounded memory, mergeable counts.

A positive value ``x`` falls in bucket ``ceil(log(x) / log(gamma))``; every
value in a bucket is within a factor ``gamma`` of the bucket's representative,
so a quantile read from the counts has relative error at most
``(gamma - 1) / (gamma + 1)`` (1 % for the default ``gamma = 1.0202``).
Counts per bucket add, so sketches from several partitions or workers merge by
summing them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["DEFAULT_GAMMA", "bucket_of", "bucket_value", "quantile_from_buckets"]

#: Relative accuracy 1 %: gamma = (1 + a) / (1 - a) with a = 0.01.
DEFAULT_GAMMA = 1.01 / 0.99
#: Values at or below this share bucket 0 (latencies under a microsecond, in ms).
MIN_VALUE = 1e-3


def bucket_of(x: float, gamma: float = DEFAULT_GAMMA) -> int:
    """The bucket index of ``x`` (values <= MIN_VALUE share the lowest bucket).

    >>> bucket_of(100.0), bucket_of(103.0), bucket_of(0.0)
    (231, 232, -345)
    """
    x = max(float(x), MIN_VALUE)
    return math.ceil(math.log(x) / math.log(gamma))


def bucket_value(index: int, gamma: float = DEFAULT_GAMMA) -> float:
    """The representative value of a bucket: within a factor gamma of all it holds."""
    return 2.0 * gamma**index / (gamma + 1.0)


def quantile_from_buckets(
    counts: Mapping[int, int], q: float, gamma: float = DEFAULT_GAMMA
) -> float | None:
    """The ``q``-quantile (0 <= q <= 1) of the values counted, or None if there are none.

    Uses the lower-median convention: the value of rank ``floor(q * (n - 1))``.

    >>> values = [float(v) for v in range(1, 1001)]
    >>> counts = {}
    >>> for v in values:
    ...     counts[bucket_of(v)] = counts.get(bucket_of(v), 0) + 1
    >>> p95 = quantile_from_buckets(counts, 0.95)
    >>> abs(p95 - 950.0) / 950.0 <= 0.01
    True
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    total = sum(counts.values())
    if total == 0:
        return None
    rank = math.floor(q * (total - 1))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen > rank:
            return bucket_value(index, gamma)
    raise AssertionError("unreachable: rank is below the total")
