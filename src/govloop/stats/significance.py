"""Is a drop real? One-sided tests of a regression against a baseline.

A regression gate asks whether a metric fell by more than an allowed margin,
and must not fail on noise.  Both tests here put the hypotheses the same way:

    H0: true drop <= margin        H1: true drop > margin

where ``drop = baseline - current`` for a metric where higher is better
(``current - baseline`` where lower is better), and report the one-sided
p-value ``P(Z >= z)``.  A gate fails only when ``p < alpha``: with no true
change the chance of failing is at most ``alpha`` (about ``alpha`` at the
boundary ``drop == margin``, less inside it).

* :func:`proportion_drop`  the two-proportion z-test from counts: a large-sample
  approximation, over alpha for small samples and rates near 0 or 1; gates use the
  exact test of :mod:`govloop.stats.two_sample` instead
* :func:`stderr_drop`      from two estimates and their standard errors (Lighteval): the
  z-test, for metrics with no known range
* :func:`bounded_stderr_drop` the same for metrics in [0, 1]: a Welch t reference and a
  critical value raised by a bound on the skewness of a mean of [0, 1] scores
* :func:`mean_estimate`    the mean of k independent estimates and its standard error
* :func:`adjusted_p_values` Holm or Bonferroni adjusted p-values over a family of tests
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import stdtr
from scipy.stats import norm

__all__ = [
    "SKEW_FACTOR",
    "DropTest",
    "adjusted_p_values",
    "bounded_p_values",
    "bounded_stderr_drop",
    "mean_estimate",
    "proportion_drop",
    "skew_corrected_p",
    "stderr_drop",
]


@dataclass(frozen=True)
class DropTest:
    """The outcome of a one-sided test of ``drop > margin``.

    ``drop`` is oriented so that positive means worse; ``z = (drop - margin) /
    stderr`` and ``p_value = P(Z >= z)`` under H0 (``nan`` when ``stderr`` is 0).
    """

    baseline: float
    current: float
    drop: float
    margin: float
    stderr: float
    z: float
    p_value: float
    method: str

    def significant(self, alpha: float) -> bool:
        """True when the drop beyond the margin is significant at ``alpha``."""
        return not math.isnan(self.p_value) and self.p_value < alpha


def _test(
    baseline: float,
    current: float,
    margin: float,
    stderr: float,
    higher_is_better: bool,
    method: str,
) -> DropTest:
    drop = baseline - current if higher_is_better else current - baseline
    if stderr > 0:
        z = (drop - margin) / stderr
        p = float(norm.sf(z))
    elif drop > margin:  # no noise at all and worse than allowed: certainly a drop
        z, p = math.inf, 0.0
    else:
        z, p = (-math.inf if drop < margin else math.nan), (1.0 if drop < margin else math.nan)
    return DropTest(
        baseline=baseline,
        current=current,
        drop=drop,
        margin=margin,
        stderr=stderr,
        z=z,
        p_value=p,
        method=method,
    )


def stderr_drop(
    baseline: float,
    baseline_se: float,
    current: float,
    current_se: float,
    margin: float = 0.0,
    higher_is_better: bool = True,
) -> DropTest:
    """z-test on the difference of two independent estimates with standard errors.

    ``stderr = sqrt(baseline_se**2 + current_se**2)``.  Lighteval's winogrande
    accuracy from 0.701 (s.e. 0.012862) to 0.652 (s.e. 0.013382):

    >>> t = stderr_drop(0.701, 0.012862, 0.652, 0.013382)
    >>> round(t.drop, 3), round(t.stderr, 5), round(t.z, 3), round(t.p_value, 4)
    (0.049, 0.01856, 2.64, 0.0041)
    >>> t.significant(0.05)
    True
    >>> stderr_drop(0.774, 0.009756, 0.779, 0.009678).significant(0.05)  # piqa went up
    False
    """
    if baseline_se < 0 or current_se < 0:
        raise ValueError("standard errors cannot be negative")
    stderr = math.hypot(baseline_se, current_se)
    return _test(baseline, current, margin, stderr, higher_is_better, "z-test on stderr")


#: The skewness of a mean of n scores in [0, 1] with mean m, for 0/1 scores and every Beta
#: law, is at most ``c |1 - 2m| / sqrt(m (1 - m) n_eff)`` with ``c = 2 (k + 1) / (k + 2) < 2``
#: (k the Beta's concentration, 0 for 0/1 scores) and ``n_eff = m (1 - m) / se^2``, that is
#: ``c |1 - 2m| se / (m (1 - m))``.  The test uses 1.5 times the envelope ``c = 2``: the
#: one-term Cornish-Fisher shift under-corrects in the far tail (alpha 0.0005) when the
#: skewness is at the envelope (Beta concentration 50, n = 50); the validity benchmark
#: measures the result.
SKEW_FACTOR = 3.0


def skew_corrected_p(z: ArrayLike, skew: ArrayLike, df: ArrayLike) -> NDArray[np.float64]:
    """One-sided p-value of a studentised statistic ``z`` whose skewness is at most ``skew``.

    The Cornish-Fisher critical value of a studentised mean of skewness ``g`` is
    ``c(q) = q + g (2 q^2 + 1) / 6`` for the reference quantile ``q`` (Hall, 1987); the test
    rejects at ``alpha`` when ``z > c(t_df quantile)``.  Its p-value is ``P(T_df > q)`` with
    ``q`` the root of ``c(q) = z`` above the vertex ``-3 / (2 g)`` of ``c`` (1 when there is
    none: ``z`` far below 0).  Vectorised.
    With ``skew = 0`` it is Student's t:

    >>> from scipy.stats import t
    >>> float(skew_corrected_p(2.0, 0.0, 30)) == float(t.sf(2.0, 30))
    True
    >>> q = 1.8  # z = c(1.8) at skewness 0.3 gives back P(T > 1.8)
    >>> round(float(skew_corrected_p(q + 0.3 * (2 * q * q + 1) / 6, 0.3, 30)), 6)
    0.040963
    """
    z, g, df = (np.asarray(x, dtype=np.float64) for x in (z, skew, df))
    a = np.maximum(g, 0.0) / 3.0  # c(q) = a q^2 + q + a / 2
    disc = 1.0 + 4.0 * a * (z - a / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = (np.sqrt(np.maximum(disc, 0.0)) - 1.0) / (2.0 * a)
    q = np.where(a > 1e-12, np.where(disc >= 0, root, -np.inf), z)
    return np.asarray(stdtr(df, -q), dtype=np.float64)


def bounded_stderr_drop(
    baseline: float,
    baseline_se: float,
    current: float,
    current_se: float,
    margin: float = 0.0,
    higher_is_better: bool = True,
    baseline_n: int | None = None,
    current_n: int | None = None,
) -> DropTest:
    """The test of :func:`stderr_drop` for two means of scores in [0, 1].

    ``z = (drop - margin) / sqrt(se_b^2 + se_c^2)`` as there (reported unchanged).  The
    p-value is that of a Welch t (degrees of freedom from the sizes; ``n_eff = v (1 - v) /
    se^2`` where a size is unknown, exact for 0/1 scores) on the drop less a continuity
    correction, half the lattice step of 0/1 scores with those effective sizes, ``(1/n_eff_b
    + 1/n_eff_c) / 2``, with its critical value raised by the skewness bound
    (:data:`SKEW_FACTOR`) of the difference, ``(g_b se_b^3 + g_c se_c^3) / se^3``.

    At ``v = 0.5`` the bound is 0: Welch's t-test on the drop less the half step (0.001
    here; scipy's ``ttest_ind_from_stats`` on means 0.529 and 0.5 gives the same 0.09749):

    >>> t = bounded_stderr_drop(0.5, 0.01, 0.5, 0.02, -0.03, baseline_n=2500, current_n=625)
    >>> round(t.z, 4), round(t.p_value, 5)
    (1.3416, 0.09749)

    Winogrande from 0.701 (s.e. 0.012862) to 0.652 (s.e. 0.013382): the z-test's p is
    0.0041, this one's larger, and still significant at 0.05:

    >>> t = bounded_stderr_drop(0.701, 0.012862, 0.652, 0.013382)
    >>> round(t.z, 3), round(t.p_value, 4), t.significant(0.05)
    (2.64, 0.0063, True)
    """
    for v in (baseline, current):
        if not 0 < v < 1:
            raise ValueError("bounded_stderr_drop needs values strictly between 0 and 1")
    if baseline_se <= 0 or current_se <= 0:
        raise ValueError("bounded_stderr_drop needs positive standard errors")
    sizes = []
    for v, se, n in ((baseline, baseline_se, baseline_n), (current, current_se, current_n)):
        size = v * (1 - v) / (se * se) if n is None else float(n)
        if size <= 1:
            raise ValueError("a standard error needs at least two samples")
        sizes.append(size)
    test = _test(
        baseline,
        current,
        margin,
        math.hypot(baseline_se, current_se),
        higher_is_better,
        "Welch t on stderr, skewness-bounded for [0, 1]",
    )
    p = bounded_p_values(baseline, baseline_se, current, current_se, test.drop, margin, *sizes)
    return replace(test, p_value=float(p))


def bounded_p_values(
    baseline: ArrayLike,
    baseline_se: ArrayLike,
    current: ArrayLike,
    current_se: ArrayLike,
    drop: ArrayLike,
    margin: ArrayLike,
    baseline_n: ArrayLike,
    current_n: ArrayLike,
) -> NDArray[np.float64]:
    """The p-values of :func:`bounded_stderr_drop`, vectorised (values in (0, 1), positive
    standard errors, sizes above 1; ``drop`` already oriented so that positive is worse).

    >>> round(float(bounded_p_values(0.701, 0.012862, 0.652, 0.013382, 0.049, 0, 1267, 1267)), 4)
    0.0063
    """
    vb, sb, vc, sc, d, m, nb, nc = (
        np.asarray(x, dtype=np.float64)
        for x in (baseline, baseline_se, current, current_se, drop, margin, baseline_n, current_n)
    )
    s2 = sb * sb + sc * sc
    s = np.sqrt(s2)
    skew = (
        SKEW_FACTOR
        * (
            np.abs(1 - 2 * vb) * sb**4 / (vb * (1 - vb))
            + np.abs(1 - 2 * vc) * sc**4 / (vc * (1 - vc))
        )
        / (s2 * s)
    )
    df = s2 * s2 / (sb**4 / (nb - 1) + sc**4 / (nc - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        half_step = (sb * sb / (vb * (1 - vb)) + sc * sc / (vc * (1 - vc))) / 2
    return skew_corrected_p((d - m - half_step) / s, skew, df)


def proportion_drop(
    baseline_successes: float,
    baseline_n: float,
    current_successes: float,
    current_n: float,
    margin: float = 0.0,
    higher_is_better: bool = True,
) -> DropTest:
    """Two-proportion z-test from counts, one-sided.

    With ``margin == 0`` the standard error is the pooled one (the classic
    two-proportion z-test; ``z**2`` equals Pearson's chi-square on the 2x2
    table without continuity correction).  With a non-zero margin H0 no longer
    says the two rates are equal, so the unpooled (Wald) standard error is used.

    900/1000 correct before, 860/1000 now: p1 = 0.9, p2 = 0.86, pooled 0.88,
    se = sqrt(0.88 * 0.12 * (1/1000 + 1/1000)) = 0.014533, z = 0.04 / se = 2.752:

    >>> t = proportion_drop(900, 1000, 860, 1000)
    >>> round(t.stderr, 6), round(t.z, 3), round(t.p_value, 4)
    (0.014533, 2.752, 0.003)
    >>> proportion_drop(900, 1000, 860, 1000, margin=0.05).significant(0.05)
    False
    """
    if baseline_n <= 0 or current_n <= 0:
        raise ValueError("both samples need n > 0")
    if not (0 <= baseline_successes <= baseline_n and 0 <= current_successes <= current_n):
        raise ValueError("successes must lie between 0 and n")
    p1, p2 = baseline_successes / baseline_n, current_successes / current_n
    if margin == 0:
        pooled = (baseline_successes + current_successes) / (baseline_n + current_n)
        stderr = math.sqrt(pooled * (1 - pooled) * (1 / baseline_n + 1 / current_n))
        method = "two-proportion z-test (pooled)"
    else:
        stderr = math.sqrt(p1 * (1 - p1) / baseline_n + p2 * (1 - p2) / current_n)
        method = "two-proportion z-test (unpooled, margin)"
    return _test(p1, p2, margin, stderr, higher_is_better, method)


def mean_estimate(
    values: Sequence[float], stderrs: Sequence[float | None]
) -> tuple[float, float | None]:
    """Mean of k independent estimates and its standard error ``sqrt(sum se**2) / k``.

    The standard error is ``None`` when any input's is unknown.

    >>> mean_estimate([0.701, 0.774], [0.012862, 0.009756])
    (0.7375, 0.008071...)
    >>> mean_estimate([0.5, 0.7], [0.01, None])
    (0.6, None)
    """
    if not values or len(values) != len(stderrs):
        raise ValueError("need one standard error per value, and at least one value")
    mean = math.fsum(values) / len(values)
    if any(se is None for se in stderrs):
        return mean, None
    return mean, math.sqrt(math.fsum(se * se for se in stderrs if se is not None)) / len(values)


def adjusted_p_values(
    p_values: Sequence[float], method: Literal["holm", "bonferroni", "none"] = "holm"
) -> list[float]:
    """Adjusted p-values: rejecting those below ``alpha`` keeps the family-wise error
    (any false rejection) at most ``alpha``, under any dependence between the tests.

    Holm's step-down: the i-th smallest of m is ``max_{j <= i} min(1, (m - j + 1) p_(j))``;
    Bonferroni's is ``min(1, m p)``.

    >>> adjusted_p_values([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
    >>> adjusted_p_values([0.01, 0.04, 0.03, 0.005], "bonferroni")
    [0.04, 0.16, 0.12, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if method == "none" or m <= 1:
        return [float(x) for x in p]
    if method == "bonferroni":
        return [float(x) for x in np.minimum(1.0, m * p)]
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = steps
    return [round(float(x), 15) for x in out]
