"""Anytime-valid tests of a drop in a proportion: valid however often, and whenever, one looks.

A fixed-sample test applied to every window of a stream fails an unchanged
model almost surely in the long run.  Here the candidate's accumulating counts
are judged with a *test martingale*: a statistic ``M`` whose expectation never
exceeds 1 while the null holds, so by Ville's inequality
``P(M ever >= 1/alpha) <= alpha``, over any number of looks at any times.

The null is ``H0: p >= q`` (the candidate's rate is at least the allowed
level ``q``); ``M`` is the beta-binomial mixture of likelihood ratios of the
alternatives ``theta < q``::

    M(S, n; q) = sum_j w_j  int_{theta < q} (theta / q)^S ((1 - theta) / (1 - q))^(n - S)
                                           dBeta(theta; q n0_j, (1 - q) n0_j) / P_j(theta < q)

Each ratio has expectation at most 1 under every ``p >= q`` (one step:
``p theta / q + (1 - p)(1 - theta)/(1 - q) <= 1`` for ``theta < q <= p``), so
the mixture is a supermartingale, and exactly a martingale at ``p = q``.  The
integral has a closed form in the regularised incomplete beta function.

The mixing prior is a mixture over scales: Beta priors centred on ``q`` worth
``n0`` labels for ``n0`` in ``4, 16, ..., 16384`` (:data:`PRIOR_SIZES`), with
equal weights.  A Beta prior worth ``n0`` labels is near its best when the
evidence arrives after some 3 to 30 times ``n0`` labels, and the loss is flat
over that range, so the grid covers drops detected after a dozen to half a
million labels without knowing the drop's size; its cost is ``log 7`` nats of
evidence against one prior matched to the (unknown) drop.

The allowed level comes from a fixed-sample baseline: :func:`lower_bound`
(exact one-sided Clopper-Pearson from counts, a normal bound from a standard
error) at level ``alpha_b``; :func:`sequential_drop` puts it together with
the margin and the direction, and spends ``alpha_b + alpha_c = alpha``, so
``P(ever failing an unchanged model) <= alpha``.

:func:`anytime_p_value` is the smallest ``alpha`` at which :func:`sequential_drop`
rejects: since the test at level ``x`` rejects an unchanged metric at some look with
probability at most ``x``, ``P(p_t <= x at some look t) <= x``, so p-values of several
metrics can be adjusted (Holm, Bonferroni) at every look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, betaincinv, betaln, ndtri

__all__ = [
    "PRIOR_SIZES",
    "SequentialDrop",
    "allowed_level",
    "anytime_p_value",
    "exceeds",
    "log_evalue",
    "lower_bound",
    "sequential_drop",
    "upper_bound",
]

#: Sizes (in labels) of the Beta priors the mixture is taken over, equal weights.
PRIOR_SIZES: tuple[int, ...] = tuple(4**k for k in range(1, 8))


def log_evalue(
    successes: ArrayLike,
    n: ArrayLike,
    q: ArrayLike,
    prior_sizes: tuple[float, ...] = PRIOR_SIZES,
) -> NDArray[np.float64]:
    """``log M``: the evidence against ``H0: p >= q`` in ``successes`` out of ``n`` (vectorised).

    ``q <= 0``: no rate is below it, ``M = 1`` (log 0).  ``q >= 1``: ``H0`` is
    ``p = 1``, refuted by any failure (``M = inf``), else ``M = 1``.

    One label, one failure, a uniform prior on ``(0, 0.5)`` (``q = 0.5``,
    ``n0 = 2``): ``M = int_0^0.5 (1 - theta) / 0.5 dtheta / 0.5 = 1.5``.

    >>> float(np.exp(log_evalue(0, 1, 0.5, prior_sizes=(2,))))
    1.5
    >>> [round(float(np.exp(x)), 3) for x in log_evalue([90, 80, 70], 100, 0.9)]
    [0.725, 13.311, 221163.91]
    """
    s, m, level = np.broadcast_arrays(
        np.asarray(successes, dtype=float), np.asarray(n, dtype=float), np.asarray(q, dtype=float)
    )
    f = m - s
    inside = (level > 0) & (level < 1)
    qq = np.where(inside, level, 0.5)
    n0 = np.asarray(prior_sizes, dtype=float).reshape((-1,) + (1,) * qq.ndim)
    a, b = qq * n0, (1 - qq) * n0  # one row per prior size
    with np.errstate(divide="ignore"):
        parts = (
            betaln(a + s, b + f)
            - betaln(a, b)
            - s * np.log(qq)
            - f * np.log1p(-qq)
            + np.log(betainc(a + s, b + f, qq))
            - np.log(betainc(a, b, qq))
        )
    mixed = np.logaddexp.reduce(parts, axis=0) - math.log(len(prior_sizes))
    edge = np.where((level >= 1) & (f > 0), np.inf, 0.0)
    return np.asarray(np.where(inside, mixed, edge), dtype=float)


def exceeds(
    successes: ArrayLike,
    n: ArrayLike,
    q: ArrayLike,
    threshold: float,
    prior_sizes: tuple[float, ...] = PRIOR_SIZES,
) -> NDArray[np.bool_]:
    """``M >= threshold``, elementwise: :func:`log_evalue` where it can reach the threshold.

    A mixture of likelihood ratios is at most the largest of them, ``exp(n KL(S/n || q))``
    when ``S/n < q`` and 1 otherwise; where that bound is below the threshold the
    answer is no without computing ``M``.  The same decisions, much faster on the
    long null paths of a simulation.

    >>> exceeds([90, 80, 70], 100, 0.9, 20.0).tolist()
    [False, False, True]
    """
    s, m, level = np.broadcast_arrays(
        np.asarray(successes, dtype=float), np.asarray(n, dtype=float), np.asarray(q, dtype=float)
    )
    log_t = math.log(threshold)
    if threshold <= 1:  # M_0 = 1: nothing to prune
        return np.asarray(log_evalue(s, m, level, prior_sizes) >= log_t)
    out = np.zeros(s.shape, dtype=bool)
    inside = (level > 0) & (level < 1)
    out[~inside] = log_evalue(s[~inside], m[~inside], level[~inside], prior_sizes) >= log_t
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(m > 0, s / np.where(m > 0, m, 1), 1.0)
        kl = np.where(p > 0, p * np.log(p / level), 0.0) + np.where(
            p < 1, (1 - p) * np.log((1 - p) / (1 - level)), 0.0
        )
    maybe = inside & (p < level) & (m * kl >= log_t - 1e-9)
    out[maybe] = log_evalue(s[maybe], m[maybe], level[maybe], prior_sizes) >= log_t
    return out


def lower_bound(
    alpha: float,
    *,
    successes: int | None = None,
    n: int | None = None,
    value: float | None = None,
    stderr: float | None = None,
) -> float:
    """A one-sided ``1 - alpha`` lower confidence bound on a fixed sample's rate or value.

    From counts the exact Clopper-Pearson bound; from a value and its
    standard error the normal bound ``value - z_(1-alpha) stderr``.

    >>> round(lower_bound(0.025, successes=900, n=1000), 4)
    0.8797
    >>> round(lower_bound(0.025, value=0.9, stderr=0.01), 4)
    0.8804
    """
    if successes is not None and n is not None and n > 0:
        return 0.0 if successes <= 0 else float(betaincinv(successes, n - successes + 1, alpha))
    if value is not None and stderr is not None:
        return float(value + ndtri(alpha) * stderr)
    raise ValueError("a lower bound needs counts (successes, n > 0) or a value and its stderr")


def upper_bound(
    alpha: float,
    *,
    successes: int | None = None,
    n: int | None = None,
    value: float | None = None,
    stderr: float | None = None,
) -> float:
    """The one-sided ``1 - alpha`` upper bound: :func:`lower_bound` of the mirrored sample.

    >>> round(upper_bound(0.025, successes=100, n=1000), 4)
    0.1203
    """
    if successes is not None and n is not None and n > 0:
        return 1 - lower_bound(alpha, successes=n - successes, n=n)
    if value is not None and stderr is not None:
        return float(value - ndtri(alpha) * stderr)
    raise ValueError("an upper bound needs counts (successes, n > 0) or a value and its stderr")


def allowed_level(
    bound: float,
    margin: float,
    margin_type: Literal["absolute", "relative"],
    higher_is_better: bool,
) -> float:
    """The worst rate the candidate may have, from the baseline's bound (its lower bound
    when higher is better, its upper bound otherwise) and the margin.

    >>> allowed_level(0.88, 0.01, "absolute", True), allowed_level(0.1, 0.5, "relative", False)
    (0.87, 0.15000000000000002)
    """
    if margin_type == "relative":
        return bound * (1 - margin) if higher_is_better else bound * (1 + margin)
    return bound - margin if higher_is_better else bound + margin


@dataclass(frozen=True)
class SequentialDrop:
    """One look of the sequential drop test.

    ``baseline_bound`` is the baseline's confidence bound at ``alpha_b``,
    ``level`` the allowed rate (in the metric's own direction), ``evalue`` the
    martingale ``M`` on the accumulated counts and ``threshold`` ``1/alpha_c``.
    """

    baseline_bound: float
    level: float
    evalue: float
    threshold: float
    alpha_baseline: float
    alpha_candidate: float

    @property
    def rejected(self) -> bool:
        """Whether the drop beyond the margin is shown (``M >= 1/alpha_c``)."""
        return self.evalue >= self.threshold


def sequential_drop(
    cur_successes: int,
    cur_n: int,
    *,
    alpha: float,
    margin: float = 0.0,
    margin_type: Literal["absolute", "relative"] = "absolute",
    higher_is_better: bool = True,
    base_successes: int | None = None,
    base_n: int | None = None,
    base_value: float | None = None,
    base_stderr: float | None = None,
    baseline_share: float = 0.5,
    prior_sizes: tuple[float, ...] = PRIOR_SIZES,
) -> SequentialDrop:
    """Has the candidate's rate dropped beyond ``margin`` below a fixed baseline?

    ``alpha`` is split: ``alpha_b = baseline_share * alpha`` for the baseline's
    bound, the rest for the candidate's martingale.  A lower-is-better rate
    (an error rate) is mirrored: its failures are the successes of ``1 - p``.
    Valid at every look: for a candidate whose rate is no worse than the
    baseline's allowed level, ``P(ever rejected) <= alpha``.

    >>> t = sequential_drop(680, 800, alpha=0.05, base_successes=18000, base_n=20000)
    >>> round(t.baseline_bound, 4), t.threshold, round(t.evalue), t.rejected
    (0.8958, 40.0, 371, True)
    >>> sequential_drop(720, 800, alpha=0.05, base_successes=18000, base_n=20000).rejected
    False
    >>> e = sequential_drop(80, 800, alpha=0.05, higher_is_better=False,
    ...                     base_successes=2000, base_n=20000)   # error rate 0.10 -> 0.10
    >>> e.evalue < 1, round(e.level, 4)
    (True, 0.1042)
    """
    if not 0 < baseline_share < 1:
        raise ValueError("baseline_share must be in (0, 1)")
    alpha_b = alpha * baseline_share
    alpha_c = alpha - alpha_b
    side = lower_bound if higher_is_better else upper_bound
    bound = side(alpha_b, successes=base_successes, n=base_n, value=base_value, stderr=base_stderr)
    level = allowed_level(bound, margin, margin_type, higher_is_better)
    if higher_is_better:
        log_m = log_evalue(cur_successes, cur_n, level, prior_sizes)
    else:  # mirror: a rise of the rate is a drop of 1 - rate
        log_m = log_evalue(cur_n - cur_successes, cur_n, 1 - level, prior_sizes)
    return SequentialDrop(
        baseline_bound=bound,
        level=level,
        evalue=float(np.exp(log_m)),
        threshold=1 / alpha_c,
        alpha_baseline=alpha_b,
        alpha_candidate=alpha_c,
    )


def anytime_p_value(
    cur_successes: int,
    cur_n: int,
    *,
    margin: float = 0.0,
    margin_type: Literal["absolute", "relative"] = "absolute",
    higher_is_better: bool = True,
    base_successes: int | None = None,
    base_n: int | None = None,
    base_value: float | None = None,
    base_stderr: float | None = None,
    baseline_share: float = 0.5,
    prior_sizes: tuple[float, ...] = PRIOR_SIZES,
    rtol: float = 1e-3,
    floor: float = 1e-12,
) -> float:
    """The anytime-valid p-value of :func:`sequential_drop`: the smallest ``alpha`` at
    which it rejects, in ``[floor, 1]``.

    For an unchanged metric ``P(p_t <= x at any look t) <= x``: ``p_t <= x`` means the
    test at level ``x`` rejects at look ``t`` (below), and that test rejects at any
    look with probability at most ``x``.

    *Rejection is monotone in alpha*, so "the smallest alpha" is a threshold: a larger
    ``alpha`` gives a larger baseline ``alpha_b`` (a lower bound rises, an upper bound
    falls, so the allowed level ``q`` of the drop test rises, mirrored or not) and a
    smaller threshold ``1/alpha_c``; and ``M`` does not fall as ``q`` rises where it
    can reach a threshold: ``M <= 1`` unless ``S/n < q``, and there each likelihood
    ratio ``(theta/q)^S ((1-theta)/(1-q))^(n-S)`` grows with ``q``.  The prior moves
    with ``q`` too, so that is an argument, not a proof: the tests check ``M`` is
    non-decreasing in ``q`` on a grid of ``n``, ``S`` and ``q``.

    Found by bisection on ``log alpha``: 1 when the test does not reject at
    ``alpha = 1``; else between ``1/((1 - baseline_share) M_1)`` (``M_1`` the e-value
    at ``alpha = 1``: no smaller alpha can reach its threshold) and 1, down to a
    relative width ``rtol``.  The upper end is returned, an ``alpha`` at which the
    test rejects, so the p-value is at most ``1 + rtol`` times the exact one and never
    below it; one below ``floor`` is reported as ``floor``.

    >>> p = anytime_p_value(680, 800, base_successes=18000, base_n=20000)
    >>> p < 0.05, sequential_drop(680, 800, alpha=p, base_successes=18000, base_n=20000).rejected
    (True, True)
    >>> sequential_drop(680, 800, alpha=p / 1.001, base_successes=18000, base_n=20000).rejected
    False
    >>> anytime_p_value(720, 800, base_successes=18000, base_n=20000)  # no drop
    1.0
    >>> round(p, 4), round(anytime_p_value(700, 800, base_successes=18000, base_n=20000), 3)
    (0.0089, 0.617)
    >>> round(anytime_p_value(110, 800, higher_is_better=False,   # error rate 0.10 -> 0.1375
    ...                       base_successes=2000, base_n=20000), 3)
    0.11
    """
    if not 0 < rtol < 1 or not 0 < floor < 1:
        raise ValueError("rtol and floor must be in (0, 1)")
    kw: dict[str, object] = {
        "margin": margin,
        "margin_type": margin_type,
        "higher_is_better": higher_is_better,
        "base_successes": base_successes,
        "base_n": base_n,
        "base_value": base_value,
        "base_stderr": base_stderr,
        "baseline_share": baseline_share,
        "prior_sizes": prior_sizes,
    }

    def test(alpha: float) -> SequentialDrop:
        with np.errstate(over="ignore"):  # an e-value beyond float range is inf: rejected
            return sequential_drop(cur_successes, cur_n, alpha=alpha, **kw)  # type: ignore[arg-type]

    top = test(1.0)
    if not top.rejected:
        return 1.0
    hi = 1.0
    lo = max(floor, min(1.0, 1 / ((1 - baseline_share) * top.evalue)))
    if test(lo).rejected:
        return lo
    while hi > lo * (1 + rtol):
        mid = math.sqrt(lo * hi)
        if test(mid).rejected:
            hi = mid
        else:
            lo = mid
    return hi
