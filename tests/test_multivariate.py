"""Multivariate drift: the domain classifier and the MMD test on seeded data, with
oracles from scikit-learn and scipy, no-drift rates over seeds, planted shifts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.stats import binom

from govloop.stats.drift_tests import DriftTestResult
from govloop.stats.multivariate import MultivariateDriftResult, domain_classifier_test, mmd_test

NAMES = [f"f{i}" for i in range(6)]


# --- domain classifier ------------------------------------------------------------------------


def test_no_drift_auc_is_chance_over_seeds() -> None:
    seeds = range(30)
    results = []
    for seed in seeds:  # the test is valid for any forest: a smaller one keeps this fast
        rng = np.random.default_rng([seed, 1])
        ref, cur = rng.normal(size=(200, 6)), rng.normal(size=(200, 6))
        results.append(domain_classifier_test(ref, cur, NAMES, seed=seed, n_estimators=50))
    aucs = np.array([r.auc for r in results])  # held out: 100 + 100 rows, sd about 0.04
    assert abs(aucs.mean() - 0.5) < 0.02
    assert np.all(np.abs(aucs - 0.5) < 0.15)
    assert sum(r.drifted for r in results) <= binom.ppf(0.999, len(seeds), 0.05)
    assert all(r.drifted == (r.p_value < 0.05) for r in results)


def test_planted_single_feature_shift() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=(1500, 6)), rng.normal(size=(1500, 6))
    cur[:, 4] += 0.8
    r = domain_classifier_test(ref, cur, NAMES, seed=0)
    assert isinstance(r, MultivariateDriftResult)
    assert r.drifted
    assert r.p_value < 1e-10
    assert r.auc > 0.65
    assert r.top_features[0][0] == "f4"
    assert r.top_features[0][1] > 2 * r.top_features[1][1]
    assert len(r.top_features) == 5
    assert [v for _, v in r.top_features] == sorted((v for _, v in r.top_features), reverse=True)


def test_a_change_in_correlation_only() -> None:
    """Marginals unchanged, so per-feature tests see nothing; the classifier does."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(1000, 3))
    z = rng.normal(size=1000)
    cur = np.column_stack((z, 0.95 * z + 0.31 * rng.normal(size=1000), rng.normal(size=1000)))
    r = domain_classifier_test(ref, cur, ["a", "b", "c"], seed=1, n_estimators=50)
    assert r.drifted
    assert {name for name, _ in r.top_features[:2]} == {"a", "b"}


def test_deterministic_bounded_and_validated() -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(size=(3000, 2)), rng.normal(0.1, 1.0, size=(2500, 2))
    ref[::50, 0] = np.nan  # missing values are allowed
    kwargs = {"seed": 5, "max_rows": 400, "n_estimators": 30}
    first = domain_classifier_test(ref, cur, ["x", "y"], **kwargs)  # type: ignore[arg-type]
    again = domain_classifier_test(ref, cur, ["x", "y"], **kwargs)  # type: ignore[arg-type]
    assert first == again
    assert (first.n_reference, first.n_current) == (400, 400)
    assert len(first.top_features) == 2
    one_feature = domain_classifier_test(ref[:, 0], cur[:, 0], ["x"], n_estimators=10)
    assert one_feature.top_features[0][0] == "x"
    with pytest.raises(ValueError, match="do not match"):
        domain_classifier_test(ref, cur, ["x"])
    with pytest.raises(ValueError, match="at least 2 rows"):
        domain_classifier_test(ref[:1], cur, ["x", "y"])


# --- MMD --------------------------------------------------------------------------------------


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 written out from Gretton et al. (2012), eq. 3, with scipy distances."""
    sigma2 = np.median(pdist(np.vstack((x, y)), "sqeuclidean"))
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma2))  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * k(x, y).mean()
    )


def test_mmd_statistic_matches_the_formula() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(40, 5)), rng.standard_t(3, size=(55, 5))
    r = mmd_test(x, y, n_permutations=50)
    assert isinstance(r, DriftTestResult)
    assert r.test == "mmd"
    assert r.statistic == pytest.approx(brute_force_mmd2(x, y), rel=1e-9)


def test_mmd_detects_a_mean_shift_in_embeddings() -> None:
    rng = np.random.default_rng(7)
    for shift in (0.25, 0.5):
        x = rng.normal(size=(300, 32))
        y = rng.normal(size=(300, 32))
        y[:, :8] += shift  # a quarter of the dimensions move
        r = mmd_test(x, y, seed=1)
        assert r.drifted
        assert r.statistic > r.threshold
        assert r.p_value == pytest.approx(1 / 201)


def test_mmd_no_drift_rate_over_seeds() -> None:
    seeds = range(60)
    results = []
    for seed in seeds:
        rng = np.random.default_rng([seed, 2])
        results.append(mmd_test(rng.normal(size=(120, 32)), rng.normal(size=(100, 32)), seed=seed))
    assert sum(r.drifted for r in results) <= binom.ppf(0.999, len(seeds), 0.05)
    assert np.mean([r.p_value for r in results]) == pytest.approx(0.5, abs=0.12)


def test_mmd_is_seeded_and_bounded() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(900, 4)), rng.normal(size=(700, 4))
    assert mmd_test(x, y, seed=3) == mmd_test(x, y, seed=3)
    small = mmd_test(x, y, seed=3, max_rows=50, n_permutations=20)
    assert small.p_value is not None and small.p_value >= 1 / 21
    with pytest.raises(ValueError, match="dimensions"):
        mmd_test(x, y[:, :3])
    same = np.ones((10, 3))
    assert not mmd_test(same, same, n_permutations=10).drifted  # zero median distance
