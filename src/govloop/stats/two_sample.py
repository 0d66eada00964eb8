"""An exact one-sided test that a rate dropped beyond a margin: valid at every size.

A regression gate on a rate (accuracy, an error rate) compares ``k_b`` of ``n_b``
baseline samples with ``k_c`` of ``n_c`` candidate samples.  For a metric where
higher is better the hypotheses are

    absolute margin m:   H0: p_c >= p_b - m          H1: p_c < p_b - m
    relative margin m:   H0: p_c >= (1 - m) p_b      H1: p_c < (1 - m) p_b

(a real ratio hypothesis: the margin is never converted with the observed
baseline); for a lower-is-better rate, ``p_c <= p_b + m`` and
``p_c <= (1 + m) p_b``.  Every case reduces to one shape, "rate B is at least
``g(rate A)``", with ``g(p) = p - m`` (difference) or ``g(p) = rho p`` (ratio).

The test is Barnard's exact unconditional test, ordered by the Agresti-Caffo
statistic (the contrast of the rates with one success and one failure added to
each sample, over its standard error; :func:`_statistic` says why not the score
statistic, which reports still show as ``z``): with ``T`` the statistic, the
p-value is

    p = sup over the null boundary of  P(T <= t_obs)

computed exactly from the two binomials.  The rejection region ``{T <= t}`` is
made monotone (a larger A count or a smaller B count is never judged less
extreme), so the probability of rejecting is largest on the boundary
``p_B = g(p_A)`` and the supremum over that curve is the supremum over all of
H0: the test's size is at most alpha for every n and every true rate.  The
nuisance rate is searched on a grid in ``arcsin(sqrt(p))`` and refined around
the best points; each evaluation costs one pass over the baseline's
non-negligible support (``binom.cdf`` at the per-count thresholds).

* :func:`exact_drop`        the test, as a :class:`~govloop.stats.significance.DropTest`
* :func:`rejection_region`  the region a level-alpha test rejects in, with its exact size
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import bdtr, gammaln
from scipy.stats import binom

from govloop.stats.significance import DropTest

__all__ = ["Region", "exact_drop", "rejection_region", "smallest_p_value"]

_EPS = 1e-16  # mass left out at each end of the baseline's support
_TIE = 1e-9  # statistics this close to the observed one count as equal to it
_GRID = 1.0  # nuisance grid points per sqrt(n), before refinement
_METHOD = "exact unconditional test"


@dataclass(frozen=True)
class _Design:
    """The reduced problem: rate B >= g(rate A), rejected for small B and large A."""

    n_a: int
    n_b: int
    ratio: bool  # g(p) = rho p, else g(p) = p - m
    param: float  # rho or m

    def g(self, p: np.ndarray | float) -> np.ndarray | float:
        return self.param * p if self.ratio else p - self.param  # type: ignore[operator]

    @property
    def p_a_low(self) -> float:
        return 0.0 if self.ratio else min(self.param, 1.0)


def _reduce(
    k_b: int, n_b: int, k_c: int, n_c: int, margin: float, relative: bool, higher: bool
) -> tuple[_Design, int, int]:
    """(design, count A, count B) for a baseline and candidate count of the metric's events."""
    if not relative:  # higher: successes; lower: complements (p_c <= p_b + m <=> 1-p_c >= ...)
        a, b = (k_b, k_c) if higher else (n_b - k_b, n_c - k_c)
        return _Design(n_b, n_c, False, margin), a, b
    if higher:  # p_c >= (1 - m) p_b
        return _Design(n_b, n_c, True, 1.0 - margin), k_b, k_c
    # lower: p_c <= (1 + m) p_b  <=>  p_b >= p_c / (1 + m): B is the baseline, A the candidate
    return _Design(n_c, n_b, True, 1.0 / (1.0 + margin)), k_c, k_b


