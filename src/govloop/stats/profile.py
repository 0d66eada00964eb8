"""Feature profiles: one bounded sketch per feature, and drift between two profiles.

A :class:`Profile` summarises a set of events, whether a reference (a dataset
file, a time range, the first N events of a model version) or the current
window: a :class:`NumericSketch` per numeric feature and a
:class:`CategoricalCounts` per categorical one.  Its size does not grow with
the number of events, profiles of partitions merge, and it serialises to JSON
for storing in SQL or Redis.

:func:`compare` tests every feature the two profiles share and returns the
raw results; :func:`drifted_features` spends a fleet's false-alarm budget
(:class:`~govloop.stats.fleet.FleetBudget`) across all of them at once.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from govloop.stats.drift_tests import DriftTestResult, categorical_drift, numeric_drift
from govloop.stats.embeddings import EmbeddingSample, embedding_drift
from govloop.stats.fleet import FleetBudget
from govloop.stats.sketches import CategoricalCounts, NumericSketch

__all__ = ["Columns", "FeatureDrift", "Profile", "compare", "drifted_features"]

Row = tuple[Mapping[str, float], Mapping[str, str]]


class Columns(NamedTuple):
    """A batch of events feature by feature: ``n`` events, then the values of each feature.

    A feature an event does not have is simply absent from its list, so the
    lists can be shorter than ``n``.
    """

    n: int
    numeric: dict[str, list[float]]
    categorical: dict[str, list[str]]
    #: (event id, vector) of the events that carry an embedding
    embeddings: tuple[tuple[str, Sequence[float]], ...] = ()

    @classmethod
    def from_rows(cls, rows: Iterable[Row]) -> Columns:
        """Rows (numeric features, categorical features) turned feature by feature."""
        numbers: dict[str, list[float]] = {}
        labels: dict[str, list[str]] = {}
        count = 0
        for numeric, categorical in rows:
            count += 1
            for name, x in numeric.items():
                numbers.setdefault(name, []).append(x)
            for name, v in categorical.items():
                labels.setdefault(name, []).append(v)
        return cls(count, numbers, labels)

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """Several batches as one, in order (the parts are not modified).

        >>> a = Columns(2, {"x": [1.0, 2.0]}, {"c": ["u"]})
        >>> Columns.concat([a, Columns(1, {"y": [3.0]}, {"c": ["v"]})])
        Columns(n=3, numeric={'x': [1.0, 2.0], 'y': [3.0]}, categorical={'c': ['u', 'v']},
                embeddings=())
        """
        numbers: dict[str, list[float]] = {}
        labels: dict[str, list[str]] = {}
        for part in parts:
            for name, xs in part.numeric.items():
                numbers.setdefault(name, []).extend(xs)
            for name, vs in part.categorical.items():
                labels.setdefault(name, []).extend(vs)
        vectors = tuple(e for part in parts for e in part.embeddings)
        return cls(sum(part.n for part in parts), numbers, labels, vectors)


class Profile:
    """Sketches of the numeric and categorical features of a set of events.

    >>> rng = np.random.default_rng(0)
    >>> p = Profile()
    >>> p.update_many([({"age": float(a)}, {"plan": "pro" if a > 40 else "free"})
    ...                for a in rng.normal(40, 10, 1000)])
    >>> p.n, sorted(p.numeric), sorted(p.categorical)
    (1000, ['age'], ['plan'])
    >>> q = Profile.from_dict(p.to_dict())
    >>> round(q.numeric["age"].mean, 6) == round(p.numeric["age"].mean, 6)
    True
    """

    def __init__(self, k: int = 200, max_features: int = 256, max_distinct: int = 100) -> None:
        self.k = k
        self.max_features = max_features
        self.max_distinct = max_distinct
        self.numeric: dict[str, NumericSketch] = {}
        self.categorical: dict[str, CategoricalCounts] = {}
        self.embeddings: EmbeddingSample | None = None  # a bounded sample, when events carry one
        self.n = 0
        self.ignored_features = 0

    def __repr__(self) -> str:
        return (
            f"Profile(n={self.n}, numeric={len(self.numeric)}, categorical={len(self.categorical)})"
        )

    def _room(self, name: str) -> bool:
        if name in self.numeric or name in self.categorical:
            return True
        if len(self.numeric) + len(self.categorical) < self.max_features:
            return True
        self.ignored_features += 1
        return False

    def _counts(self, name: str) -> CategoricalCounts:
        return self.categorical.setdefault(name, CategoricalCounts(self.max_distinct))

    def update_many(self, rows: Iterable[Row]) -> None:
        """Add a batch of events, each a (numeric features, categorical features) pair."""
        self.update_columns(Columns.from_rows(rows))

    def update_columns(self, columns: Columns) -> None:
        """Add a batch of events given feature by feature (what :meth:`update_many` builds).

        >>> p = Profile()
        >>> p.update_columns(Columns(3, {"age": [30.0, 40.0, 50.0]}, {"plan": ["a", "b"]}))
        >>> p.n, p.numeric["age"].mean, p.categorical["plan"].n
        (3, 40.0, 2)
        """
        self.n += columns.n
        for name, xs in columns.numeric.items():
            if self._room(name):
                sketch = self.numeric.setdefault(name, NumericSketch(self.k))
                sketch.update_many(np.asarray(xs, dtype=float))
        for name, vs in columns.categorical.items():
            if self._room(name):
                self._counts(name).update_many(vs)
        if columns.embeddings:
            if self.embeddings is None:
                self.embeddings = EmbeddingSample()
            ids, vectors = zip(*columns.embeddings, strict=True)
            self.embeddings.add_many(ids, vectors)

    def merge(self, other: Profile) -> None:
        """Add another profile's events (of another partition, say) to this one."""
        self.n += other.n
        if other.embeddings is not None:
            if self.embeddings is None:
                self.embeddings = EmbeddingSample.from_dict(other.embeddings.to_dict())
            else:
                self.embeddings.merge(other.embeddings)
        for name, sketch in other.numeric.items():
            if self._room(name):
                self.numeric.setdefault(name, NumericSketch(self.k)).merge(sketch)
        for name, counts in other.categorical.items():
            if self._room(name):
                self._counts(name).merge(counts)

    def __iadd__(self, other: Profile) -> Profile:
        self.merge(other)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (numeric sketches as base64 of their serialised bytes)."""
        return {
            "n": self.n,
            "k": self.k,
            "max_features": self.max_features,
            "max_distinct": self.max_distinct,
            "numeric": {
                name: base64.b64encode(s.to_bytes()).decode() for name, s in self.numeric.items()
            },
            "categorical": {name: c.to_dict() for name, c in self.categorical.items()},
            **({} if self.embeddings is None else {"embeddings": self.embeddings.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        profile = cls(
            int(data.get("k", 200)),
            int(data.get("max_features", 256)),
            int(data.get("max_distinct", 100)),
        )
        profile.n = int(data["n"])
        profile.numeric = {
            name: NumericSketch.from_bytes(base64.b64decode(raw))
            for name, raw in data["numeric"].items()
        }
        profile.categorical = {
            name: CategoricalCounts.from_dict(c) for name, c in data["categorical"].items()
        }
        if "embeddings" in data:
            profile.embeddings = EmbeddingSample.from_dict(data["embeddings"])
        return profile


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison of current against reference."""

    feature: str
    kind: str  # "numeric" | "categorical" | "embedding"
    result: DriftTestResult
    n_reference: int
    n_current: int


