"""Drift tests from sketches against scipy/numpy on the raw data, false-alarm rates on
seeded no-drift streams, detection of planted shifts, and the fleet's multiple testing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import (
    binom,
    chi2,
    chi2_contingency,
    chisquare,
    false_discovery_control,
    ks_2samp,
    ncx2,
    wasserstein_distance,
)

from govloop.stats.drift_tests import (
    DriftTestResult,
    categorical_drift,
    categorical_jensen_shannon,
    chi_square,
    jensen_shannon,
    ks,
    numeric_drift,
    psi,
    wasserstein,
)
from govloop.stats.fleet import FleetBudget, benjamini_hochberg, holm
from govloop.stats.sketches import OTHER, CategoricalCounts, NumericSketch

Sampler = Callable[[np.random.Generator, int], np.ndarray]
#: Feature distributions of a simulated model: light and heavy tails, ties.
FEATURES: list[Sampler] = [
    lambda r, n: r.normal(0.0, 1.0, n),
    lambda r, n: r.lognormal(3.0, 1.5, n),
    lambda r, n: r.exponential(2.0, n),
    lambda r, n: r.uniform(-1.0, 1.0, n),
    lambda r, n: r.poisson(4.0, n).astype(float),
]


def sk(values: np.ndarray, k: int = 200) -> NumericSketch:
    s = NumericSketch(k)
    s.update_many(values)
    return s


def cats(values: object) -> CategoricalCounts:
    c = CategoricalCounts()
    c.update_many(values)  # type: ignore[arg-type]
    return c


def binned(ref_sketch: NumericSketch, a: np.ndarray, b: np.ndarray, bins: int = 10):
    """Proportions of the raw samples in (edge_{i-1}, edge_i], edges as the tests cut them."""
    edges = np.unique(ref_sketch.quantiles(np.linspace(0.0, 1.0, bins + 1)[1:-1]))

    def props(v: np.ndarray) -> np.ndarray:
        cdf = np.searchsorted(np.sort(v), edges, side="right") / v.size
        return np.diff(np.concatenate(([0.0], cdf, [1.0])))

    return props(a), props(b)


def numpy_psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


# --- oracles on raw data ----------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3])
@pytest.mark.parametrize(("n", "m"), [(150, 120), (5000, 5000), (40_000, 3000)])
def test_ks_statistic_is_within_the_rank_errors_of_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    a, b = rng.lognormal(0.0, 1.0, n), rng.lognormal(shift, 1.0, m)
    ref, cur = sk(a), sk(b)
    result, oracle = ks(ref, cur), ks_2samp(a, b, method="asymp")
    if ref.is_exact and cur.is_exact:  # every value is on the grid: scipy's numbers exactly
        assert result.statistic == pytest.approx(oracle.statistic, abs=1e-12)
        assert result.p_value == pytest.approx(oracle.pvalue, rel=1e-9)
    else:
        assert abs(result.statistic - oracle.statistic) <= ref.rank_error + cur.rank_error
        # Conservative: the corrected D is at most the true D, so its p-value is no smaller.
        assert result.p_value is not None
        assert result.p_value >= oracle.pvalue - 1e-12
    if oracle.pvalue > 0.5 or oracle.pvalue < 1e-8:  # clear cases: the same decision
        assert result.drifted == (oracle.pvalue < 0.05)


def test_ks_result_fields() -> None:
    ref, cur = sk(np.arange(1000.0)), sk(np.arange(1000.0) + 300.0)
    r = ks(ref, cur, alpha=0.01)
    assert isinstance(r, DriftTestResult)
    assert (r.test, r.drifted) == ("ks", True)
    assert r.threshold > ref.rank_error + cur.rank_error  # critical value + both rank errors
    assert r.statistic == pytest.approx(0.3, abs=0.03)
    with pytest.raises(AttributeError):
        r.drifted = False  # type: ignore[misc]


def test_wasserstein_exact_while_small() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.0, 2.0, 128), rng.gamma(2.0, 1.0, 128)
    r = wasserstein(sk(a), sk(b))
    assert r.statistic == pytest.approx(wasserstein_distance(a, b) / a.std(), rel=1e-12)


# Tolerances are about 1.5 times the largest relative error seen in 400 repeats of each
# case (median errors 0.5-2.4 %): the sketch's rank error in the tails sets the accuracy.
@pytest.mark.parametrize(
    ("make", "k", "tolerance"),
    [
        (lambda r: (r.normal(0, 1, 20_000), r.normal(0.5, 1, 30_000)), 200, 0.15),
        (lambda r: (r.normal(0, 1, 20_000), r.normal(0.5, 1, 30_000)), 800, 0.05),
        (lambda r: (r.normal(0, 1, 20_000), r.normal(0, 1.5, 30_000)), 200, 0.05),
        (lambda r: (r.uniform(0, 1, 20_000), r.uniform(0.1, 1.1, 30_000)), 200, 0.12),
        (lambda r: (r.exponential(1, 20_000), r.exponential(1.3, 30_000)), 800, 0.08),
    ],
)
def test_wasserstein_is_close_to_scipy(make: Callable, k: int, tolerance: float) -> None:
    for seed in range(5):
        a, b = make(np.random.default_rng(seed))
        expected = wasserstein_distance(a, b) / a.std()
        assert wasserstein(sk(a, k), sk(b, k)).statistic == pytest.approx(expected, rel=tolerance)


def test_psi_hand_worked() -> None:
    # Reference 1..10, one edge at its median 5: p_ref = (0.5, 0.5).  Current has 7 of
    # 10 values <= 5: p_cur = (0.7, 0.3).  PSI = 0.2 ln(1.4) + (-0.2) ln(0.6) = 0.169459...
    ref, cur = sk(np.arange(1.0, 11.0)), sk(np.array([1, 2, 3, 4, 5, 6, 7, 8, 1, 2.0]))
    r = psi(ref, cur, bins=2)
    assert r.statistic == pytest.approx(0.2 * np.log(1.4) - 0.2 * np.log(0.6), rel=1e-12)
    assert not r.drifted
    assert r.p_value is None


@pytest.mark.parametrize("bins", [4, 10, 20])
def test_psi_and_js_match_numpy_on_the_same_edges(bins: int) -> None:
    rng = np.random.default_rng(bins)
    for a, b in [
        (rng.normal(0, 1, 180), rng.normal(0.4, 1.2, 190)),  # exact sketches: equal
        (rng.normal(0, 1, 20_000), rng.normal(0.5, 1, 30_000)),
        (rng.lognormal(0, 1, 20_000), rng.lognormal(0.3, 1.2, 30_000)),
        (rng.exponential(1, 20_000), rng.exponential(1.3, 30_000)),
    ]:
        ref, cur = sk(a), sk(b)
        p, q = binned(ref, a, b, bins)
        exact = ref.is_exact and cur.is_exact
        assert psi(ref, cur, bins=bins).statistic == pytest.approx(
            numpy_psi(p, q), abs=1e-12 if exact else 0.03 + 0.002 * bins
        )
        assert jensen_shannon(ref, cur, bins=bins).statistic == pytest.approx(
            jensenshannon(p, q, base=2), abs=1e-12 if exact else 0.03
        )


def test_chi_square_hand_worked() -> None:
    # Pooled proportions 0.45/0.35/0.20 give expected 450/350/200 in each row:
    # chi2 = 2 (50^2/450 + 50^2/350 + 0) = 25.397 on 2 degrees of freedom.  The
    # reference-robust tail is that of 0.5 ncx2(2, chi2_2's 95th percentile).
    ref = cats(["a"] * 500 + ["b"] * 300 + ["c"] * 200)
    cur = cats(["a"] * 400 + ["b"] * 400 + ["c"] * 200)
    r = chi_square(ref, cur, alpha=0.01)
    expected = 2 * (2500 / 450 + 2500 / 350)
    assert r.statistic == pytest.approx(expected, rel=1e-12)
    lam = chi2.isf(0.05, 2)
    robust = ncx2.sf(2 * expected, 2, lam)
    assert r.p_value == pytest.approx(max(robust, chi2.sf(expected, 2)), rel=1e-9)
    assert r.threshold == pytest.approx(0.5 * ncx2.isf(0.01, 2, lam))
    assert r.drifted


def test_chi_square_matches_scipy_on_random_tables() -> None:
    """Tables whose every cell expects well over 5: no pooling, scipy's statistic."""
    rng = np.random.default_rng(6)
    for _ in range(20):
        k = int(rng.integers(2, 8))
        p_ref = rng.dirichlet(np.full(k, 20.0))
        p_cur = rng.dirichlet(np.full(k, 20.0))
        a = rng.choice(k, size=int(rng.integers(1000, 3000)), p=p_ref)
        b = rng.choice(k, size=int(rng.integers(1000, 3000)), p=p_cur)
        ref, cur = cats(a.tolist()), cats(b.tolist())
        keys = sorted(set(a.tolist()) | set(b.tolist()))
        table = [[np.sum(a == key) for key in keys], [np.sum(b == key) for key in keys]]
        assert min(table[0]) * min(len(a), len(b)) / len(a) >= 5
        oracle = chi2_contingency(table, correction=False)
        r = chi_square(ref, cur)
        assert r.statistic == pytest.approx(oracle.statistic, rel=1e-9)
        dof, n, m = k - 1, len(a), len(b)
        robust = ncx2.sf(oracle.statistic * (n + m) / n, dof, m / n * chi2.isf(0.05, dof))
        assert r.p_value == pytest.approx(max(oracle.pvalue, robust), rel=1e-9, abs=1e-300)


