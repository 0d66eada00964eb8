"""Labelled drift streams, the oracle CUSUM and delay measurement.

Shared by ``bench_drift.py`` and the validity part ``benchmarks/validity/detectors.py``,
so that both measure the same streams in the same way.

* :class:`Shift`: one change, before -> after, of a family (``mean``, ``spread``,
  ``share``, ``rate``) at a size; :data:`SHIFTS` holds the issue's sizes and their
  halves and doubles.  ``draw`` makes values, ``llr`` the log-likelihood ratio of
  the post-change against the pre-change distribution, ``mirror`` the same size in
  the other direction.
* :func:`make_stream`: the benchmark's labelled streams (a change drawn in
  [n/2, n/2 + 1000), or none on a control); :func:`shift_stream` a stream with a
  pre-change segment and a long post-change one, for the oracle comparison.
* :func:`reference`: pre-change draws for a calibrated detector, from a generator
  of its own; :func:`detector_values` the stream as the detector takes it.
* :class:`Oracle` and :func:`calibrate_oracle`: the likelihood-ratio CUSUM for
  exactly the post-change distribution (one-sided, or both directions at the same
  size), its threshold set by simulation on the true pre-change distribution to a
  stated false-alarm rate, restarting after each alarm, and that rate measured
  again on fresh null streams.
* :func:`cusum_alarms`, :func:`first_delay`, :func:`median_delay`,
  :func:`poisson_interval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

LABELS = np.array(["a", "b", "c"])
CAT_BEFORE = (0.5, 0.3, 0.2)
RATE_BEFORE = 0.10
RAMP = 2_000  # events over which the gradual shift reaches its full size


def scaled_shares(before: Sequence[float], index: int, share: float) -> tuple[float, ...]:
    """``before`` with category ``index`` set to ``share``, the others scaled in proportion.

    >>> [round(p, 5) for p in scaled_shares((0.5, 0.3, 0.2), 2, 0.35)]
    [0.40625, 0.24375, 0.35]
    """
    rest = 1.0 - before[index]
    return tuple(share if i == index else p * (1.0 - share) / rest for i, p in enumerate(before))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class Shift:
    """A change of one family: ``mean`` (N(0, 1) -> N(after, 1)), ``spread``
    (N(0, 1) -> N(0, after^2)), ``share`` (categories a, b, c at CAT_BEFORE, the
    share of c -> after, the others in proportion) or ``rate`` (Bernoulli(0.1) ->
    Bernoulli(after))."""

    family: str
    after: float
    label: str = ""  # "half", "stated", "double"

    @property
    def kind(self) -> str:
        """The calibrated detector's kind for this family."""
        return {"mean": "numeric", "spread": "numeric", "share": "categorical"}.get(
            self.family, "binary"
        )

    def probs(self, changed: bool) -> np.ndarray:
        """Category probabilities (share: a, b, c; rate: 0, 1) before or after."""
        if self.family == "share":
            return np.array(scaled_shares(CAT_BEFORE, 2, self.after) if changed else CAT_BEFORE)
        p = self.after if changed else RATE_BEFORE
        return np.array([1.0 - p, p])

    def draw(
        self, rng: np.random.Generator, shape: int | tuple[int, ...], changed: bool
    ) -> np.ndarray:
        """Values before or after the change: floats; category codes 0..2 for ``share``."""
        if self.family == "mean":
            return rng.normal(self.after if changed else 0.0, 1.0, shape)
        if self.family == "spread":
            return rng.normal(0.0, self.after if changed else 1.0, shape)
        p = self.probs(changed)
        if self.family == "rate":
            return (rng.random(shape) < p[1]).astype(np.float64)
        return rng.choice(3, shape, p=p).astype(np.float64)

    def llr(self, x: np.ndarray) -> np.ndarray:
        """log f_after(x) / f_before(x), value by value."""
        if self.family == "mean":
            d = self.after
            return d * x - d * d / 2.0
        if self.family == "spread":
            r = self.after
            return -math.log(r) + (1.0 - r**-2) * x * x / 2.0
        table = np.log(self.probs(True) / self.probs(False))
        return table[x.astype(np.intp)]

    def mirror(self) -> Shift:
        """The same size the other way: mean -d, spread 1/r, share or rate with the
        log-odds shift of the watched category negated (the others in proportion)."""
        if self.family == "mean":
            return Shift("mean", -self.after, self.label)
        if self.family == "spread":
            return Shift("spread", 1.0 / self.after, self.label)
        p0 = CAT_BEFORE[2] if self.family == "share" else RATE_BEFORE
        return Shift(self.family, _expit(2 * _logit(p0) - _logit(self.after)), self.label)

    def describe(self) -> str:
        if self.family == "mean":
            return f"mean 0 -> {self.after:.3g} sd"
        if self.family == "spread":
            return f"sd x {self.after:.3g}"
        if self.family == "share":
            return f"share of c {CAT_BEFORE[2]:g} -> {self.after:.3g}"
        return f"rate {RATE_BEFORE:.0%} -> {self.after:.1%}"


