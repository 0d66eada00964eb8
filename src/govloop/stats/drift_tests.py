"""Two-sample drift tests computed from sketches, never from raw values.

Each test compares a reference summary with a current one and returns a
:class:`DriftTestResult`.  Numeric tests read :class:`NumericSketch` CDFs and
quantile functions on a dense grid; categorical tests read
:class:`CategoricalCounts`.  Conventions follow Evidently where it has them
(Wasserstein normalised by the reference's std with threshold 0.1, PSI 0.2,
Jensen-Shannon distance 0.1, distance tests drift at ``statistic >= threshold``);
the hypothesis tests drift at ``p_value < alpha``.

The KS test is conservative about sketch error.  A KLL sketch knows each CDF
value only within its rank error eps (DataSketches' stated bound, met in 99 %
of trials), so the observed D can exceed the true D by up to
``eps_ref + eps_cur``.  The test therefore reports the observed D as its
statistic, computes the p-value from the corrected ``max(D - eps_ref -
eps_cur, 0)``, and drifts only when the corrected D exceeds the critical value
at ``alpha`` (the reported ``threshold`` is that critical value plus the
eps sum).  Sketch error can thus cost power, but does not add false alarms.
A sketch that still holds every value (``is_exact``) has eps = 0.

The chi-square test compares the two samples on one partition of the
values measured exactly on both sides (:func:`category_table`): the values
themselves while neither summary passed its cap, else the fixed hash
buckets every summary counts.  Bins are pooled, by their totals over both
samples, until each expects at least :data:`MIN_EXPECTED` values in the
smaller sample, so the chi-square approximation holds.  Its p-value also
absorbs the reference's own sampling error (:func:`reference_robust_p`): a
reference is one fixed sample for a model version's life, and windows
compared with it are not independent tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import chdtrc
from scipy.stats import chi2, kstwo, ncx2

from govloop.stats.sketches import HASH_BUCKETS, OTHER, CategoricalCounts, NumericSketch

__all__ = [
    "CATEGORICAL_TESTS",
    "NUMERIC_TESTS",
    "DriftTestResult",
    "categorical_drift",
    "categorical_jensen_shannon",
    "category_table",
    "chi_square",
    "jensen_shannon",
    "ks",
    "numeric_drift",
    "psi",
    "reference_robust_p",
    "wasserstein",
]

#: Quantile levels per sketch for the grids of the KS and Wasserstein tests.
GRID_LEVELS = 1024
#: Floor of proportions in PSI (as Evidently), so that empty bins stay finite.
PSI_EPSILON = 1e-4
#: Floor of the reference std that normalises the Wasserstein distance (as Evidently).
MIN_STD = 1e-3
#: Smallest expected count of a chi-square bin in the smaller sample (Cochran's rule).
MIN_EXPECTED = 5.0
#: Share of the references whose own sampling error the chi-square p-value absorbs.
REFERENCE_COVERAGE = 0.95


@dataclass(frozen=True)
class DriftTestResult:
    """The outcome of one two-sample test; ``p_value`` is None for distance tests."""

    test: str
    statistic: float
    threshold: float
    p_value: float | None
    drifted: bool


def _check(ref: NumericSketch, cur: NumericSketch) -> None:
    if ref.n == 0 or cur.n == 0:
        raise ValueError(f"both sketches need values, got n={ref.n} and n={cur.n}")


@lru_cache(maxsize=4096)
def _ks_critical(alpha: float, n: int) -> float:
    """Critical D of the KS test at level alpha for n (kstwo.isf is slow for small n)."""
    return float(kstwo.isf(alpha, n))


def _eps(sketch: NumericSketch) -> float:
    return 0.0 if sketch.is_exact else sketch.rank_error


def _bins(ref: NumericSketch, cur: NumericSketch, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Proportions of both sketches in ``bins`` bins cut at reference quantiles."""
    _check(ref, cur)
    levels = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(ref.quantiles(levels))
    p_ref = np.diff(np.concatenate(([0.0], ref.cdf(edges), [1.0])))
    p_cur = np.diff(np.concatenate(([0.0], cur.cdf(edges), [1.0])))
    return np.clip(p_ref, 0.0, 1.0), np.clip(p_cur, 0.0, 1.0)