def test_chi_square_tends_to_goodness_of_fit_for_a_large_reference() -> None:
    ref = CategoricalCounts.from_dict(
        {"max_distinct": 100, "counts": {"a": 5_000_000, "b": 3_000_000, "c": 2_000_000}}
    )
    cur = cats(["a"] * 450 + ["b"] * 330 + ["c"] * 220)
    oracle = chisquare([450, 330, 220], f_exp=[500, 300, 200])
    assert chi_square(ref, cur).statistic == pytest.approx(oracle.statistic, rel=1e-3)


def test_categories_beyond_the_cap_do_not_look_like_drift() -> None:
    rng = np.random.default_rng(7)
    values = [f"v{i}" for i in range(300)]
    ref, cur = CategoricalCounts(50), CategoricalCounts(50)
    ref.update_many(rng.choice(values, 20_000).tolist())  # each side tracks a different
    cur.update_many(rng.choice(values, 20_000).tolist())  # first-seen set of 50 values
    assert set(ref.counts()) != set(cur.counts())
    assert not chi_square(ref, cur).drifted
    assert not categorical_jensen_shannon(ref, cur).drifted


def test_one_category_and_categories_on_one_side() -> None:
    single = chi_square(cats("aaa"), cats("aa"))
    assert (single.statistic, single.p_value, single.drifted) == (0.0, 1.0, False)
    r = chi_square(cats("a" * 50 + "b" * 50), cats("a" * 50 + "c" * 50))
    assert r.drifted  # "c", new, is a bin of its own
    assert OTHER not in cats("ab").counts()


