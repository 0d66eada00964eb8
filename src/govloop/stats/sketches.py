"""Bounded-memory, mergeable summaries of a feature: numeric sketches and category counts.

:class:`NumericSketch` wraps the KLL sketch of Apache DataSketches
(``datasketches.kll_doubles_sketch``), a well-kept library with published
error bounds, and keeps the exact count, min, max, mean and variance beside
it (Welford's update, Chan's merge).  :class:`CategoricalCounts` keeps exact
counts for up to ``max_distinct`` values and folds the rest into
``"__other__"``, remembering for the folded values their counts per hash
bucket (a fixed partition of all possible values, :func:`bucket_of`), so
that two summaries which tracked different values still count the same
bins exactly (:meth:`CategoricalCounts.bucket_counts`).  Both merge, so
partial state from partitions or workers combines, and both serialize for
storing reference profiles in SQL.

Reproducibility: DataSketches randomises KLL compaction (coin flips seeded
from the clock, no seed exposed), so two sketches built from the same values
agree only within :attr:`NumericSketch.rank_error`.  Queries on one sketch
are deterministic: store :meth:`NumericSketch.to_bytes` to replay a decision.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch

__all__ = ["HASH_BUCKETS", "OTHER", "CategoricalCounts", "NumericSketch", "bucket_of"]

#: The bucket of values seen after ``max_distinct`` distinct values were tracked.
OTHER = "__other__"
#: Hash buckets the folded values are counted in (a partition fixed in advance).
HASH_BUCKETS = 64


@lru_cache(maxsize=1 << 16)
def bucket_of(key: str) -> int:
    """The hash bucket of a value's key: CRC-32 of its UTF-8 bytes, stable across processes.

    >>> bucket_of("a"), bucket_of("a") == bucket_of(str("a"))
    (3, True)
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % HASH_BUCKETS


_HEADER = struct.Struct("<4sBqqdd")  # magic, version, count, invalid, mean, m2
_MAGIC = b"GLNS"
_VERSION = 1