def ks(ref: NumericSketch, cur: NumericSketch, alpha: float = 0.05) -> DriftTestResult:
    """Two-sample Kolmogorov-Smirnov test, corrected for the sketches' rank errors.

    D is the largest CDF gap over the union of both sketches' quantiles; the
    p-value is asymptotic (``scipy.stats.kstwo``) with n_eff = n m / (n + m).

    >>> rng = np.random.default_rng(1)
    >>> ref, cur, same = NumericSketch(), NumericSketch(), NumericSketch()
    >>> ref.update_many(rng.normal(0.0, 1.0, 5000))
    >>> same.update_many(rng.normal(0.0, 1.0, 5000))
    >>> cur.update_many(rng.normal(0.3, 1.0, 5000))
    >>> ks(ref, same).drifted, ks(ref, cur).drifted
    (False, True)
    """
    _check(ref, cur)
    levels = np.linspace(0.0, 1.0, GRID_LEVELS + 1)
    grid = np.unique(np.concatenate((ref.quantiles(levels), cur.quantiles(levels))))
    d = float(np.max(np.abs(ref.cdf(grid) - cur.cdf(grid))))
    eps = _eps(ref) + _eps(cur)
    n_eff = max(1, round(ref.n * cur.n / (ref.n + cur.n)))
    critical = _ks_critical(alpha, n_eff)
    p_value = float(kstwo.sf(max(d - eps, 0.0), n_eff))
    threshold = critical + eps
    return DriftTestResult("ks", d, threshold, p_value, d > threshold)


def wasserstein(ref: NumericSketch, cur: NumericSketch, threshold: float = 0.1) -> DriftTestResult:
    """Wasserstein-1 distance divided by the reference's std (Evidently's normed W1).

    W1 is the integral of |Q_ref(u) - Q_cur(u)| over u in (0, 1), by the midpoint
    rule on 1024 levels.  A sketch knows Q(u) only up to its rank error, which
    in a heavy tail is a large error in value: on same-distribution lognormal
    or Pareto streams (k=200, n=50k) the sketch estimate reached 0.15-0.18
    where the raw value was 0.01.  For heavy-tailed features use :func:`ks`
    (rank-based, the default), sketch log-values, or raise ``k``.

    >>> rng = np.random.default_rng(2)
    >>> ref, cur = NumericSketch(), NumericSketch()
    >>> ref.update_many(rng.normal(0.0, 2.0, 20_000))
    >>> cur.update_many(rng.normal(1.0, 2.0, 20_000))
    >>> r = wasserstein(ref, cur)
    >>> round(r.statistic, 1), r.drifted
    (0.5, True)
    """
    _check(ref, cur)
    u = (np.arange(GRID_LEVELS) + 0.5) / GRID_LEVELS
    w1 = float(np.mean(np.abs(ref.quantiles(u) - cur.quantiles(u))))
    statistic = w1 / max(ref.std, MIN_STD)
    return DriftTestResult("wasserstein", statistic, threshold, None, statistic >= threshold)


def psi(
    ref: NumericSketch, cur: NumericSketch, bins: int = 10, threshold: float = 0.2
) -> DriftTestResult:
    """Population stability index over ``bins`` bins cut at reference quantiles.

    PSI = sum (p_cur - p_ref) ln(p_cur / p_ref), proportions floored at 1e-4.
    Bin i holds the values in (edge_{i-1}, edge_i].  Like PSI on raw data, it
    is very sensitive to a bin the current data nearly leaves empty.

    >>> rng = np.random.default_rng(3)
    >>> ref, cur = NumericSketch(), NumericSketch()
    >>> ref.update_many(rng.normal(0.0, 1.0, 20_000))
    >>> cur.update_many(rng.normal(0.5, 1.0, 20_000))
    >>> r = psi(ref, cur)
    >>> 0.2 < r.statistic < 0.3, r.drifted
    (True, True)
    """
    p_ref, p_cur = (np.maximum(p, PSI_EPSILON) for p in _bins(ref, cur, bins))
    statistic = float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))
    return DriftTestResult("psi", statistic, threshold, None, statistic >= threshold)


