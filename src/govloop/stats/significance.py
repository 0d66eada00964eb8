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
* :func:`stderr_drop`      from two estimates and their standard errors (Lighteval)
* :func:`mean_estimate`    the mean of k independent estimates and its standard error
* :func:`adjusted_p_values` Holm or Bonferroni adjusted p-values over a family of tests
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm

__all__ = ["DropTest", "adjusted_p_values", "mean_estimate", "proportion_drop", "stderr_drop"]


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