def _statistic(d: _Design, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """The ordering statistic: ``(p_B - g(p_A)) / se`` on rates with one success and one
    failure added to each sample (Agresti-Caffo), so that sparse outcomes are not extreme.

    The score statistic (:func:`_score`) divides by a variance that vanishes when a
    rate nears 0 or 1: one error among 200 candidates against 10 among 20,000
    baseline samples scores as far out as 30 errors among 200, so near a rate of 1
    that outcome takes the test's whole level and the supremum over the nuisance
    makes every other p-value large (0.077 for 170/200 against 18,000/20,000).  Any
    statistic gives an exact test; this one spends the level where the data are.
    """
    xa, xb = np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64)
    pa, pb = (xa + 1) / (d.n_a + 2), (xb + 1) / (d.n_b + 2)
    slope = d.param if d.ratio else 1.0
    var = pb * (1 - pb) / (d.n_b + 2) + slope * slope * pa * (1 - pa) / (d.n_a + 2)
    return ((pb - d.g(pa)) / np.sqrt(var)).astype(np.float64)  # type: ignore[operator]


def _score(d: _Design, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """The score statistic ``(p_B - g(p_A)) / se`` with the variance at the constrained MLE
    (Farrington-Manning, Miettinen-Nurminen); the z and standard error a report shows."""
    xa, xb = np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64)
    pa, pb = xa / d.n_a, xb / d.n_b
    if d.ratio:  # Miettinen-Nurminen: maximise the likelihood on p_B = rho p_A
        rho = d.param
        qa = -(d.n_b * rho + xb + d.n_a + xa * rho)
        ra = (d.n_a + d.n_b) * rho
        disc = np.maximum(qa * qa - 4 * ra * (xa + xb), 0.0)
        ta = np.clip((-qa - np.sqrt(disc)) / (2 * ra), 0.0, 1.0)
        tb = rho * ta
        num = pb - rho * pa
        var = tb * (1 - tb) / d.n_b + rho * rho * ta * (1 - ta) / d.n_a
    else:  # Farrington-Manning: maximise on p_B - p_A = -m (the closed-form cubic root)
        delta, theta = -d.param, d.n_a / d.n_b
        a = 1 + theta
        b = -(1 + theta + pb + theta * pa + delta * (theta + 2))
        c = delta * delta + delta * (2 * pb + theta + 1) + pb + theta * pa
        dd = -pb * delta * (1 + delta)
        v = b**3 / (27 * a**3) - b * c / (6 * a * a) + dd / (2 * a)
        u = np.sign(v) * np.sqrt(np.maximum(b * b / (9 * a * a) - c / (3 * a), 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            cos_arg = np.where(u == 0, 0.0, v / u**3)
        w = (math.pi + np.arccos(np.clip(cos_arg, -1.0, 1.0))) / 3
        tb = np.clip(np.where(u == 0, -b / (3 * a), 2 * u * np.cos(w) - b / (3 * a)), 0.0, 1.0)
        ta = np.clip(tb - delta, 0.0, 1.0)
        num = pb - pa - delta
        var = ta * (1 - ta) / d.n_a + tb * (1 - tb) / d.n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / np.sqrt(var)
    flat = np.where(num > 0, np.inf, np.where(num < 0, -np.inf, 0.0))  # no noise at all
    return np.where(var > 0, t, flat).astype(np.float64)


def _raw_thresholds(
    d: _Design, t: float, lo: np.ndarray | None = None, hi: np.ndarray | None = None
) -> np.ndarray:
    """For each A count, the largest B count with ``T <= t`` (-1: none), by bisection.

    ``lo`` and ``hi`` are known answers for a smaller and a larger ``t``, which
    bracket this one's (the statistic increases with the B count).
    """
    xa = np.arange(d.n_a + 1)
    # invariant: T(xa, lo) <= t (-1 stands for -infinity), T(xa, hi) > t (n_b + 1: +infinity)
    lo = np.full(xa.shape, -1) if lo is None else lo.copy()
    hi = np.full(xa.shape, d.n_b + 1) if hi is None else hi + 1
    tol = t + _TIE * max(1.0, abs(t)) if math.isfinite(t) else t
    while True:
        open_ = np.flatnonzero(hi - lo > 1)
        if open_.size == 0:
            return lo
        mid = (lo[open_] + hi[open_]) // 2
        ok = _statistic(d, xa[open_], mid) <= tol
        lo[open_] = np.where(ok, mid, lo[open_])
        hi[open_] = np.where(ok, hi[open_], mid)


def _thresholds(d: _Design, t: float) -> np.ndarray:
    """The region ``{T <= t}`` as thresholds per A count, made monotone: a larger A
    count never rejects less (the smallest monotone region containing it)."""
    return np.maximum.accumulate(_raw_thresholds(d, t))


def _support(n: int, p: float) -> tuple[int, int]:
    """A range of counts outside which Bin(n, p) has less than 1e-17 mass on each side
    (Bernstein's inequality: P(|X - np| >= t) <= exp(-t^2 / (2 (np(1-p) + t/3))))."""
    t = 13 + math.sqrt(169 + 78 * n * p * (1 - p))
    return max(int(n * p - t), 0), min(math.ceil(n * p + t), n)


def _pmf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    if p <= 0 or p >= 1:
        return (k == (0 if p <= 0 else n)).astype(np.float64)
    log = (
        gammaln(n + 1)
        - gammaln(k + 1)
        - gammaln(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return np.exp(log)


def _reject_probability(d: _Design, c: np.ndarray, p_a: float) -> float:
    """P(reject) at ``p_A``, ``p_B = g(p_A)``: the sum over A's support of pmf x cdf."""
    p_b = float(np.clip(d.g(p_a), 0.0, 1.0))
    lo, hi = _support(d.n_a, p_a)
    xa = np.arange(lo, hi + 1)
    cut = c[lo : hi + 1]
    keep = cut >= 0
    if not keep.any():
        return 0.0
    xa, cut = xa[keep], cut[keep]
    return float(np.dot(_pmf(xa, d.n_a, p_a), bdtr(cut, d.n_b, p_b)))


@lru_cache(maxsize=16)
def _grid(d: _Design) -> tuple[np.ndarray, list[tuple[int, np.ndarray, int, np.ndarray]]]:
    """The nuisance grid of a design, with each point's A pmf and B cdf over their supports.

    Arcsine grids in ``p_A`` and in ``p_B = g(p_A)``, each fine where its rate nears 0
    or 1; the tables make one evaluation an index and a dot product.
    """
    points = int(min(max(_GRID * math.sqrt(max(d.n_a, d.n_b)), 40), 100 * _GRID))
    grid_a = np.sin(np.linspace(math.asin(math.sqrt(d.p_a_low)), math.pi / 2, points)) ** 2
    top_b = float(d.g(1.0))
    grid_b = np.sin(np.linspace(0.0, math.asin(math.sqrt(top_b)), points)) ** 2
    back = grid_b / d.param if d.ratio else grid_b + d.param
    pts = np.unique(np.clip(np.concatenate([grid_a, back]), d.p_a_low, 1.0))
    tables = []
    for p_a in pts:
        p_b = float(np.clip(d.g(float(p_a)), 0.0, 1.0))
        lo_a, hi_a = _support(d.n_a, float(p_a))
        lo_b, hi_b = _support(d.n_b, p_b)
        pmf = _pmf(np.arange(lo_a, hi_a + 1), d.n_a, float(p_a))
        tables.append((lo_a, pmf, lo_b, bdtr(np.arange(lo_b, hi_b + 1), d.n_b, p_b)))
    return np.arcsin(np.sqrt(pts)), tables


def _tabled(c: np.ndarray, table: tuple[int, np.ndarray, int, np.ndarray]) -> float:
    lo_a, pmf, lo_b, cdf = table
    idx = c[lo_a : lo_a + pmf.size] - lo_b  # below B's support: cdf 0; above: 1
    tail = np.where(idx >= cdf.size, 1.0, cdf[np.clip(idx, 0, cdf.size - 1)])
    return float(np.dot(pmf, np.where(idx < 0, 0.0, tail)))


def _sup(d: _Design, c: np.ndarray) -> float:
    """sup over the null boundary of P(reject): the grid, then refinement at the best peaks."""
    if c[-1] < 0:
        return 0.0
    phi, tables = _grid(d)
    vals = np.array([_tabled(c, t) for t in tables])
    best = float(vals.max())
    last = phi.size - 1
    peaks = [
        i
        for i in range(phi.size)
        if vals[i] >= vals[max(i - 1, 0)] and vals[i] >= vals[min(i + 1, last)]
    ]
    for i in sorted(peaks, key=lambda j: -vals[j])[:3]:
        a, b = phi[max(i - 1, 0)], phi[min(i + 1, last)]
        res = minimize_scalar(
            lambda f: -_reject_probability(d, c, math.sin(f) ** 2),
            bounds=(a, b),
            method="bounded",
            options={"xatol": (b - a) * 1e-3},
        )
        best = max(best, -float(res.fun))
    return min(best, 1.0)


def _check(k_b: int, n_b: int, k_c: int, n_c: int, margin: float, relative: bool) -> None:
    if n_b <= 0 or n_c <= 0:
        raise ValueError("both samples need n > 0")
    if not (0 <= k_b <= n_b and 0 <= k_c <= n_c):
        raise ValueError("counts must lie between 0 and n")
    if margin < 0 or not math.isfinite(margin):
        raise ValueError("the margin must be a finite number >= 0")


def exact_drop(
    baseline_count: int,
    baseline_n: int,
    current_count: int,
    current_n: int,
    margin: float = 0.0,
    relative: bool = False,
    higher_is_better: bool = True,
) -> DropTest:
    """The exact test of a drop beyond ``margin``, from the counts of the metric's events.

    ``*_count`` is what the rate counts (correct answers for accuracy, errors for an
    error rate).  ``z`` is minus the score statistic (positive: worse), ``stderr``
    its standard error at the constrained estimate, in the reduced problem's units.

    900/1000 correct before, 860/1000 now (the z-test says p = 0.003):

    >>> t = exact_drop(900, 1000, 860, 1000)
    >>> round(t.z, 3), round(t.p_value, 4), t.significant(0.05)
    (2.752, 0.0031, True)
    >>> exact_drop(900, 1000, 860, 1000, margin=0.05).significant(0.05)
    False
    >>> exact_drop(50, 50, 47, 50, margin=0.01).p_value > 0.05   # a perfect 50-sample baseline
    True
    >>> exact_drop(10, 1000, 40, 1000, higher_is_better=False).significant(0.01)
    True
    """
    _check(baseline_count, baseline_n, current_count, current_n, margin, relative)
    d, xa, xb = _reduce(
        baseline_count, baseline_n, current_count, current_n, margin, relative, higher_is_better
    )
    t = float(_statistic(d, np.array([xa]), np.array([xb]))[0])
    p = _sup(d, _thresholds(d, t)) if t < math.inf else 1.0
    t = float(_score(d, np.array([xa]), np.array([xb]))[0])  # what the report shows
    pa, pb = xa / d.n_a, xb / d.n_b
    num = pb - float(d.g(pa))
    se = abs(num / t) if t not in (0.0, math.inf, -math.inf) and math.isfinite(t) else 0.0
    base, cur = baseline_count / baseline_n, current_count / current_n
    return DropTest(
        baseline=base,
        current=cur,
        drop=base - cur if higher_is_better else cur - base,
        margin=margin,
        stderr=se,
        z=-t,
        p_value=p,
        method=_METHOD + (" (ratio)" if relative else " (difference)"),
    )


@lru_cache(maxsize=256)
def smallest_p_value(
    baseline_n: int,
    current_n: int,
    margin: float = 0.0,
    relative: bool = False,
    higher_is_better: bool = True,
) -> float:
    """The p-value of the most extreme outcome these sizes allow (a perfect baseline, a
    candidate wrong on every sample): when it is not below alpha, no outcome can fail.

    >>> smallest_p_value(5, 5) > 0.0005 > smallest_p_value(50, 50)
    True
    """
    worst_b = baseline_n if higher_is_better else 0
    worst_c = 0 if higher_is_better else current_n
    return exact_drop(
        worst_b, baseline_n, worst_c, current_n, margin, relative, higher_is_better
    ).p_value


@dataclass(frozen=True)
class Region:
    """Where a level-``alpha`` test rejects, for given sizes and hypothesis.

    ``limit[k_b]`` is the largest candidate count (of the metric's events) that fails
    against a baseline count ``k_b`` when higher is better, the smallest when lower
    is better (``-1`` / ``n_c + 1``: none).
    """

    baseline_n: int
    current_n: int
    alpha: float
    limit: np.ndarray
    higher_is_better: bool

    def rejects(
        self, baseline_count: np.ndarray | int, current_count: np.ndarray | int
    ) -> np.ndarray:
        lim = self.limit[np.asarray(baseline_count)]
        cur = np.asarray(current_count)
        return cur <= lim if self.higher_is_better else cur >= lim

    def size(self, p_baseline: float, p_current: float) -> float:
        """The exact probability of rejecting when the true rates are these."""
        kb = np.arange(self.baseline_n + 1)
        w = binom.pmf(kb, self.baseline_n, p_baseline)
        if self.higher_is_better:
            tail = binom.cdf(self.limit, self.current_n, p_current)
        else:
            tail = binom.sf(self.limit - 1, self.current_n, p_current)
        return float(np.dot(w, tail))


def rejection_region(
    baseline_n: int,
    current_n: int,
    alpha: float,
    margin: float = 0.0,
    relative: bool = False,
    higher_is_better: bool = True,
) -> Region:
    """The outcomes :func:`exact_drop` finds significant at ``alpha`` (``p < alpha``).

    The p-value is non-decreasing in the ordering statistic, so the region is
    ``{T <= t*}``; ``t*`` is found by bisection.  Its exact size at any true
    rates is :meth:`Region.size`, with no simulation:

    >>> r = rejection_region(50, 50, 0.05)
    >>> r.size(0.8, 0.8) <= 0.05, bool(r.rejects(45, 30)), bool(r.rejects(45, 44))
    (True, True, False)
    """
    _check(0, baseline_n, 0, current_n, margin, relative)
    d, _, _ = _reduce(0, baseline_n, 0, current_n, margin, relative, higher_is_better)
    lo = float(_statistic(d, np.array([d.n_a]), np.array([0]))[0])
    r_lo = _raw_thresholds(d, lo)
    if not math.isfinite(lo) or _sup(d, np.maximum.accumulate(r_lo)) >= alpha:
        r_lo = np.full(d.n_a + 1, -1)
    else:
        hi = max(lo + 1.0, 10.0)
        r_hi = _raw_thresholds(d, hi, lo=r_lo)
        while hi - lo > _TIE * max(1.0, abs(lo)):
            mid = (lo + hi) / 2
            r_mid = _raw_thresholds(d, mid, r_lo, r_hi)
            if np.array_equal(r_mid, r_lo):
                lo = mid
            elif np.array_equal(r_mid, r_hi):
                hi = mid
            elif _sup(d, np.maximum.accumulate(r_mid)) < alpha:
                lo, r_lo = mid, r_mid
            else:
                hi, r_hi = mid, r_mid
    c = np.maximum.accumulate(r_lo)
    return Region(
        baseline_n,
        current_n,
        alpha,
        _limits(c, d, baseline_n, current_n, relative, higher_is_better),
        higher_is_better,
    )


def _limits(
    c: np.ndarray, d: _Design, n_b: int, n_c: int, relative: bool, higher: bool
) -> np.ndarray:
    """The reduced thresholds as limits on the candidate count, per baseline count."""
    if higher:  # A is the baseline's count, B the candidate's
        return c
    if not relative:  # A = n_b - k_b, B = n_c - k_c: reject when k_c >= n_c - c[n_b - k_b]
        return n_c - c[::-1]
    # A = k_c, B = k_b: reject when k_b <= c[k_c], c non-decreasing in k_c
    return np.searchsorted(c, np.arange(n_b + 1), side="left")
