"""Simulated no-change streams, and the thresholds of a CUSUM bank set on them.

The calibration of :mod:`govloop.stats.calibrated` in two parts: null streams that
keep, per arm, the cumulative sum of its increments (so any arm's CUSUM can be
replayed from any restart point), and the search for the thresholds.

The streams are *plausible truths* given the reference: each stream draws from
its own bootstrap resample of the reference (numeric values) or from its own
Dirichlet draw of category shares (counts + 1/2), while the detector keeps the
standardisation and shares of the reference itself.  The gap between a stream's
truth and the detector's reference is thus the reference's sampling error, and the
rate set here is the rate averaged over that error.

The thresholds are ``w_j + c``: ``w_j`` gives every arm alone the same false-alarm
rate (one over its mean first passage from zero), and the one shift ``c`` is the
smallest for which the upper 90 % Poisson bound of the false-alarm rate of the
restarting detector (alarms after a burn-in, every restart replayed exactly) is at
most the target.  Equal rates, not equal tail quantiles: an arm for a small shift
wanders long below its threshold, so at one tail quantile it alarms far less than
an arm for a large shift and was paying for the others' alarms in delay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2

__all__ = ["NullStreams", "categorical_null", "numeric_null", "thresholds"]

FloatArray = NDArray[np.float64]
Rows = NDArray[np.intp]

STREAMS, STEPS, BURN_IN = 256, 4096, 1024
MIN_ALARMS = 40  # fewest alarms a rate is read from directly; rarer rates are extrapolated
OFFSET_RATE = 1 / 256  # the per-arm rate the thresholds are equalised at, before the shift


class NullStreams:
    """Per-arm cumulative increment sums on ``STREAMS`` simulated streams of ``STEPS``."""

    def __init__(
        self,
        arms: int,
        per_step: FloatArray,
        slopes: FloatArray,
        series: list[FloatArray],
        which: Sequence[int],
    ) -> None:
        # arm j's cumulative sum: per_step[j] * t + slopes[j] * series[which[j]]
        self.arms = arms
        self._per_step, self._slopes = per_step, slopes
        self._series, self._which = series, list(which)
        self._t = np.arange(1, STEPS + 1, dtype=np.float64)

    def cumulative(self, j: int, rows: Rows | None = None) -> FloatArray:
        series = self._series[self._which[j]]
        base = series if rows is None else series[rows]
        out = np.multiply(self._slopes[j], base)
        out += self._per_step[j] * self._t
        return out


def numeric_null(
    x: FloatArray, center: float, scale: float, coef: FloatArray, rng: np.random.Generator
) -> NullStreams:
    """Streams from bootstrap resamples of ``x``; arm increments ``a + b z + c z^2``."""
    n = x.size
    # a stream's truth is a bootstrap resample of size n (slots); its values draw slots
    # uniformly, and a slot holds one reference value, drawn the first time it is hit
    slots = rng.integers(0, n, (STREAMS, STEPS))
    picks = np.empty_like(slots)
    for i in range(STREAMS):
        hit, where = np.unique(slots[i], return_inverse=True)
        picks[i] = rng.integers(0, n, hit.size)[where]
    z = (x[picks] - center) / scale
    series = [np.cumsum(z, axis=1), np.cumsum(z * z, axis=1)]
    a, b, c = coef
    which = [0 if bj else 1 for bj in b]
    return NullStreams(coef.shape[1], a, np.where(b != 0, b, c), series, which)


def categorical_null(
    counts: FloatArray, lut: FloatArray, codes_of_arms: Sequence[int], rng: np.random.Generator
) -> NullStreams:
    """Streams from Dirichlet(counts + 1/2) shares; ``lut[code, arm]`` is the increment."""
    shares = rng.dirichlet(counts + 0.5, STREAMS)
    cum = np.cumsum(shares, axis=1)
    u = rng.random((STREAMS, STEPS))
    codes = np.stack([np.searchsorted(cum[i], u[i], side="right") for i in range(STREAMS)])
    np.minimum(codes, counts.size - 1, out=codes)
    kept = sorted(set(codes_of_arms))
    series = [np.cumsum(codes == k, axis=1, dtype=np.float64) for k in kept]
    position = {k: i for i, k in enumerate(kept)}
    per_step = np.array(
        [lut[1 - min(k, 1), j] for j, k in enumerate(codes_of_arms)]
    )  # a code other than k
    hit = np.array([lut[k, j] for j, k in enumerate(codes_of_arms)])
    return NullStreams(
        len(codes_of_arms), per_step, hit - per_step, series, [position[k] for k in codes_of_arms]
    )


def _cusum(cumulative: FloatArray) -> FloatArray:
    """Row-wise ``S_t = max(0, S_{t-1} + inc_t)`` from zero, given the cumulative sums."""
    low = np.minimum.accumulate(cumulative, axis=1)
    np.minimum(low, 0.0, out=low)
    return np.subtract(cumulative, low, out=low)


def thresholds(null: NullStreams, rate: float) -> FloatArray:
    """Per-arm thresholds for a per-event false-alarm ``rate``."""
    offsets = np.empty(null.arms)
    worst: FloatArray | None = None
    for j in range(null.arms):
        s = _cusum(null.cumulative(j))
        offsets[j] = _equal_rate_offset(np.maximum.accumulate(s, axis=1))
        s -= offsets[j]
        worst = s if worst is None else np.maximum(worst, s, out=worst)
    assert worst is not None
    search = _Search(null, offsets, np.maximum.accumulate(worst, axis=1))
    return offsets + search.shift(rate)


def _equal_rate_offset(run_max: FloatArray) -> float:
    """The threshold at which this arm alone alarms at ``OFFSET_RATE`` per event.

    A restart puts the statistic back at zero, so the arm's alarm rate is one over its
    mean first-passage time from zero: estimated as passages over time at risk (each
    stream runs to its first passage or to its end).  Arms set at one rate and shifted
    together keep equal rates, since a CUSUM's log run length grows by one per unit
    of threshold whatever the arm (Lorden 1971), so each pays the same for the bank.
    """

    # each row is nondecreasing: one search over the rows laid end to end, row i lifted
    # by i * span, finds every row's first passage at once
    span = float(run_max[:, -1].max()) + 1.0
    lifted = (run_max + span * np.arange(run_max.shape[0])[:, None]).ravel()
    starts = np.arange(run_max.shape[0]) * STEPS

    def rate(h: float) -> float:
        at = np.searchsorted(lifted, h + span * np.arange(run_max.shape[0]), side="right")
        alive = at - starts  # first passage index, or STEPS
        return float(np.count_nonzero(alive < STEPS)) / max(float(alive.sum()), 1.0)

    return _bisect(lambda h: rate(h) <= OFFSET_RATE, 0.0, 4.0)


class _Search:
    def __init__(self, null: NullStreams, offsets: FloatArray, run_max: FloatArray) -> None:
        self.null, self.offsets, self.run_max = null, offsets, run_max
        self.exposure = STREAMS * (STEPS - BURN_IN)
        self.floor = -float(offsets.min())

    def shift(self, rate: float) -> float:
        if rate * self.exposure >= MIN_ALARMS:
            return self._solve(rate)
        # too rare to see: log(rate) is linear in the threshold in a CUSUM's tail
        r_hi, r_lo = 4 * MIN_ALARMS / self.exposure, MIN_ALARMS / self.exposure
        c_hi, c_lo = self._solve(r_hi), self._solve(r_lo)
        slope = math.log(r_hi / r_lo) / max(c_lo - c_hi, 1e-6)
        return c_lo + math.log(r_lo / rate) / slope

    def _solve(self, rate: float) -> float:
        """The smallest shift (to 1e-3) whose exact restart rate bound is at most ``rate``,
        searched first on the cheap first-passage hazard, then on the exact rate."""
        c0 = _bisect(lambda c: self._hazard_ucb(c) <= rate, self.floor, self.floor + 20.0)
        if self._exact_ucb(c0) <= rate:
            return c0
        return _bisect(lambda c: self._exact_ucb(c) <= rate, c0, c0 + 1.0, steps=10)

    def _hazard_ucb(self, c: float) -> float:
        """Bound on the first-passage hazard after burn-in (no restarts)."""
        rm = self.run_max
        alive = rm[:, BURN_IN - 1] <= c
        fired = int(np.count_nonzero(alive & (rm[:, -1] > c)))
        exposure = float(np.count_nonzero(rm[alive, BURN_IN - 1 :] <= c))
        return _ucb(fired) / max(exposure, 1.0)

    def _exact_ucb(self, c: float) -> float:
        """Bound on the rate after burn-in of the detector restarting after every alarm."""
        first = np.count_nonzero(self.run_max <= c, axis=1)  # index of the first alarm, or STEPS
        alarms = int(np.count_nonzero((first >= BURN_IN) & (first < STEPS)))
        rows = np.flatnonzero(first < STEPS - 1)
        start = first[rows] + 1
        t = np.arange(STEPS)
        while rows.size:
            worst = np.full((rows.size, STEPS), -np.inf)
            before = t[None, :] < start[:, None] - 1
            for j in range(self.null.arms):
                cum = self.null.cumulative(j, rows)
                floor = np.where(before, np.inf, cum)
                s = cum - np.minimum.accumulate(floor, axis=1)
                np.maximum(worst, s - self.offsets[j], out=worst)
            worst[t[None, :] < start[:, None]] = -np.inf
            over = worst > c
            hit = over.any(axis=1)
            at = np.argmax(over, axis=1)
            alarms += int(np.count_nonzero(hit & (at >= BURN_IN)))
            again = hit & (at < STEPS - 1)
            rows, start = rows[again], at[again] + 1
        return _ucb(alarms) / self.exposure


def _ucb(k: int) -> float:
    """Upper 90 % bound of a Poisson mean with ``k`` seen."""
    return float(chi2.ppf(0.9, 2 * (k + 1)) / 2)


def _bisect(ok, lo: float, hi: float, steps: int = 60) -> float:  # type: ignore[no-untyped-def]
    """The smallest x in (lo, hi'] with ``ok(x)``, hi' grown until ok; to 1e-3."""
    while not ok(hi):
        lo, hi = hi, hi + 2 * (hi - lo) + 1.0
    for _ in range(steps):
        if hi - lo < 1e-3:
            break
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