def _sizes(family: str, stated: float, half: float, double: float) -> dict[str, Shift]:
    return {
        "half": Shift(family, half, "half"),
        "stated": Shift(family, stated, "stated"),
        "double": Shift(family, double, "double"),
    }


#: The issue's shifts and their halves and doubles, by family.
SHIFTS: dict[str, dict[str, Shift]] = {
    "mean": _sizes("mean", 0.5, 0.25, 1.0),
    "spread": _sizes("spread", 1.5, 1.5**0.5, 1.5**2),
    "share": _sizes("share", 0.2 * 1.75, 0.2 * 1.75**0.5, 0.2 * 1.75**2),
    "rate": _sizes("rate", 0.15, 0.125, 0.20),
}

# -- the benchmark's labelled streams --------------------------------------------------------

DRIFT_KINDS = ("sudden", "gradual", "variance", "categorical", "error")
CONTROL_KINDS = ("control-numeric", "control-categorical", "control-error")
KINDS = DRIFT_KINDS + CONTROL_KINDS
FAMILY = {
    "sudden": "numeric",
    "gradual": "numeric",
    "variance": "numeric",
    "control-numeric": "numeric",
    "categorical": "categorical",
    "control-categorical": "categorical",
    "error": "error",
    "control-error": "error",
}
#: The shift each kind makes (gradual: the mean shift, reached over RAMP events).
KIND_SHIFT = {
    "sudden": SHIFTS["mean"]["stated"],
    "gradual": SHIFTS["mean"]["stated"],
    "variance": SHIFTS["spread"]["stated"],
    "categorical": SHIFTS["share"]["stated"],
    "error": SHIFTS["rate"]["stated"],
    "control-numeric": SHIFTS["mean"]["stated"],
    "control-categorical": SHIFTS["share"]["stated"],
    "control-error": SHIFTS["rate"]["stated"],
}
#: The calibrated detector's kind for each benchmark family.
DETECTOR_KIND = {"numeric": "numeric", "categorical": "categorical", "error": "binary"}


@dataclass(frozen=True)
class Stream:
    kind: str
    seed: int
    values: np.ndarray  # floats; category codes 0..2 for the categorical family
    change: int | None  # index of the first changed event; None on a control

    @property
    def family(self) -> str:
        return FAMILY[self.kind]


