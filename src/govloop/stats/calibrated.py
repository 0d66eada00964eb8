"""Change detectors calibrated by simulation to a stated false-alarm rate.

API
---
``calibrated(reference, kind, false_alarms_per_10k=1.0, seed=0) -> CalibratedDetector``
    Calibrate against ``reference`` (a sample of the no-change stream) and return a
    fresh detector.  ``kind`` is ``"numeric"`` (floats), ``"categorical"`` (labels,
    any hashable; unseen labels count as the ``"__other__"`` category) or
    ``"binary"`` (0/1 or bools).
``calibrate(reference, kind, false_alarms_per_10k=1.0, seed=0) -> Calibration``
    The calibration alone: a frozen dataclass (standardisation, category shares,
    the arms and their thresholds) with ``to_dict()`` / ``Calibration.from_dict(d)``
    (plain JSON data) and ``detector(state=None) -> CalibratedDetector``.  Run it
    once per (model version, feature) and store it.
``CalibratedDetector``
    River's contract (:class:`~govloop.stats.detector.DriftDetector`): ``update(x)``,
    ``drift_detected``, ``update_many(values) -> indices`` (bit-identical to
    ``update`` one by one), ``clone()``; after a detection it restarts from zero
    on the next value.  ``detect(values) -> list[Alarm]`` is ``update_many`` with
    what fired at each alarm; ``last_alarm`` holds the latest ``Alarm`` (its
    ``arm``: family ``mean`` / ``spread`` / ``share`` / ``rate``, direction, size,
    category; ``statistic``; ``threshold``; ``describe()`` in words).
    ``state() -> dict`` is compact JSON data; ``calibration.detector(state=...)``
    rebuilds the detector exactly where it was.

How it works
------------
A bank of one-sided likelihood-ratio CUSUMs (Page 1954; Lorden 1971), one per
*arm*: an alternative of a given family, direction and size.  Numeric values
are standardised by the reference's mean and standard deviation, ``z``; an arm
for a mean shift of ``d`` standard deviations adds ``d z - d^2 / 2`` per value
(the Gaussian log-likelihood ratio), an arm for a spread ratio ``r = e^s`` adds
``-s + (1 - r^-2) z^2 / 2``.  Categorical values are watched per category: an
arm moves one category's log-odds by ``s`` (its share up or down, the others in
proportion) and adds the Bernoulli log-likelihood ratio of the category's
indicator; a binary stream is the indicator of 1.  Sizes form a geometric grid
(ratio 2) in both directions, so a shift of unknown size is within a factor of
sqrt(2) of an arm.  Each arm's statistic is ``S_t = max(0, S_{t-1} + inc_t)``
(kept as a cumulative sum minus its running minimum, so batches use numpy) and
the bank alarms when any arm crosses its threshold.

Thresholds come from simulation, not from Gaussian theory
(:mod:`govloop.stats.null_streams`): null streams are drawn from plausible truths
given the reference (a bootstrap resample of it per stream; for categories, shares
drawn from their Dirichlet posterior), so the reference's own sampling error is part
of the calibration.  Each arm's threshold is first set so that the arm alone would
alarm at one common rate, then all move by one shift, found by bisection, so that the
upper 90 % Poisson bound of the restarting detector's false-alarm rate (after a
burn-in, every restart replayed) is at most the stated rate.  Rates too low to see in
the simulation are extrapolated on the log scale from two rates that are (the run
length of a CUSUM has an exponential tail in its threshold).  Numeric values are
clipped to the reference's range, so the detector sees no increment the simulation
could not produce.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from govloop.stats.detector import DriftDetector, FloatArray
from govloop.stats.null_streams import categorical_null, numeric_null, thresholds

__all__ = ["Alarm", "Arm", "CalibratedDetector", "Calibration", "calibrate", "calibrated"]

Kind = Literal["numeric", "categorical", "binary"]
KINDS = ("numeric", "categorical", "binary")
OTHER = "__other__"

#: Arm sizes: mean shifts in standard deviations, log spread ratios, log-odds shifts.
MEAN_SIZES = (0.2, 0.4, 0.8, 1.6)
SPREAD_SIZES = (0.2, 0.4, 0.8)
LOGIT_SIZES = (0.2, 0.4, 0.8, 1.6)
#: Categories watched one by one (the most frequent); the others share one arm set.
MAX_CATEGORIES = 8


@dataclass(frozen=True)
class Arm:
    """One alternative the bank watches for."""

    family: str  # "mean", "spread", "share", "rate"
    direction: str  # "up", "down"
    size: float  # sd (mean), log sd ratio (spread), log-odds (share, rate)
    category: str | None = None

    def describe(self) -> str:
        sign = 1 if self.direction == "up" else -1
        if self.family == "mean":
            return f"mean {self.direction} by {self.size:g} sd"
        if self.family == "spread":
            return f"spread {self.direction} by a factor {math.exp(sign * self.size):.3g}"
        what = f"share of {self.category!r}" if self.family == "share" else "rate"
        return f"{what} {self.direction}, log-odds {sign * self.size:+g}"


@dataclass(frozen=True)
class Alarm:
    """What fired: the arm, its statistic and threshold, and where."""

    index: int  # into the values of the update_many/detect call (-1 after update)
    arm: Arm
    statistic: float
    threshold: float

    def describe(self) -> str:
        return f"{self.arm.describe()} (statistic {self.statistic:.2f} > {self.threshold:.2f})"


@dataclass(frozen=True)
class Calibration:
    """Everything a detector needs, as plain data: store once, rebuild detectors from it."""

    kind: str
    false_alarms_per_10k: float
    seed: int
    n_reference: int
    center: float = 0.0  # numeric: reference mean
    scale: float = 1.0  # numeric: reference standard deviation
    low: float = -math.inf  # numeric: values are clipped to the reference's range
    high: float = math.inf
    categories: tuple[str, ...] = ()  # categorical: watched categories, OTHER last
    shares: tuple[float, ...] = ()  # categorical / binary: smoothed reference shares
    arms: tuple[Arm, ...] = ()
    thresholds: tuple[float, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.categories)})

    def detector(self, state: dict[str, Any] | None = None) -> CalibratedDetector:
        """A detector with these thresholds, fresh or restored from ``state()``."""
        detector = CalibratedDetector(self)
        if state is not None:
            detector.restore(state)
        return detector

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "false_alarms_per_10k": self.false_alarms_per_10k,
            "seed": self.seed,
            "n_reference": self.n_reference,
            "center": self.center,
            "scale": self.scale,
            "low": self.low,
            "high": self.high,
            "categories": list(self.categories),
            "shares": list(self.shares),
            "arms": [[a.family, a.direction, a.size, a.category] for a in self.arms],
            "thresholds": list(self.thresholds),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(
            kind=d["kind"],
            false_alarms_per_10k=float(d["false_alarms_per_10k"]),
            seed=int(d["seed"]),
            n_reference=int(d["n_reference"]),
            center=float(d["center"]),
            scale=float(d["scale"]),
            low=float(d["low"]),
            high=float(d["high"]),
            categories=tuple(d["categories"]),
            shares=tuple(float(p) for p in d["shares"]),
            arms=tuple(Arm(f, dr, float(s), c) for f, dr, s, c in d["arms"]),
            thresholds=tuple(float(h) for h in d["thresholds"]),
        )

    def code(self, value: Hashable) -> int:
        """A categorical value's code (unseen or folded values: OTHER's)."""
        return self._index.get(str(value), len(self.categories) - 1)

    def coefficients(self) -> FloatArray:
        """Numeric: (3, arms) rows a, b, c of the increment ``a + b z + c z^2``."""
        return _quadratic(self.arms)

    def table(self) -> FloatArray:
        """Categorical / binary: (codes, arms) increment of each arm per observed code."""
        return _table(self.arms, np.asarray(self.shares), self.categories)


# -- arms and their increments --------------------------------------------------------------


def _numeric_arms() -> list[Arm]:
    arms = [Arm("mean", d, s) for s in MEAN_SIZES for d in ("up", "down")]
    return arms + [Arm("spread", d, s) for s in SPREAD_SIZES for d in ("up", "down")]


def _share_arms(categories: Sequence[str], family: str) -> list[Arm]:
    return [
        Arm(family, d, s, c if family == "share" else None)
        for c in categories
        for s in LOGIT_SIZES
        for d in ("up", "down")
    ]


def _quadratic(arms: Sequence[Arm]) -> FloatArray:
    coef = np.zeros((3, len(arms)))
    for j, arm in enumerate(arms):
        sign = 1.0 if arm.direction == "up" else -1.0
        if arm.family == "mean":
            coef[:, j] = (-(arm.size**2) / 2, sign * arm.size, 0.0)
        else:
            s = sign * arm.size
            coef[:, j] = (-s, 0.0, (1.0 - math.exp(-2.0 * s)) / 2)
    return coef


def _table(
    arms: Sequence[Arm], shares: NDArray[np.float64], categories: Sequence[str]
) -> FloatArray:
    """Increment per (observed code, arm); ``shares`` may be (codes,) or (streams, codes)."""
    index = {c: i for i, c in enumerate(categories)}
    p = np.atleast_2d(shares)
    out = np.zeros((p.shape[0], p.shape[1], len(arms)))
    for j, arm in enumerate(arms):
        k = 1 if arm.family == "rate" else index[arm.category or ""]
        p0 = p[:, k]
        sign = 1.0 if arm.direction == "up" else -1.0
        p1 = 1.0 / (1.0 + (1.0 - p0) / p0 * math.exp(-sign * arm.size))
        miss = np.log((1.0 - p1) / (1.0 - p0))
        out[:, :, j] = miss[:, None]
        out[:, k, j] = np.log(p1 / p0)
    return out[0] if np.ndim(shares) == 1 else out


# -- the detector -------------------------------------------------------------------------


class CalibratedDetector(DriftDetector):
    """A calibrated CUSUM bank with River's contract; build it with :func:`calibrated`.

    A mean shift of 0.5 sd at index 3000, calibrated on 1,000 reference values.  One
    false alarm comes first (at about one per 10,000 values, 3,000 quiet values give
    one 26 % of the time); the change is found 24 values after it happens, and again
    after each restart:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> detector = calibrated(rng.normal(0.0, 1.0, 1000), "numeric", false_alarms_per_10k=1.0)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 3000), rng.normal(0.5, 1.0, 1000)])
    >>> alarms = detector.detect(stream)
    >>> [a.index for a in alarms][:3]
    [2363, 3024, 3080]
    >>> print(alarms[1].describe())
    mean up by 0.8 sd (statistic 11.53 > 10.82)

    The state is plain data; a detector rebuilt from it carries on exactly:

    >>> import json
    >>> state = json.loads(json.dumps(detector.state()))
    >>> restored = detector.calibration.detector(state=state)
    >>> restored.update_many(stream).tolist() == detector.update_many(stream).tolist()
    True
    """

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self._h = np.asarray(calibration.thresholds, dtype=np.float64)
        if calibration.kind == "numeric":
            self._coef = calibration.coefficients()
        else:
            self._lut = calibration.table()
        self.last_alarm: Alarm | None = None
        self._fired: list[Alarm] = []
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._sum = np.zeros(self._h.size)
        self._min = np.zeros(self._h.size)

    @property
    def n(self) -> int:
        """Values since the last restart."""
        return self._n

    @property
    def statistics(self) -> FloatArray:
        """Each arm's CUSUM statistic (log-likelihood ratio) now."""
        return self._sum - self._min

    def state(self) -> dict[str, Any]:
        """Compact JSON data: rebuild with ``calibration.detector(state=...)``."""
        return {
            "n": self._n,
            "drift": self._drift_detected,
            "sum": self._sum.tolist(),
            "min": self._min.tolist(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        s, m = (
            np.asarray(state["sum"], dtype=np.float64),
            np.asarray(state["min"], dtype=np.float64),
        )
        if s.shape != self._h.shape or m.shape != self._h.shape:
            raise ValueError(f"state has {s.size} arms, the calibration {self._h.size}")
        self._n, self._drift_detected = int(state["n"]), bool(state["drift"])
        self._sum, self._min = s, m

    def _codes(self, values: Iterable[Any]) -> FloatArray:
        cal = self.calibration
        if cal.kind == "numeric":
            x = np.asarray(values, dtype=np.float64).ravel()
            if not np.isfinite(x).all():
                raise ValueError("numeric values must be finite (got NaN or infinity)")
            return x
        if cal.kind == "binary":
            x = np.asarray(values, dtype=np.float64).ravel()
            if not np.isin(x, (0.0, 1.0)).all():
                raise ValueError("binary values must be 0 or 1 (or bools)")
            return x
        vals = [values] if isinstance(values, str) else list(values)
        return np.fromiter((cal.code(v) for v in vals), dtype=np.float64, count=len(vals))

    def update(self, x: Any) -> None:
        """Feed one observation; read the outcome from ``drift_detected``."""
        self.update_many([x])
        if self._drift_detected and self.last_alarm is not None:
            self.last_alarm = Alarm(-1, *_tail(self.last_alarm))

    def update_many(self, values: ArrayLike | Iterable[Any]) -> NDArray[np.intp]:
        """Feed a batch; return the indices into ``values`` where drift was signalled."""
        self._fired = []
        hits = super().update_many(self._codes(values))  # type: ignore[arg-type]
        self._fired = [Alarm(int(i), *_tail(a)) for i, a in zip(hits, self._fired, strict=True)]
        if self._fired:
            self.last_alarm = self._fired[-1]
        return hits

    def detect(self, values: ArrayLike | Iterable[Any]) -> list[Alarm]:
        """``update_many`` returning, for each alarm, what fired."""
        self.update_many(values)
        return list(self._fired)

    def _increments(self, codes: FloatArray) -> FloatArray:
        if self.calibration.kind == "numeric":
            cal = self.calibration
            z = (np.clip(codes, cal.low, cal.high) - cal.center) / cal.scale
            a, b, c = self._coef
            return a + z[:, None] * (b + z[:, None] * c)
        return self._lut[codes.astype(np.intp)]

    def _scan(self, values: FloatArray) -> int:
        inc = self._increments(values)
        sums = np.cumsum(np.vstack([self._sum[None, :], inc]), axis=0)[1:]
        mins = np.minimum.accumulate(np.vstack([self._min[None, :], sums]), axis=0)[1:]
        over = ((sums - mins) > self._h).any(axis=1)
        hit = int(np.argmax(over)) if over.any() else -1
        last = hit if hit >= 0 else values.size - 1
        self._n += last + 1
        self._sum, self._min = sums[last].copy(), mins[last].copy()
        self._drift_detected = hit >= 0
        if hit >= 0:
            # what fired: of the arms over their thresholds, the likeliest alternative
            stat = self._sum - self._min
            j = int(np.argmax(np.where(stat > self._h, stat, -np.inf)))
            self._fired.append(
                Alarm(hit, self.calibration.arms[j], float(stat[j]), float(self._h[j]))
            )
        return hit

    def _params(self) -> dict[str, Any]:
        return {"calibration": self.calibration}

    def __repr__(self) -> str:
        cal = self.calibration
        return (
            f"CalibratedDetector(kind={cal.kind!r}, false_alarms_per_10k="
            f"{cal.false_alarms_per_10k}, arms={len(cal.arms)})"
        )


def _tail(alarm: Alarm) -> tuple[Arm, float, float]:
    return alarm.arm, alarm.statistic, alarm.threshold


# -- calibration ----------------------------------------------------------------------------


def calibrated(
    reference: ArrayLike | Iterable[Any],
    kind: str,
    false_alarms_per_10k: float = 1.0,
    seed: int = 0,
) -> CalibratedDetector:
    """A fresh detector calibrated against ``reference`` to ``false_alarms_per_10k``."""
    return calibrate(reference, kind, false_alarms_per_10k, seed).detector()


def calibrate(
    reference: ArrayLike | Iterable[Any],
    kind: str,
    false_alarms_per_10k: float = 1.0,
    seed: int = 0,
) -> Calibration:
    """Arms and thresholds for ``kind`` against ``reference``, by seeded simulation.

    >>> import numpy as np
    >>> cal = calibrate(np.random.default_rng(0).random(500) < 0.1, "binary")
    >>> len(cal.arms), cal.shares[1] > 0.05
    (8, True)
    >>> Calibration.from_dict(cal.to_dict()) == cal
    True
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    rate = float(false_alarms_per_10k)
    if not (math.isfinite(rate) and 0 < rate < 1e4):
        raise ValueError(f"false_alarms_per_10k must be in (0, 10000), not {false_alarms_per_10k}")
    rng = np.random.default_rng(seed)
    if kind == "numeric":
        x = np.asarray(reference, dtype=np.float64).ravel()
        _check_size(x.size)
        if not np.isfinite(x).all():
            raise ValueError("the reference holds NaN or infinite values")
        center, scale = float(np.mean(x)), float(np.std(x, ddof=1)) if x.size > 1 else 0.0
        if not scale > 0:
            raise ValueError("the reference has no spread: every value is the same")
        arms = _numeric_arms()
        null = numeric_null(x, center, scale, _quadratic(arms), rng)
        extra: dict[str, Any] = {
            "center": center,
            "scale": scale,
            "low": float(x.min()),
            "high": float(x.max()),
        }
    else:
        categories, counts = _count(reference, kind)
        _check_size(int(counts.sum()))
        shares = (counts + 0.5) / (counts.sum() + 0.5 * counts.size)
        arms = _share_arms(categories if kind == "categorical" else ["1"], _family(kind))
        index = {c: i for i, c in enumerate(categories)}
        targets = [1 if a.family == "rate" else index[a.category or ""] for a in arms]
        null = categorical_null(counts, _table(arms, shares, categories), targets, rng)
        extra = {"categories": tuple(categories), "shares": tuple(shares.tolist())}
    limits = thresholds(null, rate / 1e4)
    return Calibration(
        kind=kind,
        false_alarms_per_10k=rate,
        seed=seed,
        n_reference=int(x.size) if kind == "numeric" else int(counts.sum()),
        arms=tuple(arms),
        thresholds=tuple(limits.tolist()),
        **extra,
    )


def _family(kind: str) -> str:
    return "share" if kind == "categorical" else "rate"


def _check_size(n: int) -> None:
    if n < 2:
        raise ValueError(f"the reference needs at least 2 values, not {n}")


def _count(reference: ArrayLike | Iterable[Any], kind: str) -> tuple[list[str], FloatArray]:
    """Watched categories (OTHER last) and their reference counts."""
    values: list[Any] = [reference] if isinstance(reference, str) else list(reference)  # type: ignore[arg-type]
    if kind == "binary":
        x = np.asarray(values, dtype=np.float64).ravel()
        if not np.isin(x, (0.0, 1.0)).all():
            raise ValueError("a binary reference holds only 0 and 1 (or bools)")
        ones = float(x.sum())
        return ["0", "1"], np.array([x.size - ones, ones])
    labels, counts = np.unique(
        np.asarray([str(v) for v in values], dtype=object), return_counts=True
    )
    order = sorted(range(len(labels)), key=lambda i: (-counts[i], labels[i]))
    kept = [i for i in order if labels[i] != OTHER][:MAX_CATEGORIES]
    folded = float(counts.sum() - counts[kept].sum())
    return [str(labels[i]) for i in kept] + [OTHER], np.append(counts[kept], folded).astype(float)