class NumericSketch:
    """Quantiles within a stated rank error, plus exact moments, of a numeric stream.

    NaN and infinite values are not sketched; they are counted in :attr:`invalid`.

    >>> rng = np.random.default_rng(0)
    >>> s = NumericSketch(k=200)
    >>> s.update_many(rng.normal(10.0, 2.0, size=50_000))
    >>> s.update(float("nan"))
    >>> s.n, s.invalid, round(s.mean, 2), round(s.std, 2)
    (50000, 1, 10.0, 2.0)
    >>> median = float(s.quantiles([0.5])[0])
    >>> abs(median - 10.0) < 0.1
    True
    >>> round(s.rank_error, 4)
    0.0133
    >>> float(NumericSketch.from_bytes(s.to_bytes()).quantiles([0.5])[0]) == median
    True
    """

    def __init__(self, k: int = 200) -> None:
        self.k = k
        self._kll = kll_doubles_sketch(k)
        self._count = 0
        self._mean = 0.0
        self._m2 = 0.0
        self.invalid = 0

    def __repr__(self) -> str:
        return f"NumericSketch(k={self.k}) n={self.n} invalid={self.invalid}"

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (NumericSketch.from_bytes, (self.to_bytes(),))

    # --- updates ---------------------------------------------------------------------------

    def update(self, x: float) -> None:
        """Add one value (NaN and infinities are counted as invalid)."""
        x = float(x)
        if not math.isfinite(x):
            self.invalid += 1
            return
        self._kll.update(x)
        self._count += 1
        delta = x - self._mean
        self._mean += delta / self._count
        self._m2 += delta * (x - self._mean)

    def update_many(self, values: Sequence[float] | np.ndarray) -> None:
        """Add a batch of values in one vectorised step.

        >>> s = NumericSketch()
        >>> s.update_many([1.0, 2.0, float("inf"), 3.0])
        >>> s.n, s.invalid, s.mean, s.variance
        (3, 1, 2.0, 0.666...)
        """
        arr = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(arr)
        self.invalid += int(arr.size - np.count_nonzero(finite))
        arr = np.ascontiguousarray(arr[finite])
        if arr.size == 0:
            return
        self._kll.update(arr)
        batch_mean = float(arr.mean())
        batch_m2 = float(np.square(arr - batch_mean).sum())
        self._combine_moments(int(arr.size), batch_mean, batch_m2)

    def _combine_moments(self, count: int, mean: float, m2: float) -> None:
        """Chan et al.'s parallel update of (count, mean, M2)."""
        total = self._count + count
        if total == 0:
            return
        delta = mean - self._mean
        self._m2 += m2 + delta * delta * self._count * count / total
        self._mean += delta * count / total
        self._count = total

    def merge(self, other: NumericSketch) -> None:
        """Fold ``other`` into this sketch, as if its values had been added here.

        >>> a, b = NumericSketch(), NumericSketch()
        >>> a.update_many([1.0, 2.0]); b.update_many([3.0, 4.0])
        >>> a += b
        >>> a.n, a.mean, a.min, a.max
        (4, 2.5, 1.0, 4.0)
        """
        self._kll.merge(other._kll)
        self._combine_moments(other._count, other._mean, other._m2)
        self.invalid += other.invalid

    def __iadd__(self, other: NumericSketch) -> NumericSketch:
        self.merge(other)
        return self

    # --- reads -----------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of finite values added."""
        return self._count

    @property
    def is_exact(self) -> bool:
        """True while the sketch still holds every value (no compaction yet)."""
        return not self._kll.is_estimation_mode()

    @property
    def rank_error(self) -> float:
        """DataSketches' stated single-sided normalized rank error for this ``k``.

        A bound on |estimated rank - true rank| / n over all queries, met in
        99 % of trials (the library's empirical fit); after merging a sketch
        with a smaller ``k`` it is the bound for that smaller ``k``.
        """
        return float(self._kll.normalized_rank_error(False))

    @property
    def min(self) -> float:
        """Smallest value seen (NaN if empty)."""
        return math.nan if self._count == 0 else float(self._kll.get_min_value())

    @property
    def max(self) -> float:
        """Largest value seen (NaN if empty)."""
        return math.nan if self._count == 0 else float(self._kll.get_max_value())

    @property
    def mean(self) -> float:
        """Exact mean (NaN if empty)."""
        return self._mean if self._count else math.nan

    @property
    def variance(self) -> float:
        """Exact population variance, ``ddof=0`` like ``np.var`` (NaN if empty)."""
        return self._m2 / self._count if self._count else math.nan

    @property
    def std(self) -> float:
        """Exact population standard deviation (NaN if empty)."""
        return math.sqrt(self.variance)

    def _require_values(self) -> None:
        if self._count == 0:
            raise ValueError("the sketch is empty")

    def quantiles(self, qs: Sequence[float] | np.ndarray) -> np.ndarray:
        """Values at normalized ranks ``qs``: the smallest x with F(x) >= q.

        This is numpy's ``method="inverted_cdf"``, and exact while :attr:`is_exact`.

        >>> s = NumericSketch()
        >>> s.update_many(np.arange(1.0, 101.0))
        >>> s.quantiles([0.0, 0.25, 0.5, 1.0]).tolist()
        [1.0, 25.0, 50.0, 100.0]
        """
        self._require_values()
        q = np.clip(np.asarray(qs, dtype=np.float64).ravel(), 0.0, 1.0)
        return np.asarray(self._kll.get_quantiles(q.tolist(), True), dtype=np.float64)

    def cdf(self, points: Sequence[float] | np.ndarray) -> np.ndarray:
        """F(x) = P(X <= x) at each point, in the order given.

        >>> s = NumericSketch()
        >>> s.update_many(np.arange(1.0, 101.0))
        >>> s.cdf([50.0, 0.0, 1000.0]).tolist()
        [0.5, 0.0, 1.0]
        """
        self._require_values()
        pts = np.asarray(points, dtype=np.float64).ravel()
        if pts.size == 0:
            return np.empty(0)
        if not np.isfinite(pts).all():
            raise ValueError("cdf points must be finite")
        unique, inverse = np.unique(pts, return_inverse=True)
        ranks = np.asarray(self._kll.get_cdf(unique.tolist(), True), dtype=np.float64)
        return ranks[:-1][inverse]

    # --- serialization ---------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compact binary form: a small header with the moments, then the KLL bytes."""
        header = _HEADER.pack(_MAGIC, _VERSION, self._count, self.invalid, self._mean, self._m2)
        return header + bytes(self._kll.serialize())

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericSketch:
        """Rebuild a sketch written by :meth:`to_bytes`."""
        if len(data) < _HEADER.size:
            raise ValueError("not a NumericSketch: too short")
        magic, version, count, invalid, mean, m2 = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a NumericSketch v{_VERSION}: {magic!r} v{version}")
        kll = kll_doubles_sketch.deserialize(bytes(data[_HEADER.size :]))
        sketch = cls(k=int(kll.k))
        sketch._kll = kll
        sketch._count, sketch.invalid, sketch._mean, sketch._m2 = count, invalid, mean, m2
        return sketch


