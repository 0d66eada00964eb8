"""Histogram-binning calibration of top-class confidence, from bounded counters.

The raw confidence-based estimate (:mod:`govloop.stats.cbpe`) is the mean
top-class probability, which is the expected accuracy only when the model's
probabilities are calibrated; most are not (naive Bayes, boosted trees, deep
nets are overconfident).  Histogram binning (Zadrozny & Elkan, 2001) maps a
confidence to the accuracy observed, on labelled reference data, among
predictions whose confidence fell in the same bin.  The stream worker keeps,
per window, three counters per bin: predictions, labelled and correct
predictions, so the state is a fixed number of integers that Redis adds
exactly, and a sliding window or a reference period is a sum of windows.

The estimate for ``n`` predictions with ``n_b`` in bin ``b`` is
``sum_b n_b * acc_b / n``.  Its variance, as an estimate of the accuracy the
window's labels would show, has two parts: the outcomes' own luck given the
map, ``sum_b n_b acc_b (1 - acc_b) / n**2``, and the map's estimation error,
``sum_k (n_k / n)**2 * acc_k (1 - acc_k) / L_k`` over the map's blocks ``k``
(``L_k`` reference labels).  Both use the block's accuracy shrunk towards 1/2
(``(correct + 1) / (labelled + 2)``) so a block that was always right still
carries its uncertainty; the point estimate uses the plain ratio.

Why bins and not isotonic regression: the worker cannot keep every labelled
(confidence, outcome) pair of a reference period, and counters per fixed bin
merge across workers and windows by addition.  Within a bin, in distribution,
the reference and the stream hold the same mix of confidences, so the binned
estimate is unbiased however coarse the bin; bins with too few labels are
pooled with their neighbours (``min_labels`` per block).

Valid in distribution: the stream's inputs come from the reference period's
distribution, and the labels are a random sample of the predictions within
each block.  Under covariate shift the confidences move, and the estimate
follows them only as far as accuracy given confidence stays what it was,
which fails for a misspecified model; under concept drift it sees nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from govloop.stats.cbpe import AccuracyEstimate

__all__ = [
    "CONFIDENCE_EDGES",
    "BinnedCalibration",
    "bin_counts",
    "confidence_bin",
    "confidence_bins",
]

#: Interior edges of the confidence bins: tenths, then ever finer towards 1, where
#: overconfident models put most of their predictions.  Bin ``i`` holds confidences in
#: ``[edges[i - 1], edges[i])``; the last bin ends at 1 inclusive.
CONFIDENCE_EDGES: tuple[float, ...] = (
    *(round(0.1 * k, 1) for k in range(1, 10)),
    0.95,
    0.98,
    0.99,
    0.995,
    0.999,
    0.9999,
    0.99999,
    0.999999,
)


def confidence_bin(confidence: float, edges: Sequence[float] = CONFIDENCE_EDGES) -> int:
    """The bin of one confidence.

    >>> confidence_bin(0.05), confidence_bin(0.5), confidence_bin(0.97), confidence_bin(1.0)
    (0, 5, 10, 17)
    """
    return bisect_right(edges, confidence)


def confidence_bins(confidence: ArrayLike, edges: Sequence[float] = CONFIDENCE_EDGES) -> np.ndarray:
    """The bins of many confidences (:func:`confidence_bin`, vectorised).

    >>> confidence_bins([0.05, 0.5, 0.97, 1.0]).tolist()
    [0, 5, 10, 17]
    """
    return np.searchsorted(np.asarray(edges), np.asarray(confidence, dtype=float), side="right")


def bin_counts(counters: Mapping[str, Any], prefix: str, bins: int) -> list[int]:
    """Per-bin counters ``<prefix><bin>`` of a window as a list (absent bins are 0).

    >>> bin_counts({"cb:0": 2, "cb:3": "5", "count": 7}, "cb:", 4)
    [2, 0, 0, 5]
    """
    return [int(counters.get(f"{prefix}{b}", 0)) for b in range(bins)]


def _shrunk(correct: float, labelled: float) -> float:
    return (correct + 1.0) / (labelled + 2.0)


@dataclass(frozen=True)
class BinnedCalibration:
    """A histogram-binning map fitted from labelled reference counts per confidence bin.

    ``labelled[b]`` and ``correct[b]`` count the reference predictions of bin
    ``b`` that got a label, and those that were right.  Adjacent bins are
    pooled, in order of confidence, into blocks of at least ``min_labels``
    labels (a last block short of it joins the one before); every bin, with
    labels or not, maps to its block's accuracy.

    GaussianNB is overconfident on digits: a map fitted on half the data
    estimates the accuracy of the other half, where the raw mean confidence
    is far off.

    >>> from sklearn.datasets import load_digits
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = load_digits(return_X_y=True)
    >>> order = np.random.default_rng(0).permutation(len(y))
    >>> fit, ref, live = order[:600], order[600:1200], order[1200:]
    >>> model = GaussianNB().fit(X[fit], y[fit])
    >>> def outcomes(rows):
    ...     p = model.predict_proba(X[rows])
    ...     return p.max(axis=1), model.classes_[p.argmax(axis=1)] == y[rows]
    >>> conf, right = outcomes(ref)
    >>> cal = BinnedCalibration.fit(conf, right)
    >>> conf, right = outcomes(live)
    >>> est = cal.estimate(np.bincount(confidence_bins(conf), minlength=cal.bins))
    >>> print(f"raw {conf.mean():.3f}  calibrated {est.value:.3f} +- {est.se:.3f}  "
    ...       f"true {right.mean():.3f}")
    raw 0.990  calibrated 0.844 +- 0.019  true 0.819
    """

    labelled: tuple[int, ...]
    correct: tuple[int, ...]
    edges: tuple[float, ...] = CONFIDENCE_EDGES
    min_labels: int = 30
    _blocks: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labelled = tuple(int(n) for n in self.labelled)
        correct = tuple(int(n) for n in self.correct)
        object.__setattr__(self, "labelled", labelled)
        object.__setattr__(self, "correct", correct)
        object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        if len(labelled) != len(self.edges) + 1 or len(correct) != len(labelled):
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) + 1} bins of labelled and "
                f"correct counts, got {len(labelled)} and {len(correct)}"
            )
        if any(not 0 <= c <= n for c, n in zip(correct, labelled, strict=True)):
            raise ValueError("every bin needs 0 <= correct <= labelled")
        if list(self.edges) != sorted(set(self.edges)):
            raise ValueError("edges must increase strictly")
        if self.min_labels < 1:
            raise ValueError(f"min_labels must be at least 1, got {self.min_labels}")
        if sum(labelled) < self.min_labels:
            raise ValueError(f"a map needs at least {self.min_labels} labels, got {sum(labelled)}")
        object.__setattr__(self, "_blocks", self._pool(labelled, correct))

    def _pool(
        self, labelled: tuple[int, ...], correct: tuple[int, ...]
    ) -> tuple[tuple[int, int, int, int], ...]:
        blocks: list[list[int]] = []  # [first bin, last bin, labelled, correct]
        first, n, k = 0, 0, 0
        for b, (nb, kb) in enumerate(zip(labelled, correct, strict=True)):
            n, k = n + nb, k + kb
            if n >= self.min_labels:
                blocks.append([first, b, n, k])
                first, n, k = b + 1, 0, 0
        if first < len(labelled):  # the tail, short of min_labels: joins the last block
            last = blocks[-1]
            last[1], last[2], last[3] = len(labelled) - 1, last[2] + n, last[3] + k
        return tuple((f, t, n, k) for f, t, n, k in blocks)

    @classmethod
    def fit(
        cls,
        confidence: ArrayLike,
        correct: ArrayLike,
        edges: Sequence[float] = CONFIDENCE_EDGES,
        min_labels: int = 30,
    ) -> BinnedCalibration:
        """The map from labelled reference pairs (top-class confidence, was it right)."""
        c = np.asarray(confidence, dtype=float)
        ok = np.asarray(correct, dtype=bool)
        if c.ndim != 1 or c.shape != ok.shape:
            raise ValueError(f"need two 1-D arrays of one length, got {c.shape} and {ok.shape}")
        bins = confidence_bins(c, edges)
        size = len(edges) + 1
        labelled = np.bincount(bins, minlength=size)
        right = np.bincount(bins, weights=ok, minlength=size)
        return cls(
            tuple(labelled.tolist()),
            tuple(int(x) for x in right),
            tuple(edges),
            min_labels,
        )

    @property
    def bins(self) -> int:
        """How many confidence bins the map covers."""
        return len(self.labelled)

    @property
    def n_labels(self) -> int:
        """Reference labels the map was fitted on."""
        return sum(self.labelled)

    @property
    def blocks(self) -> tuple[tuple[int, int, int, int], ...]:
        """The pooled blocks: (first bin, last bin, labelled, correct)."""
        return self._blocks

    def accuracy(self) -> np.ndarray:
        """The map: each bin's calibrated confidence (its block's reference accuracy)."""
        out = np.empty(self.bins)
        for first, last, n, k in self._blocks:
            out[first : last + 1] = k / n
        return out

    def estimate(self, counts: Sequence[int], level: float = 0.95) -> AccuracyEstimate | None:
        """Calibrated accuracy of predictions counted per bin (None when there are none)."""
        n_b = np.asarray(counts, dtype=float)
        if n_b.shape != (self.bins,) or (n_b < 0).any():
            raise ValueError(f"need {self.bins} non-negative bin counts, got {n_b.shape}")
        n = float(n_b.sum())
        if n == 0:
            return None
        value, outcome_var, map_var = 0.0, 0.0, 0.0
        for first, last, labelled, correct in self._blocks:
            nk = float(n_b[first : last + 1].sum())
            a, s = correct / labelled, _shrunk(correct, labelled)
            value += nk * a
            outcome_var += nk * s * (1.0 - s)
            map_var += nk**2 * s * (1.0 - s) / labelled
        value /= n
        se = math.sqrt(outcome_var + map_var) / n
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return AccuracyEstimate(
            value, se, max(0.0, value - z * se), min(1.0, value + z * se), int(n)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for storage (:meth:`from_dict` reads it back)."""
        return {
            "edges": list(self.edges),
            "labelled": list(self.labelled),
            "correct": list(self.correct),
            "min_labels": self.min_labels,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinnedCalibration:
        """The map :meth:`to_dict` wrote.

        >>> cal = BinnedCalibration((10, 0, 30), (5, 0, 27), (0.5, 0.9), min_labels=10)
        >>> BinnedCalibration.from_dict(cal.to_dict()) == cal, cal.blocks
        (True, ((0, 0, 10, 5), (1, 2, 30, 27)))
        """
        return cls(
            tuple(data["labelled"]),
            tuple(data["correct"]),
            tuple(data["edges"]),
            int(data["min_labels"]),
        )