def make_stream(kind: str, seed: int, n: int, n_control: int) -> Stream:
    """One labelled stream; the change point is drawn uniformly in [n/2, n/2 + 1000)."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    if kind in CONTROL_KINDS:
        n, change = n_control, None
    else:
        change = n // 2 + int(rng.integers(0, 1_000))
    cut = n if change is None else change
    shift = KIND_SHIFT[kind]
    if kind == "gradual":
        x = rng.normal(0.0, 1.0, n)
        x += shift.after * np.clip((np.arange(n) - cut + 1) / RAMP, 0.0, 1.0)
    else:
        x = np.concatenate([shift.draw(rng, cut, False), shift.draw(rng, n - cut, True)])
    return Stream(kind, seed, x, change)


def shift_stream(shift: Shift, seed: int, n_pre: int, n_post: int) -> tuple[np.ndarray, int]:
    """Values and change point: ``n_pre`` + U[0, 1000) events before, ``n_post`` after."""
    rng = np.random.default_rng([seed, list(SHIFTS).index(shift.family), 7])
    change = n_pre + int(rng.integers(0, 1_000))
    values = np.concatenate([shift.draw(rng, change, False), shift.draw(rng, n_post, True)])
    return values, change


def reference(kind: str, key: Sequence[int], n: int = 5_000) -> np.ndarray:
    """``n`` pre-change draws for a detector of ``kind``, from a generator of their own
    (keyed by ``key``, e.g. a stream's seed and kind), as the detector takes them."""
    rng = np.random.default_rng([*key, ("numeric", "categorical", "binary").index(kind), 11])
    shift = {"numeric": SHIFTS["mean"], "categorical": SHIFTS["share"], "binary": SHIFTS["rate"]}
    return detector_values(kind, shift[kind]["stated"].draw(rng, n, False))


def detector_values(kind: str, values: np.ndarray) -> np.ndarray:
    """The stream as the calibrated detector takes it: labels for categories."""
    return LABELS[values.astype(np.intp)] if kind == "categorical" else values


# -- delays ------------------------------------------------------------------------------------


def first_delay(alarms: Sequence[int] | np.ndarray, change: int) -> float:
    """Events from the change up to the first alarm at or after it, both counted
    (an alarm on the first changed event: 1); infinity if none."""
    after = [int(a) for a in alarms if a >= change]
    return float(after[0] - change + 1) if after else math.inf


def median_delay(delays: Sequence[float]) -> float:
    """The median with missed streams (infinite delays) counted as the latest."""
    return float(np.median(np.asarray(delays, dtype=np.float64))) if len(delays) else math.nan


def poisson_interval(k: int, exposure: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson rate: k events in ``exposure`` units.

    >>> lo, hi = poisson_interval(10, 100_000)
    >>> round(lo * 1e4, 3), round(hi * 1e4, 3)
    (0.48, 1.839)
    """
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(chi2.ppf(a, 2 * k)) / 2.0
    hi = float(chi2.ppf(1.0 - a, 2 * k + 2)) / 2.0
    return lo / exposure, hi / exposure


# -- the oracle CUSUM ----------------------------------------------------------------------------


def cusum_alarms(llr: np.ndarray, threshold: float, stop_after: int | None = None) -> list[int]:
    """Alarm indices of a bank of one-sided CUSUMs ``S = max(0, S + llr)`` (rows of
    ``llr``), alarming when any row exceeds ``threshold`` and restarting all from zero
    after each alarm; stops at the first alarm at or after ``stop_after``.

    >>> cusum_alarms(np.array([[1.0, 1.0, -5.0, 2.0, 2.0, 2.0]]), 3.5)
    [4]
    """
    llr = np.atleast_2d(llr)
    alarms: list[int] = []
    start, n = 0, llr.shape[1]
    while start < n:
        c = np.cumsum(llr[:, start:], axis=1)
        s = c - np.minimum(np.minimum.accumulate(c, axis=1), 0.0)
        hit = np.flatnonzero((s > threshold).any(axis=0))
        if not hit.size:
            break
        i = start + int(hit[0])
        alarms.append(i)
        if stop_after is not None and i >= stop_after:
            break
        start = i + 1
    return alarms


@dataclass(frozen=True)
class Oracle:
    """A likelihood-ratio CUSUM for one post-change distribution, with its threshold
    and the false-alarm rate measured for it on fresh null streams."""

    shift: Shift
    two_sided: bool
    threshold: float
    alarms: int  # on the verification null streams
    events: int  # null events of the verification

    @property
    def arms(self) -> tuple[Shift, ...]:
        return (self.shift, self.shift.mirror()) if self.two_sided else (self.shift,)

    @property
    def per_10k(self) -> float:
        return 1e4 * self.alarms / self.events

    @property
    def interval(self) -> tuple[float, float]:
        lo, hi = poisson_interval(self.alarms, self.events)
        return 1e4 * lo, 1e4 * hi

    def delay(self, values: np.ndarray, change: int) -> float:
        llr = np.stack([arm.llr(values) for arm in self.arms])
        return first_delay(cusum_alarms(llr, self.threshold, stop_after=change), change)


def null_alarm_counts(
    arms: Sequence[Shift], thresholds: np.ndarray, streams: int, steps: int, seed: int
) -> np.ndarray:
    """Alarms of the restarting CUSUM bank at each threshold, over ``streams`` parallel
    null streams of ``steps`` events drawn from the true pre-change distribution
    (every stream starts at zero, the state each restart returns to)."""
    rng = np.random.default_rng(seed)
    h = np.asarray(thresholds, dtype=np.float64)[:, None, None]
    s = np.zeros((h.shape[0], len(arms), streams))
    counts = np.zeros(h.shape[0], dtype=np.int64)
    block = 500
    for start in range(0, steps, block):
        x = arms[0].draw(rng, (min(block, steps - start), streams), False)
        inc = np.stack([arm.llr(x) for arm in arms])  # (arms, block, streams)
        for t in range(x.shape[0]):
            s += inc[:, t]
            np.maximum(s, 0.0, out=s)
            crossed = (s > h).any(axis=1)  # (thresholds, streams)
            if crossed.any():
                counts += crossed.sum(axis=1)
                s *= ~crossed[:, None, :]
    return counts


def calibrate_oracle(
    shift: Shift,
    two_sided: bool,
    per_10k: float = 1.0,
    seed: int = 0,
    search: tuple[int, int] = (400, 10_000),
    verify: tuple[int, int] = (4_000, 10_000),
) -> Oracle:
    """Set the threshold so that the restarting CUSUM makes ``per_10k`` false alarms per
    10,000 events of the true pre-change distribution, then measure that rate again.

    Search: thresholds 2.0, 2.5, ..., 14.0 on ``search`` = (streams, steps) null
    streams; log(alarm rate) is fitted as a line in the threshold (a CUSUM's run
    length has an exponential tail in it) over the grid points within 1.5 of where
    the measured rates cross the target, and the line is solved for the target.
    One secant step corrects the threshold from the rate measured on ``verify`` =
    (streams, steps) fresh null streams; then the verification, on null streams of
    their own at the final threshold: the count, the null events and the rate's
    Poisson interval are reported, not tuned.
    """
    arms = (shift, shift.mirror()) if two_sided else (shift,)
    grid = np.arange(2.0, 14.01, 0.5)
    counts = null_alarm_counts(arms, grid, search[0], search[1], seed)
    rates = 1e4 * counts / (search[0] * search[1])
    target = math.log(per_10k)
    seen = counts >= 5
    above = np.flatnonzero(seen & (rates >= per_10k))
    cross = grid[above[-1]] if above.size else grid[0]
    use = seen & (np.abs(grid - cross) <= 1.5)
    slope = 0.0
    if use.sum() >= 2:
        slope, intercept = np.polyfit(grid[use], np.log(rates[use]), 1, w=np.sqrt(counts[use]))
        h = float((target - intercept) / slope) if slope < 0 else float(cross)
    else:
        h = float(cross)
    # one secant step on fresh streams (the fitted slope, the rate measured at h), then
    # the reported verification on streams of their own
    first = int(null_alarm_counts(arms, np.array([h]), verify[0], verify[1], seed + 1)[0])
    if first > 0 and slope < 0:
        h += (target - math.log(1e4 * first / (verify[0] * verify[1]))) / slope
    alarms = int(null_alarm_counts(arms, np.array([h]), verify[0], verify[1], seed + 2)[0])
    return Oracle(shift, two_sided, h, alarms, verify[0] * verify[1])