def compare(
    reference: Profile,
    current: Profile,
    numeric_method: str = "ks",
    categorical_method: str = "chi_square",
    min_count: int = 50,
    **options: Any,
) -> list[FeatureDrift]:
    """Test every feature both profiles hold with at least ``min_count`` values.

    Embeddings, when both profiles sampled some (from at least ``min_count``
    events each), are tested together as the feature ``embedding`` (MMD,
    :func:`~govloop.stats.embeddings.embedding_drift`).

    >>> rng = np.random.default_rng(1)
    >>> ref, cur = Profile(), Profile()
    >>> rows = rng.normal(0, 1, (4000, 2))
    >>> ref.update_many([({"x": v, "y": w}, {}) for v, w in rows[:2000]])
    >>> cur.update_many([({"x": v + 1, "y": w}, {}) for v, w in rows[2000:]])
    >>> [(d.feature, d.result.drifted) for d in compare(ref, cur)]
    [('x', True), ('y', False)]
    """
    out = []
    for name in sorted(set(reference.numeric) & set(current.numeric)):
        ref, cur = reference.numeric[name], current.numeric[name]
        if ref.n >= min_count and cur.n >= min_count:
            result = numeric_drift(ref, cur, numeric_method, **options)
            out.append(FeatureDrift(name, "numeric", result, ref.n, cur.n))
    for name in sorted(set(reference.categorical) & set(current.categorical)):
        cref, ccur = reference.categorical[name], current.categorical[name]
        if cref.n >= min_count and ccur.n >= min_count:
            result = categorical_drift(cref, ccur, categorical_method, **options)
            out.append(FeatureDrift(name, "categorical", result, cref.n, ccur.n))
    eref, ecur = reference.embeddings, current.embeddings
    if (
        eref is not None
        and ecur is not None
        and min(eref.n, ecur.n) >= min_count
        and eref.dim_in == ecur.dim_in
    ):
        out.append(
            FeatureDrift("embedding", "embedding", embedding_drift(eref, ecur), eref.n, ecur.n)
        )
    return out


def drifted_features(
    results: Mapping[Hashable, FeatureDrift], budget: FleetBudget
) -> set[Hashable]:
    """Keys of the features that drifted, with ``budget`` spent across all of them.

    Tests with a p-value share the budget (Holm or Benjamini-Hochberg over the
    whole set); distance tests without one drift at their own threshold.
    """
    with_p = {k: r.result.p_value for k, r in results.items() if r.result.p_value is not None}
    rejected = budget.decide(with_p)  # type: ignore[arg-type]
    rejected |= {k for k, r in results.items() if r.result.p_value is None and r.result.drifted}
    return rejected
