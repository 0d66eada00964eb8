"""Confidence-based performance estimation (CBPE), online: accuracy before the labels.

Labels arrive late or never, so live accuracy cannot be measured; it can be
estimated.  If a classifier's probabilities are calibrated, its predicted
class is right with probability equal to its top-class confidence ``p``, so
over ``n`` predictions the expected accuracy is ``mean(p)``.  Under
independence the number right is a sum of Bernoulli(p_i), with variance
``sum p_i (1 - p_i)``: the standard error of the accuracy is
``sqrt(sum p_i (1 - p_i)) / n``.  This is NannyML's CBPE idea, which exists
there only in batch form; here the state is a few counts and sums, so it is online,
bounded and mergeable (``+=``) like :mod:`govloop.stats.metrics`.

Assumptions, and what breaks them:

- **Calibration.**  Raw scores are rarely calibrated; fit a :class:`Calibrator`
  on a labelled reference set and feed its output.  The interval covers the
  luck of the predictions, not the error of a calibration map fitted on a
  small reference set: with a few hundred reference labels, expect the
  estimate to be off by a few points more than its interval says.
- **Independence** of the predictions' outcomes (for the standard error).
- **No concept drift.**  Covariate shift (inputs move, ``P(y | x)`` stays) is
  what CBPE is for: confidence follows the inputs, so the estimate moves before
  any label arrives.  Concept drift (``P(y | x)`` itself changes) leaves the
  confidences, hence the estimate, unchanged while accuracy falls.  CBPE cannot
  see it; the labels that do arrive can, through
  :meth:`ConfidenceBasedAccuracy.compare`, whose
  z-score flags a gap between estimate and reality (miscalibration or concept
  drift).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Self, overload

import numpy as np
from numpy.typing import ArrayLike
from sklearn.isotonic import IsotonicRegression

from govloop.stats.metrics import Metric

__all__ = [
    "AccuracyEstimate",
    "Calibrator",
    "ConfidenceBasedAccuracy",
    "EstimateCheck",
    "top_class",
]

Probabilities = Mapping[Any, float] | ArrayLike


def _confidence(probabilities: Probabilities) -> float:
    """Top-class confidence: the largest probability, or the number itself."""
    if isinstance(probabilities, Mapping):
        if not probabilities:
            raise ValueError("expected one probability vector or a confidence, got {}")
        c = float(max(probabilities.values()))
    elif isinstance(probabilities, float | int):
        c = float(probabilities)
    else:
        p = np.asarray(probabilities, dtype=float)
        if p.size == 0 or p.ndim > 1:
            raise ValueError(f"expected one probability vector or a confidence, got {p.shape}")
        c = float(p.max())
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"confidence must lie in [0, 1], got {c}")
    return c


def top_class(probabilities: ArrayLike, classes: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a probability matrix: (top-class confidence, predicted class).

    >>> conf, pred = top_class([[0.2, 0.8], [0.6, 0.4]], classes=["no", "yes"])
    >>> conf.tolist(), pred.tolist()
    ([0.8, 0.6], ['yes', 'no'])
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"probabilities of shape {p.shape} do not fit {len(classes)} classes")
    return p.max(axis=1), np.asarray(classes)[p.argmax(axis=1)]


@dataclass(frozen=True)
class AccuracyEstimate:
    """Estimated accuracy of ``n`` predictions with its standard error and interval."""

    value: float
    se: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class EstimateCheck:
    """Realised accuracy on the labelled predictions against what CBPE expected.

    ``expected`` is the estimate for the labelled predictions themselves when
    every label came with its prediction's probabilities (``matched``), else
    the estimate over all predictions.  ``z`` is the gap in standard errors;
    ``p_value`` is two-sided.
    """

    estimate: float
    expected: float
    realised: float
    labelled: int
    z: float
    p_value: float
    matched: bool


def _z(diff: float, var: float) -> float:
    if var > 0:
        return diff / math.sqrt(var)
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


class ConfidenceBasedAccuracy(Metric[float]):
    """Online CBPE of accuracy from calibrated probabilities, checked against late labels.

    ``update`` takes one prediction's class probabilities (a mapping or a
    vector; a single number is taken as the top-class confidence itself);
    ``update_many`` takes a matrix (one row per prediction) or a vector of
    confidences.  ``observe`` takes a label's verdict when it arrives.

    A calibrated classifier: the interval brackets the realised accuracy, and
    the labels that arrive (for the first 500 predictions) agree with it.

    >>> rng = np.random.default_rng(2)
    >>> cbpe = ConfidenceBasedAccuracy()
    >>> confidence = rng.uniform(0.6, 1.0, size=2000)
    >>> correct = rng.random(2000) < confidence
    >>> cbpe.update_many(confidence)
    >>> est = cbpe.estimate()
    >>> round(est.value, 3), round(est.low, 3), round(est.high, 3), round(float(correct.mean()), 3)
    (0.8, 0.783, 0.816, 0.803)
    >>> for c, ok in zip(confidence[:500], correct[:500]):
    ...     cbpe.observe(ok, c)
    >>> cmp = cbpe.compare()
    >>> round(cmp.realised, 3), round(cmp.expected, 3), round(cmp.z, 2)
    (0.794, 0.798, -0.22)

    Covariate shift: inputs get harder, confidence drops, and so does the
    estimate, before a single new label has arrived.

    >>> shifted = ConfidenceBasedAccuracy()
    >>> confidence = rng.uniform(0.4, 0.8, size=2000)
    >>> shifted.update_many(confidence)
    >>> round(shifted.get(), 3)
    0.602

    Concept drift on top: the model is now right 20 points less often than it
    believes.  The estimate cannot know; the first 200 labels show the gap.

    >>> correct = rng.random(200) < confidence[:200] - 0.2
    >>> for c, ok in zip(confidence[:200], correct):
    ...     shifted.observe(ok, c)
    >>> cmp = shifted.compare()
    >>> round(cmp.realised, 3), round(cmp.expected, 3), round(cmp.z, 1), cmp.p_value < 1e-3
    (0.455, 0.602, -4.4, True)
    """

    def __init__(self, level: float = 0.95) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        self.level = level
        super().__init__()

    def _reset(self) -> None:
        self._n = 0
        self._sum_p = 0.0
        self._sum_var = 0.0
        self._labelled = 0
        self._correct = 0
        self._matched = 0
        self._lab_sum_p = 0.0
        self._lab_sum_var = 0.0

    def update(self, probabilities: Probabilities) -> None:
        c = _confidence(probabilities)
        self._n += 1
        self._sum_p += c
        self._sum_var += c * (1.0 - c)

    def update_many(self, probabilities: ArrayLike) -> None:
        p = np.asarray(probabilities, dtype=float)
        if p.ndim not in (1, 2):
            raise ValueError(f"expected a matrix or a vector of confidences, got shape {p.shape}")
        c = p.max(axis=1) if p.ndim == 2 else p
        if c.size and not (c.min() >= 0.0 and c.max() <= 1.0):
            raise ValueError("confidence must lie in [0, 1]")
        self._n += c.size
        self._sum_p += float(c.sum())
        self._sum_var += float((c * (1.0 - c)).sum())

    def observe(self, correct: bool, probabilities: Probabilities | None = None) -> None:
        """A label arrived: was the prediction right?  Pass its probabilities if known,
        so :meth:`compare` tests the labelled predictions against their own estimate
        (robust to labels that are not a random sample, e.g. chosen by active learning).
        """
        self._labelled += 1
        self._correct += bool(correct)
        if probabilities is not None:
            c = _confidence(probabilities)
            self._matched += 1
            self._lab_sum_p += c
            self._lab_sum_var += c * (1.0 - c)

    def get(self) -> float | None:
        return self._sum_p / self._n if self._n else None

    def estimate(self) -> AccuracyEstimate | None:
        """The estimated accuracy with its standard error and ``level`` interval."""
        if not self._n:
            return None
        value = self._sum_p / self._n
        se = math.sqrt(self._sum_var) / self._n
        z = NormalDist().inv_cdf(0.5 + self.level / 2)
        low, high = max(0.0, value - z * se), min(1.0, value + z * se)
        return AccuracyEstimate(value, se, low, high, self._n)

    def compare(self) -> EstimateCheck | None:
        """The estimate against realised accuracy on the labels seen (None before any label).

        Matched (every label came with its probabilities): the number right is
        tested against ``sum p`` of those same predictions, variance
        ``sum p(1 - p)``.  Otherwise the labelled predictions are taken as a
        random sample: the variance is ``a(1 - a) / m + var(p) / n``.
        """
        if not self._labelled or not self._n:
            return None
        m, realised = self._labelled, self._correct / self._labelled
        estimate = self._sum_p / self._n
        matched = self._matched == m
        if matched:
            expected = self._lab_sum_p / m
            var = self._lab_sum_var / m**2
        else:
            expected = estimate
            var_p = max((self._sum_p - self._sum_var) / self._n - estimate**2, 0.0)
            var = estimate * (1.0 - estimate) / m + var_p / self._n
        z = _z(realised - expected, var)
        p_value = math.erfc(abs(z) / math.sqrt(2.0))
        return EstimateCheck(estimate, expected, realised, m, z, p_value, matched)


class Calibrator:
    """Isotonic map from raw top-class confidence to the probability of being right.

    Fitted with scikit-learn's ``IsotonicRegression`` on a labelled reference
    set of (confidence, correct) pairs; only its breakpoints are kept, so a
    fitted calibrator is plain data (``x_``, ``y_``), and ``transform``
    interpolates between them, clipping outside the fitted range.

    >>> rng = np.random.default_rng(0)
    >>> raw = rng.uniform(0.5, 1.0, size=5000)
    >>> right = rng.random(5000) < raw - 0.2  # overconfident by 0.2
    >>> cal = Calibrator().fit(raw, right)
    >>> round(cal.transform(0.9), 2), cal.transform([0.6, 0.95]).round(2).tolist()  # 0.7, 0.4, 0.75
    (0.68, [0.4, 0.8])
    """

    def __init__(self) -> None:
        self.x_: np.ndarray | None = None
        self.y_: np.ndarray | None = None

    def fit(self, confidence: ArrayLike, correct: ArrayLike) -> Self:
        x, y = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError(f"need two 1-D arrays of one length, got {x.shape} and {y.shape}")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        self.x_, self.y_ = iso.X_thresholds_.copy(), iso.y_thresholds_.copy()
        return self

    @overload
    def transform(self, confidence: float) -> float: ...

    @overload
    def transform(self, confidence: ArrayLike) -> np.ndarray: ...

    def transform(self, confidence: ArrayLike) -> float | np.ndarray:
        """Calibrated confidence: a float for a float, an array for an array."""
        if self.x_ is None or self.y_ is None:
            raise ValueError("Calibrator is not fitted: call fit() first")
        c = np.asarray(confidence, dtype=float)
        out = np.interp(c, self.x_, self.y_)
        return float(out) if c.ndim == 0 else out

    def __repr__(self) -> str:
        fitted = "unfitted" if self.x_ is None else f"{self.x_.size} breakpoints"
        return f"Calibrator(): {fitted}"