def jensen_shannon(
    ref: NumericSketch, cur: NumericSketch, bins: int = 10, threshold: float = 0.1
) -> DriftTestResult:
    """Jensen-Shannon distance (base 2, in [0, 1]) over bins cut at reference quantiles.

    >>> rng = np.random.default_rng(4)
    >>> ref, cur = NumericSketch(), NumericSketch()
    >>> ref.update_many(rng.normal(0.0, 1.0, 20_000))
    >>> cur.update_many(rng.normal(0.0, 1.0, 20_000))
    >>> jensen_shannon(ref, cur).drifted
    False
    """
    p_ref, p_cur = _bins(ref, cur, bins)
    statistic = float(jensenshannon(p_ref, p_cur, base=2.0))
    return DriftTestResult("jensen_shannon", statistic, threshold, None, statistic >= threshold)


def _atoms(ref: CategoricalCounts, cur: CategoricalCounts) -> tuple[list[str], np.ndarray]:
    """Labels and a 2 x A table of counts over a partition both summaries measure exactly.

    While neither summary passed its cap, the atoms are the values seen on
    either side.  Otherwise they are the hash buckets
    (:meth:`~govloop.stats.sketches.CategoricalCounts.bucket_counts`, labelled
    ``#b``): a value tracked on one side and folded on the other still lands
    in the same bucket on both.  Summaries written without buckets fall back
    to the values tracked on both sides plus one ``"__other__"`` (approximate:
    which values are tracked depends on the sample).
    """
    if ref.n == 0 or cur.n == 0:
        raise ValueError(f"both summaries need values, got n={ref.n} and n={cur.n}")
    rc, cc = ref.counts(), cur.counts()
    if OTHER not in rc and OTHER not in cc:
        keys = list(dict.fromkeys([*rc, *cc]))
        table = np.array([[rc.get(k, 0) for k in keys], [cc.get(k, 0) for k in keys]])
        return keys, table.astype(np.float64)
    rb, cb = ref.bucket_counts(), cur.bucket_counts()
    if rb is not None and cb is not None:
        used = np.flatnonzero(rb + cb)
        labels = [f"#{b}" for b in range(HASH_BUCKETS)]
        return [labels[b] for b in used], np.array([rb[used], cb[used]], dtype=np.float64)
    keys = [k for k in rc if k in cc and k != OTHER]
    rows = [[c[k] for k in keys] for c in (rc, cc)]
    rest = [ref.n - sum(rows[0]), cur.n - sum(rows[1])]
    if any(rest):
        keys.append(OTHER)
        rows = [[*row, r] for row, r in zip(rows, rest, strict=True)]
    return keys, np.array(rows, dtype=np.float64)


def pool(atoms: np.ndarray, min_expected: float = MIN_EXPECTED) -> np.ndarray:
    """Bin index of every column of a 2 x A table, by its column totals alone.

    Columns are taken in decreasing total (both samples together); a bin
    closes once it expects ``min_expected`` values in the smaller sample
    (its total times min(n_ref, n_cur) / (n_ref + n_cur)), and a last bin
    that falls short joins the last full one.  The bins depend on the
    samples only through the column totals, which under no drift carry no
    information on how the events split between the samples: the test that
    follows keeps its level (pooling by the reference's counts would not: the
    values it happened to see often would lead, and the test would see the
    current sample fall short of them).

    >>> pool(np.array([[500.0, 300, 150, 30, 12, 8, 0], [100, 60, 30, 6, 2, 1, 1]])).tolist()
    [0, 1, 2, 3, 3, 3, 3]
    >>> pool(np.array([[3.0, 1.0], [2.0, 0.0]])).tolist()
    [0, 0]
    """
    counts = np.asarray(atoms, dtype=np.float64)
    sizes = counts.sum(axis=1)
    totals = counts.sum(axis=0)
    scale = float(sizes.min() / sizes.sum()) if sizes.sum() else 0.0
    order = np.argsort(-totals, kind="stable")
    bins = np.zeros(totals.size, dtype=np.int64)
    current, filled, closed = 0, 0.0, -1
    for column in order:
        bins[column] = current
        filled += totals[column] * scale
        if filled >= min_expected:
            closed, current, filled = current, current + 1, 0.0
    if closed < 0:
        return np.zeros(totals.size, dtype=np.int64)
    bins[bins > closed] = closed
    return bins