def test_dispatchers_and_errors() -> None:
    ref, cur = sk(np.arange(100.0)), sk(np.arange(100.0) + 10)
    assert numeric_drift(ref, cur) == ks(ref, cur)
    assert numeric_drift(ref, cur, "wasserstein", threshold=0.5) == wasserstein(ref, cur, 0.5)
    assert numeric_drift(ref, cur, "jensen_shannon", bins=5).test == "jensen_shannon"
    a, b = cats("aab"), cats("abb")
    assert categorical_drift(a, b, "jensen_shannon") == categorical_jensen_shannon(a, b)
    with pytest.raises(ValueError, match="unknown numeric test"):
        numeric_drift(ref, cur, "t-test")
    with pytest.raises(ValueError, match="unknown categorical test"):
        categorical_drift(a, b, "ks")
    with pytest.raises(ValueError, match="need values"):
        ks(ref, NumericSketch())
    with pytest.raises(ValueError, match="need values"):
        chi_square(a, CategoricalCounts())


# --- false alarms on no-drift streams ---------------------------------------------------------

SIZES = [(150, 180), (2000, 5000), (20_000, 1000), (50_000, 50_000)]
SEEDS = range(15)


@pytest.fixture(scope="module")
def no_drift_p_values() -> np.ndarray:
    """KS p-values of 20 features x (sizes x seeds) rounds where nothing drifted."""
    rounds = []
    for n, m in SIZES:
        for seed in SEEDS:
            rng = np.random.default_rng([seed, n, m])
            p = []
            for j in range(20):
                draw = FEATURES[j % len(FEATURES)]
                p.append(ks(sk(draw(rng, n)), sk(draw(rng, m))).p_value)
            rounds.append(p)
    return np.array(rounds, dtype=float)


def test_ks_with_holm_keeps_the_fleet_budget(no_drift_p_values: np.ndarray) -> None:
    budget = FleetBudget(alpha=0.01)
    rounds = len(no_drift_p_values)
    alarms = sum(bool(budget.decide(dict(enumerate(p)))) for p in no_drift_p_values)
    assert alarms <= binom.ppf(0.999, rounds, 0.01)


def test_ks_per_test_false_alarm_rate(no_drift_p_values: np.ndarray) -> None:
    p = no_drift_p_values.ravel()
    assert np.mean(p < 0.05) <= binom.ppf(0.999, p.size, 0.05) / p.size
    exact = no_drift_p_values[: len(SEEDS)].ravel()  # the rounds where sketches are exact
    assert 0.005 <= np.mean(exact < 0.05) <= binom.ppf(0.999, exact.size, 0.05) / exact.size


