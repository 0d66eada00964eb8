"""Online, mergeable evaluation metrics: one observation in, the current value out.

River's shape: ``update(...) -> None`` feeds one observation, ``get()`` reads
the value (None while it is undefined, e.g. before the first observation) and
``update_many(...)`` feeds a batch with numpy.  All mutable state is built in
``_reset()`` and is made of counts and sums, so

- memory is bounded: no list of events, at most a counter per class or bin;
- ``a += b`` (or ``a.merge(b)``) adds the state of the same metric, with the
  same parameters, fed elsewhere (another partition, worker or window), and
  ``a + b`` returns the merge as a new metric;
- ``clone()`` and ``repr`` work by inspecting the constructor's signature.
"""

from __future__ import annotations

import copy
import inspect
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from govloop.stats.quantiles import DEFAULT_GAMMA, MIN_VALUE, bucket_of, quantile_from_buckets

__all__ = [
    "ECE",
    "F1",
    "MAE",
    "RMSE",
    "Accuracy",
    "Brier",
    "ErrorRate",
    "LatencyQuantiles",
    "MacroF1",
    "MeanRating",
    "Metric",
    "PositiveRate",
]

T = TypeVar("T")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _vector(values: ArrayLike, dtype: Any = None) -> np.ndarray:
    a = np.asarray(values, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D batch, got shape {a.shape}")
    return a


def _pair(y_true: ArrayLike, y_pred: ArrayLike, dtype: Any = None) -> tuple[np.ndarray, ...]:
    t, p = _vector(y_true, dtype), _vector(y_pred, dtype)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} != {p.size}")
    return t, p


class Metric(ABC, Generic[T]):
    """The contract: ``update``/``update_many`` feed, ``get`` reads, ``+=`` merges.

    Subclasses store constructor arguments under their own names and build
    everything else in ``_reset()``; every such attribute is additive state (a
    number, a numpy array or a ``Counter``), which is what lets ``merge`` add
    two metrics field by field without knowing what they measure.
    """

    def __init__(self) -> None:
        self._reset()

    @abstractmethod
    def _reset(self) -> None:
        """Build all mutable state (counts and sums) from scratch."""

    @abstractmethod
    def get(self) -> T | None:
        """The current value, or None while it is undefined."""

    def _params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def clone(self) -> Self:
        """A fresh metric with the same parameters and no observations."""
        return type(self)(**copy.deepcopy(self._params()))

    def merge(self, other: Self) -> Self:
        """Add ``other``'s state into this metric (in place) and return it."""
        params = self._params()
        if type(other) is not type(self) or other._params() != params:
            raise ValueError(f"cannot merge {other!r} into {self!r}")
        for name, mine in list(vars(self).items()):
            if name in params:
                continue
            theirs = getattr(other, name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, name, mine + theirs)
        return self

    def __iadd__(self, other: Self) -> Self:
        return self.merge(other)

    def __add__(self, other: Self) -> Self:
        return copy.deepcopy(self).merge(other)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args}): {_fmt(self.get())}"


class _Share(Metric[float]):
    """Share of observations that are flagged."""

    def _reset(self) -> None:
        self._n = 0
        self._hits = 0

    def update(self, flag: bool) -> None:
        self._n += 1
        self._hits += bool(flag)

    def update_many(self, flags: ArrayLike) -> None:
        a = _vector(flags)
        self._n += a.size
        self._hits += int(np.count_nonzero(a))

    def get(self) -> float | None:
        return self._hits / self._n if self._n else None


class PositiveRate(_Share):
    """Share of feedback that is a thumbs up.

    >>> rate = PositiveRate()
    >>> rate.update_many([True, True, False])
    >>> rate.update(True)
    >>> rate
    PositiveRate(): 0.7500
    """


class ErrorRate(_Share):
    """Share of requests flagged as errors (an HTTP 5xx, an exception, a timeout).

    >>> errors = ErrorRate()
    >>> for status in [200, 200, 503, 200, 500]:
    ...     errors.update(status >= 500)
    >>> errors.get()
    0.4
    """