def category_table(
    ref: CategoricalCounts, cur: CategoricalCounts, min_expected: float = MIN_EXPECTED
) -> np.ndarray:
    """The 2 x K table the chi-square test reads: exact atoms (:func:`_atoms`) pooled by
    their totals (:func:`pool`) so that every bin expects ``min_expected`` values.

    >>> ref, cur = CategoricalCounts(), CategoricalCounts()
    >>> ref.update_many(["a"] * 900 + ["b"] * 95 + ["c"] * 5)
    >>> cur.update_many(["a"] * 90 + ["b"] * 8 + ["d"] * 2)
    >>> category_table(ref, cur).tolist()
    [[900.0, 100.0], [90.0, 10.0]]
    """
    _, atoms = _atoms(ref, cur)
    bins = pool(atoms, min_expected)
    table = np.zeros((2, int(bins.max(initial=0)) + 1))
    np.add.at(table.T, bins, atoms.T)
    return table


def pearson(table: np.ndarray) -> float:
    """Pearson's statistic of a 2 x K table, expected counts from its margins (no Yates
    correction): ``scipy.stats.chi2_contingency(table, correction=False).statistic``
    without its per-call overhead.  No column may be empty.

    >>> pearson(np.array([[500.0, 300, 200], [400, 400, 200]]))
    25.396825...
    """
    rows = table.sum(axis=1, keepdims=True)
    expected = rows * table.sum(axis=0, keepdims=True) / rows.sum()
    return float(np.sum((table - expected) ** 2 / expected))


@lru_cache(maxsize=1024)
def _reference_q(dof: int) -> float:
    """The :data:`REFERENCE_COVERAGE` quantile of chi-square with ``dof`` degrees of freedom."""
    return float(chi2.isf(1.0 - REFERENCE_COVERAGE, dof))


@lru_cache(maxsize=4096)
def _chi_square_threshold(level: float, dof: int, n_ref: int, n_cur: int) -> float:
    """The statistic at which :func:`chi_square`'s table p-value reaches ``level``."""
    s = n_ref / (n_ref + n_cur)
    lam = n_cur / n_ref * _reference_q(dof)
    return max(float(chi2.isf(level, dof)), s * float(ncx2.isf(level, dof, lam)))


def reference_robust_p(statistic: float, df: int, n_ref: float, n_cur: float) -> float:
    """P-value of a chi-square statistic that holds for :data:`REFERENCE_COVERAGE` of references.

    Given the reference, the homogeneity statistic is asymptotically
    ``s * ncx2(df, lam)`` with ``s = n_ref / (n_ref + n_cur)`` and
    ``lam = (n_cur / n_ref) Q``, where ``Q`` (chi-square with ``df`` degrees of
    freedom over reference draws) measures how far the reference's shares lie
    from the truth.  The two-sample p-value is right on average over references
    but, for a given one, too small when ``Q`` is large (the worst references
    see several times the nominal rate; ``benchmarks/validity/fleet.py``
    measures it).  This is the tail probability at ``Q``'s 95th percentile, so
    for 95 % of references it is at least the conditional tail probability.

    >>> round(reference_robust_p(23.2, 10, 1e9, 1000), 4)   # huge reference: plain chi-square
    0.01
    >>> [round(reference_robust_p(23.2, 10, 1000, m), 4) for m in (200, 1000)]
    [0.0217, 0.044]
    """
    s = n_ref / (n_ref + n_cur)
    lam = n_cur / n_ref * _reference_q(df)
    return float(ncx2.sf(statistic / s, df, lam))