def test_categorical_false_alarm_rate() -> None:
    alarms = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        p = [0.5, 0.3, 0.15, 0.05]
        a = rng.choice(4, size=1000, p=p).tolist()
        alarms += chi_square(cats(a), cats(rng.choice(4, size=800, p=p).tolist())).drifted
    assert alarms <= binom.ppf(0.999, 200, 0.05)


# --- planted shifts ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_mean_shift_of_a_fifth_sd_is_caught_among_twenty_features(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p_values = {}
    for j in range(20):
        a, b = rng.normal(0.0, 1.0, 5000), rng.normal(0.2 if j == 7 else 0.0, 1.0, 5000)
        p_values[f"f{j}"] = ks(sk(a), sk(b)).p_value
    assert FleetBudget(alpha=0.01).decide(p_values) == {"f7"}


@pytest.mark.parametrize("seed", range(5))
def test_variance_shift_is_caught(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.0, 1.0, 5000), rng.normal(0.0, np.sqrt(1.5), 5000)
    assert wasserstein(sk(a), sk(b)).drifted
    assert ks(sk(a, 800), sk(b, 800)).drifted
    big_a, big_b = rng.normal(0.0, 1.0, 50_000), rng.normal(0.0, np.sqrt(1.5), 50_000)
    assert ks(sk(big_a), sk(big_b)).drifted


@pytest.mark.parametrize("seed", range(5))
def test_category_frequency_shift_is_caught(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.choice(["a", "b", "c"], size=5000, p=[0.5, 0.3, 0.2]).tolist()
    b = rng.choice(["a", "b", "c"], size=5000, p=[0.45, 0.33, 0.22]).tolist()
    assert chi_square(cats(a), cats(b), alpha=0.01).drifted


# --- fleet: multiple testing ------------------------------------------------------------------


def holm_oracle(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's adjusted p-values, written out: max over j <= i of (m - j + 1) p_(j)."""
    order = np.argsort(p)
    m = p.size
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out <= alpha


def test_holm_hand_worked() -> None:
    # m = 5 at alpha 0.05: 0.01 <= 0.05/5 is rejected, 0.02 > 0.05/4 stops the procedure.
    p = [0.04, 0.01, 0.05, 0.02, 0.03]
    assert holm(p, 0.05).tolist() == [False, True, False, False, False]
    # BH rejects all five: p_(5) = 0.05 <= 5 * 0.05 / 5.
    assert benjamini_hochberg(p, 0.05).all()


def test_multiple_testing_against_oracles() -> None:
    rng = np.random.default_rng(8)
    for _ in range(200):
        m = int(rng.integers(1, 60))
        p = np.concatenate(
            (rng.uniform(size=m), rng.uniform(0, 1e-3, size=int(rng.integers(0, 5))))
        )
        if rng.uniform() < 0.3:
            p = np.round(p, 2)  # ties
        for level in (0.01, 0.05, 0.2):
            assert np.array_equal(holm(p, level), holm_oracle(p, level))
            np.testing.assert_array_equal(
                benjamini_hochberg(p, level), false_discovery_control(p, method="bh") <= level
            )


def test_family_wise_rate_on_null_p_values() -> None:
    rng = np.random.default_rng(9)
    p = rng.uniform(size=(4000, 20))
    any_holm = np.mean([holm(row, 0.05).any() for row in p])
    any_bh = np.mean([benjamini_hochberg(row, 0.05).any() for row in p])
    limit = binom.ppf(0.999, 4000, 0.05) / 4000
    assert any_holm <= limit
    assert any_bh <= limit
    assert np.mean(p < 0.05, axis=0).mean() > 0.04  # uncorrected: per-test rate as designed


def test_fleet_budget() -> None:
    # Holm: 0.001 <= 0.05/4, then 0.02 > 0.05/3 stops.  BH: 0.04 <= 4 * 0.05 / 4 takes all.
    p = {"a": 0.001, "b": 0.02, "c": 0.03, "d": 0.04}
    assert FleetBudget(alpha=0.05).decide(p) == {"a"}
    assert FleetBudget(alpha=0.05, method="bh").decide(p) == {"a", "b", "c", "d"}
    assert FleetBudget().decide({}) == set()
    assert holm([], 0.05).size == 0
    with pytest.raises(ValueError, match="alpha"):
        FleetBudget(alpha=0.0)
    with pytest.raises(ValueError, match="method"):
        FleetBudget(method="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, float("nan")])