class Accuracy(Metric[float]):
    """Share of predictions equal to the true label.

    >>> acc = Accuracy()
    >>> for y_true, y_pred in [("a", "a"), ("b", "a"), ("b", "b"), ("a", "a")]:
    ...     acc.update(y_true, y_pred)
    >>> acc
    Accuracy(): 0.7500
    """

    def _reset(self) -> None:
        self._n = 0
        self._correct = 0

    def update(self, y_true: Hashable, y_pred: Hashable) -> None:
        self._n += 1
        self._correct += bool(y_true == y_pred)

    def update_many(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        t, p = _pair(y_true, y_pred)
        self._n += t.size
        self._correct += int(np.count_nonzero(t == p))

    def get(self) -> float | None:
        return self._correct / self._n if self._n else None


class F1(Metric[float]):
    """Binary F1 of ``pos_label``: 2 TP / (2 TP + FP + FN), None before any positive.

    >>> f1 = F1(pos_label="spam")
    >>> f1.update_many(["spam", "spam", "ham", "ham"], ["spam", "ham", "spam", "ham"])
    >>> f1
    F1(pos_label='spam'): 0.5000
    """

    def __init__(self, pos_label: Hashable = 1) -> None:
        self.pos_label = pos_label
        super().__init__()

    def _reset(self) -> None:
        self._tp = 0
        self._fp = 0
        self._fn = 0

    def update(self, y_true: Hashable, y_pred: Hashable) -> None:
        t, p = y_true == self.pos_label, y_pred == self.pos_label
        self._tp += t and p
        self._fp += p and not t
        self._fn += t and not p

    def update_many(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        t, p = (a == self.pos_label for a in _pair(y_true, y_pred))
        self._tp += int(np.count_nonzero(t & p))
        self._fp += int(np.count_nonzero(p & ~t))
        self._fn += int(np.count_nonzero(t & ~p))

    def get(self) -> float | None:
        denominator = 2 * self._tp + self._fp + self._fn
        return 2 * self._tp / denominator if denominator else None


class MacroF1(Metric[float]):
    """Unweighted mean of per-class F1 over every class seen, from a confusion counter.

    >>> f1 = MacroF1()
    >>> f1.update_many(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    >>> f1.get()  # (a: 2/3 + b: 1/2 + c: 0) / 3
    0.3888...
    """

    def _reset(self) -> None:
        self._confusion: Counter[tuple[Any, Any]] = Counter()

    def update(self, y_true: Hashable, y_pred: Hashable) -> None:
        self._confusion[y_true, y_pred] += 1

    def update_many(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        t, p = _pair(y_true, y_pred)
        try:
            classes, codes = np.unique(np.concatenate([t, p]), return_inverse=True)
        except TypeError:  # labels numpy cannot sort (mixed types): count pairs directly
            self._confusion.update(zip(t.tolist(), p.tolist(), strict=True))
            return
        k = classes.size
        counts = np.bincount(codes[: t.size] * k + codes[t.size :], minlength=k * k)
        labels = classes.tolist()
        for cell in np.flatnonzero(counts).tolist():
            self._confusion[labels[cell // k], labels[cell % k]] += int(counts[cell])

    def get(self) -> float | None:
        true: Counter[Any] = Counter()
        pred: Counter[Any] = Counter()
        for (t, p), count in self._confusion.items():
            true[t] += count
            pred[p] += count
        classes = true.keys() | pred.keys()
        if not classes:
            return None
        scores = [2 * self._confusion[c, c] / (true[c] + pred[c]) for c in classes]
        return math.fsum(scores) / len(scores)


class _Mean(Metric[float]):
    """Mean of a per-observation quantity."""

    def _reset(self) -> None:
        self._n = 0
        self._sum = 0.0

    def _add(self, values: np.ndarray) -> None:
        self._n += values.size
        self._sum += float(values.sum())

    def get(self) -> float | None:
        return self._sum / self._n if self._n else None


class MeanRating(_Mean):
    """Mean user rating (stars, a 1-10 score, a judge's grade).

    >>> rating = MeanRating()
    >>> rating.update_many([5, 4, 3])
    >>> rating.update(4.0)
    >>> rating.get()
    4.0
    """

    def update(self, rating: float) -> None:
        self._n += 1
        self._sum += float(rating)

    def update_many(self, ratings: ArrayLike) -> None:
        self._add(_vector(ratings, float))


class MAE(_Mean):
    """Mean absolute error.

    >>> mae = MAE()
    >>> mae.update_many([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    >>> mae.get()
    0.5
    """

    def update(self, y_true: float, y_pred: float) -> None:
        self._n += 1
        self._sum += abs(float(y_true) - float(y_pred))

    def update_many(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        t, p = _pair(y_true, y_pred, float)
        self._add(np.abs(t - p))


class RMSE(_Mean):
    """Root mean squared error.

    >>> rmse = RMSE()
    >>> rmse.update_many([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    >>> round(rmse.get(), 6)
    0.612372
    """

    def update(self, y_true: float, y_pred: float) -> None:
        self._n += 1
        self._sum += (float(y_true) - float(y_pred)) ** 2

    def update_many(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        t, p = _pair(y_true, y_pred, float)
        self._add((t - p) ** 2)

    def get(self) -> float | None:
        mse = super().get()
        return None if mse is None else math.sqrt(mse)


def _top_class(
    y_true: Hashable, y_prob: float | Mapping[Any, float], pos_label: Hashable
) -> tuple[float, bool]:
    """(confidence of the predicted class, whether it is right) for one prediction."""
    if isinstance(y_prob, Mapping):
        label = max(y_prob, key=y_prob.__getitem__)
        return float(y_prob[label]), bool(label == y_true)
    p = float(y_prob)
    return max(p, 1.0 - p), bool((p >= 0.5) == (y_true == pos_label))


def _proba_batch(
    y_true: ArrayLike, y_prob: ArrayLike, classes: Sequence[Hashable] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated (labels, probabilities, classes): 1-D binary, or 2-D with a column per class."""
    t, probs = _vector(y_true), np.asarray(y_prob, dtype=float)
    if probs.shape[:1] != t.shape or probs.ndim not in (1, 2):
        raise ValueError(f"y_prob of shape {probs.shape} does not fit {t.size} labels")
    if probs.ndim == 1:
        return t, probs, None
    if classes is None or len(classes) != probs.shape[1]:
        raise ValueError("a 2-D y_prob needs `classes`, one per column")
    return t, probs, np.asarray(classes)


class Brier(Metric[float]):
    """Brier score: mean squared distance between probabilities and the outcome.

    Binary, ``y_prob`` is the probability of ``pos_label``: the mean of
    ``(p - [y == pos_label])**2`` in [0, 1], as scikit-learn's
    ``brier_score_loss``.  Multiclass, ``y_prob`` maps class -> probability
    (a missing class has probability 0) and the score sums over classes, in
    [0, 2]; a binary mapping therefore scores twice the binary form.

    >>> brier = Brier(pos_label="yes")
    >>> brier.update("yes", 0.9)
    >>> brier.update("no", 0.4)
    >>> round(brier.get(), 6)  # (0.01 + 0.16) / 2
    0.085
    >>> multi = Brier()
    >>> multi.update("b", {"a": 0.2, "b": 0.7, "c": 0.1})
    >>> round(multi.get(), 6)  # 0.04 + 0.09 + 0.01
    0.14
    """

    def __init__(self, pos_label: Hashable = 1) -> None:
        self.pos_label = pos_label
        super().__init__()

    def _reset(self) -> None:
        self._n = 0
        self._sum = 0.0

    def update(self, y_true: Hashable, y_prob: float | Mapping[Any, float]) -> None:
        if isinstance(y_prob, Mapping):
            score = sum((float(p) - (k == y_true)) ** 2 for k, p in y_prob.items())
            score += y_true not in y_prob
        else:
            score = (float(y_prob) - (y_true == self.pos_label)) ** 2
        self._n += 1
        self._sum += score

    def update_many(
        self, y_true: ArrayLike, y_prob: ArrayLike, classes: Sequence[Hashable] | None = None
    ) -> None:
        """A batch: ``y_prob`` 1-D (binary) or 2-D with one column per entry of ``classes``."""
        t, probs, labels = _proba_batch(y_true, y_prob, classes)
        if labels is None:
            self._sum += float(((probs - (t == self.pos_label)) ** 2).sum())
        else:
            onehot = t[:, None] == labels[None, :]
            missing = np.count_nonzero(~onehot.any(axis=1))
            self._sum += float(((probs - onehot) ** 2).sum()) + missing
        self._n += t.size

    def get(self) -> float | None:
        return self._sum / self._n if self._n else None


class ECE(Metric[float]):
    """Expected calibration error on the top-class confidence, ``bins`` equal-width bins.

    ``sum_b (n_b / n) * |accuracy_b - mean confidence_b|``; bin ``b`` holds
    confidences in ``[b / bins, (b + 1) / bins)``, the last one also holds 1.
    ``y_prob`` is a mapping class -> probability (the predicted class is the
    most probable, ties to the first) or, binary, the probability of
    ``pos_label`` (predicted positive when it is >= 0.5).  Per bin it keeps a
    count, a confidence sum and a hit count, so it merges by adding them.

    >>> ece = ECE(bins=2)
    >>> ece.update("a", {"a": 0.9, "b": 0.1})  # bin 1, right
    >>> ece.update("b", {"a": 0.7, "b": 0.3})  # bin 1, wrong
    >>> ece.update("a", {"a": 0.4, "b": 0.35, "c": 0.25})  # bin 0, right
    >>> round(ece.get(), 6)  # (2/3) * |1/2 - 0.8| + (1/3) * |1 - 0.4|
    0.4
    """

    def __init__(self, bins: int = 10, pos_label: Hashable = 1) -> None:
        if int(bins) != bins or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.bins = int(bins)
        self.pos_label = pos_label
        super().__init__()

    def _reset(self) -> None:
        self._count = np.zeros(self.bins, dtype=np.int64)
        self._confidence = np.zeros(self.bins)
        self._hits = np.zeros(self.bins, dtype=np.int64)

    def update(self, y_true: Hashable, y_prob: float | Mapping[Any, float]) -> None:
        confidence, correct = _top_class(y_true, y_prob, self.pos_label)
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must lie in [0, 1], got {confidence}")
        b = min(int(confidence * self.bins), self.bins - 1)
        self._count[b] += 1
        self._confidence[b] += confidence
        self._hits[b] += correct

    def update_many(
        self, y_true: ArrayLike, y_prob: ArrayLike, classes: Sequence[Hashable] | None = None
    ) -> None:
        """A batch: ``y_prob`` 1-D (binary) or 2-D with one column per entry of ``classes``."""
        t, probs, labels = _proba_batch(y_true, y_prob, classes)
        if labels is None:
            confidence = np.maximum(probs, 1.0 - probs)
            correct = (probs >= 0.5) == (t == self.pos_label)
        else:
            confidence = probs.max(axis=1)
            correct = labels[probs.argmax(axis=1)] == t
        self.update_confidence(confidence, correct)

    def update_confidence(self, confidence: ArrayLike, correct: ArrayLike) -> None:
        """Predictions given as top-class confidence and whether each was right (or batches)."""
        c, hit = np.atleast_1d(np.asarray(confidence, dtype=float)), np.atleast_1d(correct)
        if c.ndim != 1 or c.shape != hit.shape:
            raise ValueError(f"confidence {c.shape} and correct {hit.shape} do not match")
        if c.size and not (c.min() >= 0.0 and c.max() <= 1.0):
            raise ValueError("confidence must lie in [0, 1]")
        b = np.minimum((c * self.bins).astype(np.int64), self.bins - 1)
        self._count += np.bincount(b, minlength=self.bins)
        self._confidence += np.bincount(b, weights=c, minlength=self.bins)
        self._hits += np.bincount(b[hit.astype(bool)], minlength=self.bins)

    def get(self) -> float | None:
        n = int(self._count.sum())
        return float(np.abs(self._hits - self._confidence).sum() / n) if n else None


class LatencyQuantiles(Metric[dict[str, float]]):
    """Latency quantiles from the log-bucket sketch of :mod:`govloop.stats.quantiles`.

    ``get()`` maps ``"p50"``, ``"p95"``, ``"p99"`` (one key per entry of
    ``quantiles``) to values within 1 % of the exact lower quantiles.

    >>> lat = LatencyQuantiles()
    >>> lat.update_many(range(1, 1001))
    >>> {k: round(v, 1) for k, v in lat.get().items()}  # exact: 500, 950, 990
    {'p50': 497.8, 'p95': 944.0, 'p99': 982.6}
    """

    def __init__(
        self, quantiles: Sequence[float] = (0.5, 0.95, 0.99), gamma: float = DEFAULT_GAMMA
    ) -> None:
        if not all(0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError(f"quantiles must lie in [0, 1], got {quantiles!r}")
        self.quantiles = tuple(float(q) for q in quantiles)
        self.gamma = float(gamma)
        super().__init__()

    def _reset(self) -> None:
        self._buckets: Counter[int] = Counter()

    def update(self, latency_ms: float) -> None:
        self._buckets[bucket_of(latency_ms, self.gamma)] += 1

    def update_many(self, latencies_ms: ArrayLike) -> None:
        x = np.maximum(_vector(latencies_ms, float), MIN_VALUE)
        buckets = np.ceil(np.log(x) / math.log(self.gamma)).astype(np.int64)
        index, counts = np.unique(buckets, return_counts=True)
        self._buckets.update(dict(zip(index.tolist(), counts.tolist(), strict=True)))

    def get(self) -> dict[str, float] | None:
        if not self._buckets:
            return None
        out = {}
        for q in self.quantiles:
            value = quantile_from_buckets(self._buckets, q, self.gamma)
            assert value is not None
            out[f"p{100 * q:g}"] = value
        return out