def chi_square(
    ref: CategoricalCounts, cur: CategoricalCounts, alpha: float = 0.05
) -> DriftTestResult:
    """Pearson's chi-square test of homogeneity on the pooled 2 x K table (:func:`category_table`).

    Expected counts come from the pooled proportions, not from the
    reference alone: the reference is a sample too, and treating it as the
    truth over-alarms when it is small.  As the reference grows this tends
    to the goodness-of-fit test against reference proportions.  No Yates
    correction.  The p-value is the larger of the two-sample one (valid
    averaged over references) and :func:`reference_robust_p` (valid for 95 %
    of references, given the one in use); ``threshold`` is the statistic at
    which it reaches ``alpha``.  A value the reference never saw that the
    window holds often is a bin of its own and drifts.

    >>> ref, cur = CategoricalCounts(), CategoricalCounts()
    >>> ref.update_many(["a"] * 500 + ["b"] * 300 + ["c"] * 200)
    >>> cur.update_many(["a"] * 400 + ["b"] * 400 + ["c"] * 200)
    >>> r = chi_square(ref, cur)
    >>> round(r.statistic, 2), r.p_value < 0.05, r.drifted
    (25.4, True, True)
    >>> new = CategoricalCounts()
    >>> new.update_many(["a"] * 450 + ["b"] * 300 + ["c"] * 200 + ["d"] * 50)
    >>> chi_square(ref, new).drifted
    True
    """
    table = category_table(ref, cur)
    dof = table.shape[1] - 1
    if dof == 0:
        return DriftTestResult("chi_square", 0.0, float(chi2.isf(alpha, 1)), 1.0, False)
    statistic = pearson(table)
    n_ref, n_cur = (int(n) for n in table.sum(axis=1))
    threshold = _chi_square_threshold(alpha, dof, n_ref, n_cur)
    p = max(float(chdtrc(dof, statistic)), reference_robust_p(statistic, dof, n_ref, n_cur))
    return DriftTestResult("chi_square", statistic, threshold, p, p < alpha)


def categorical_jensen_shannon(
    ref: CategoricalCounts, cur: CategoricalCounts, threshold: float = 0.1
) -> DriftTestResult:
    """Jensen-Shannon distance (base 2) between the category proportions.

    >>> ref, cur = CategoricalCounts(), CategoricalCounts()
    >>> ref.update_many("aab"); cur.update_many("abb")
    >>> r = categorical_jensen_shannon(ref, cur)
    >>> round(r.statistic, 3), r.drifted
    (0.286, True)
    """
    _, table = _atoms(ref, cur)
    statistic = float(jensenshannon(table[0], table[1], base=2.0))
    return DriftTestResult("jensen_shannon", statistic, threshold, None, statistic >= threshold)


#: Numeric tests by name, for :func:`numeric_drift`.
NUMERIC_TESTS: Mapping[str, Callable[..., DriftTestResult]] = {
    "ks": ks,
    "wasserstein": wasserstein,
    "psi": psi,
    "jensen_shannon": jensen_shannon,
}
#: Categorical tests by name, for :func:`categorical_drift`.
CATEGORICAL_TESTS: Mapping[str, Callable[..., DriftTestResult]] = {
    "chi_square": chi_square,
    "jensen_shannon": categorical_jensen_shannon,
}


def numeric_drift(
    ref: NumericSketch, cur: NumericSketch, method: str = "ks", **options: Any
) -> DriftTestResult:
    """Run the numeric test named ``method`` (see :data:`NUMERIC_TESTS`) with ``options``.

    >>> ref, cur = NumericSketch(), NumericSketch()
    >>> ref.update_many(np.arange(100.0)); cur.update_many(np.arange(100.0) + 50)
    >>> numeric_drift(ref, cur, "psi", bins=5).test
    'psi'
    """
    if method not in NUMERIC_TESTS:
        raise ValueError(f"unknown numeric test {method!r}; choose from {sorted(NUMERIC_TESTS)}")
    return NUMERIC_TESTS[method](ref, cur, **options)


def categorical_drift(
    ref: CategoricalCounts, cur: CategoricalCounts, method: str = "chi_square", **options: Any
) -> DriftTestResult:
    """Run the categorical test named ``method`` (see :data:`CATEGORICAL_TESTS`).

    >>> ref, cur = CategoricalCounts(), CategoricalCounts()
    >>> ref.update_many("ab" * 50); cur.update_many("ab" * 50)
    >>> categorical_drift(ref, cur, alpha=0.01).drifted
    False
    """
    if method not in CATEGORICAL_TESTS:
        raise ValueError(
            f"unknown categorical test {method!r}; choose from {sorted(CATEGORICAL_TESTS)}"
        )
    return CATEGORICAL_TESTS[method](ref, cur, **options)