class CategoricalCounts:
    """Exact counts of up to ``max_distinct`` values; later new values go to ``"__other__"``.

    Values are keyed by ``str(value)``, so counts survive a JSON round trip.
    Which values are tracked depends on the order they arrive in; the folded
    ones are also counted per hash bucket, so :meth:`bucket_counts` (every
    value's count in its bucket) is exact and the same partition on any two
    summaries, whatever each tracked.

    >>> c = CategoricalCounts(max_distinct=2)
    >>> c.update_many(["a", "b", "a", "c", "d"])
    >>> c.to_dict()["counts"], c.to_dict()["other_buckets"]
    ({'a': 2, 'b': 1, '__other__': 2}, {'12': 1, '47': 1})
    >>> c.n, c.proportions(["a", "b", "__other__", "zzz"]).tolist()
    (5, [0.4, 0.2, 0.4, 0.0])
    >>> int(c.bucket_counts().sum()), int(c.bucket_counts()[bucket_of("a")])
    (5, 2)
    """

    def __init__(self, max_distinct: int = 100) -> None:
        if max_distinct < 1:
            raise ValueError("max_distinct must be at least 1")
        self.max_distinct = max_distinct
        self._counts: dict[str, int] = {}
        self._other = 0
        self._buckets: dict[int, int] = {}  # folded counts per hash bucket
        self._unhashed = 0  # folded counts of unknown bucket (read from an older format)

    def __repr__(self) -> str:
        return f"CategoricalCounts(max_distinct={self.max_distinct}) n={self.n}"

    def _fold(self, key: str, count: int) -> None:
        self._other += count
        b = bucket_of(key)
        self._buckets[b] = self._buckets.get(b, 0) + count

    def _add(self, key: str, count: int) -> None:
        if key in self._counts:
            self._counts[key] += count
        elif key != OTHER and len(self._counts) < self.max_distinct:
            self._counts[key] = count
        else:  # past the cap, or a literal "__other__" value
            self._fold(key, count)

    def update(self, value: Any) -> None:
        """Count one value."""
        self._add(str(value), 1)

    def update_many(self, values: Iterable[Any]) -> None:
        """Count a batch; new values are tracked in first-seen order, as with :meth:`update`."""
        for key, count in Counter(map(str, values)).items():
            self._add(key, count)

    def merge(self, other: CategoricalCounts) -> None:
        """Fold ``other``'s counts into these.

        >>> a, b = CategoricalCounts(), CategoricalCounts()
        >>> a.update_many("xxy"); b.update_many("yz")
        >>> a += b
        >>> a.to_dict()["counts"]
        {'x': 2, 'y': 2, 'z': 1}
        """
        for key, count in other._counts.items():
            self._add(key, count)
        self._other += other._other
        for b, count in other._buckets.items():
            self._buckets[b] = self._buckets.get(b, 0) + count
        self._unhashed += other._unhashed

    def __iadd__(self, other: CategoricalCounts) -> CategoricalCounts:
        self.merge(other)
        return self

    @property
    def n(self) -> int:
        """Number of values counted, including ``"__other__"``."""
        return sum(self._counts.values()) + self._other

    @property
    def other(self) -> int:
        """Count of values that arrived after the cap and were not tracked."""
        return self._other

    def counts(self) -> dict[str, int]:
        """Counts per tracked value, plus ``"__other__"`` when it is non-zero."""
        out = dict(self._counts)
        if self._other:
            out[OTHER] = self._other
        return out

    def bucket_counts(self) -> np.ndarray | None:
        """Every value's count in its hash bucket (:data:`HASH_BUCKETS` of them), exactly.

        None when some folded values' buckets are unknown (summaries written
        before buckets were kept).
        """
        if self._unhashed:
            return None
        out = np.zeros(HASH_BUCKETS, dtype=np.int64)
        for key, count in self._counts.items():
            out[bucket_of(key)] += count
        for b, count in self._buckets.items():
            out[b] += count
        return out

    def proportions(self, categories: Sequence[str]) -> np.ndarray:
        """Share of the total recorded under each key (0 for keys never tracked)."""
        total = self.n
        counts = self.counts()
        values = np.array([counts.get(str(c), 0) for c in categories], dtype=np.float64)
        return values / total if total else values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: ``{"max_distinct": ..., "counts": {...}}``, and the folded
        values' counts per hash bucket under ``"other_buckets"`` when there are any."""
        out: dict[str, Any] = {"max_distinct": self.max_distinct, "counts": self.counts()}
        if self._buckets:
            out["other_buckets"] = {str(b): c for b, c in sorted(self._buckets.items())}
        if self._unhashed:
            out["other_unhashed"] = self._unhashed
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalCounts:
        """Rebuild counts written by :meth:`to_dict` (or by a version without buckets)."""
        counts = cls(max_distinct=int(data["max_distinct"]))
        tracked = [key for key in data["counts"] if key != OTHER]
        if len(tracked) > counts.max_distinct:
            raise ValueError(f"{len(tracked)} tracked values exceed max_distinct")
        for key, count in data["counts"].items():
            if key == OTHER:
                counts._other += int(count)
            else:
                counts._counts[str(key)] = int(count)
        counts._buckets = {int(b): int(c) for b, c in data.get("other_buckets", {}).items()}
        if any(not 0 <= b < HASH_BUCKETS for b in counts._buckets):
            raise ValueError("a hash bucket out of range")
        counts._unhashed = counts._other - sum(counts._buckets.values())
        if counts._unhashed < 0:
            raise ValueError("hash buckets hold more than __other__")
        return counts
