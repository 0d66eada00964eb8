"""The sequential drop test: the closed form against numeric integration, hand-worked cases,
the martingale identity, and Ville's bound by simulation under continuous monitoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import beta, binomtest

from govloop.stats.sequential import (
    PRIOR_SIZES,
    allowed_level,
    exceeds,
    log_evalue,
    lower_bound,
    sequential_drop,
    upper_bound,
)


def _by_quadrature(s: int, n: int, q: float, sizes: tuple[float, ...]) -> float:
    total = 0.0
    for n0 in sizes:
        a, b = q * n0, (1 - q) * n0

        def ratio(t: float, a: float = a, b: float = b) -> float:
            log_lr = s * math.log(t / q) + (n - s) * math.log((1 - t) / (1 - q))
            return math.exp(log_lr) * float(beta.pdf(t, a, b))

        value, _ = quad(ratio, 0, q, limit=400, points=[0.5 * q, 0.9 * q, 0.99 * q])
        total += value / float(beta.cdf(q, a, b))
    return total / len(sizes)


@pytest.mark.parametrize("seed", range(12))
def test_closed_form_is_the_mixture_integral(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    q = float(rng.uniform(0.05, 0.97))
    s = int(rng.binomial(n, max(q - rng.uniform(0, 0.1), 0.01)))
    sizes = tuple(float(x) for x in rng.choice([2, 4, 16, 64, 256, 1024], size=3, replace=False))
    got = float(np.exp(log_evalue(s, n, q, sizes)))
    assert got == pytest.approx(_by_quadrature(s, n, q, sizes), rel=1e-6)


def test_hand_worked_uniform_prior() -> None:
    # q = 0.5 and n0 = 2: a uniform prior on (0, 0.5).  One failure:
    # int_0^.5 (1 - t)/.5 dt / .5 = 1.5; one success: int_0^.5 t/.5 dt / .5 = 0.5
    fail = float(np.exp(log_evalue(0, 1, 0.5, (2,))))
    win = float(np.exp(log_evalue(1, 1, 0.5, (2,))))
    assert fail == pytest.approx(1.5)
    assert win == pytest.approx(0.5)
    assert 0.5 * fail + 0.5 * win == pytest.approx(1.0)  # a martingale at p = q
    assert float(np.exp(log_evalue(0, 0, 0.5, (2,)))) == pytest.approx(1.0)  # M_0 = 1


@pytest.mark.parametrize("seed", range(8))
def test_martingale_at_the_boundary_and_supermartingale_above_it(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    q = float(rng.uniform(0.1, 0.95))
    n = int(rng.integers(0, 3000))
    s = int(rng.binomial(n, q)) if n else 0
    now = float(np.exp(log_evalue(s, n, q)))
    up, down = (float(np.exp(log_evalue(x, n + 1, q))) for x in (s + 1, s))
    assert q * up + (1 - q) * down == pytest.approx(now, rel=1e-9)
    p = min(q + 0.03, 0.999)
    assert p * up + (1 - p) * down < now


def test_edges_of_the_allowed_level() -> None:
    assert log_evalue(0, 100, 0.0) == 0.0  # nothing is below 0: no evidence
    assert log_evalue(0, 100, -0.2) == 0.0
    assert log_evalue(99, 100, 1.0) == math.inf  # H0 p = 1 refuted by one failure
    assert log_evalue(100, 100, 1.0) == 0.0
    assert np.all(np.isfinite(log_evalue([0, 5, 10**6], [10, 10, 10**6], 0.9999)))
    assert log_evalue(0, 0, 0.3) == pytest.approx(0.0)


@pytest.mark.parametrize(("k", "n"), [(900, 1000), (1, 50), (49, 50), (18000, 20000), (0, 10)])
def test_clopper_pearson_bounds_against_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lower_bound(0.025, successes=k, n=n) == pytest.approx(ci.low, abs=1e-12)
    assert upper_bound(0.025, successes=k, n=n) == pytest.approx(ci.high, abs=1e-12)
    assert lower_bound(0.025, value=0.9, stderr=0.01) == pytest.approx(0.9 - 1.959964 * 0.01)
    with pytest.raises(ValueError):
        lower_bound(0.025, value=0.9)


def test_margins_and_mirroring() -> None:
    assert allowed_level(0.9, 0.02, "relative", True) == pytest.approx(0.882)
    assert allowed_level(0.1, 0.02, "absolute", False) == pytest.approx(0.12)
    # an error rate's test is the accuracy test of the mirrored counts
    acc = sequential_drop(650, 800, alpha=0.05, margin=0.01, base_successes=9000, base_n=10000)
    err = sequential_drop(
        150,
        800,
        alpha=0.05,
        margin=0.01,
        higher_is_better=False,
        base_successes=1000,
        base_n=10000,
    )
    assert err.evalue == pytest.approx(acc.evalue, rel=1e-9)
    assert err.level == pytest.approx(1 - acc.level)
    assert acc.rejected and err.rejected
    assert acc.threshold == pytest.approx(40.0)
    with pytest.raises(ValueError):
        sequential_drop(1, 2, alpha=0.05, base_successes=1, base_n=2, baseline_share=1.0)


def _ever(s: np.ndarray, n: np.ndarray, q: np.ndarray | float, alpha: float) -> np.ndarray:
    return np.asarray(exceeds(s, n, q, 1 / alpha).any(axis=1))


def test_ville_bound_under_continuous_monitoring() -> None:
    # at the boundary p = q (the worst case of H0), looking every 10 labels up to 3,000:
    # a fixed-sample test at 0.05 would fail most paths; Ville allows at most 5 %
    rng = np.random.default_rng(7)
    paths, step, looks, q = 4000, 10, 300, 0.9
    s = np.cumsum(rng.binomial(step, q, size=(paths, looks)), axis=1)
    n = step * np.arange(1, looks + 1)
    rate = _ever(s, n, q, 0.05).mean()
    se = math.sqrt(0.05 * 0.95 / paths)
    assert rate <= 0.05 + 3 * se  # 0.0603: a statistic that is not a supermartingale fails
    assert rate >= 0.005  # and the test is not vacuous: the martingale does get near 1/alpha


def test_unchanged_model_never_fails_over_many_windows() -> None:
    # the whole procedure: the baseline's bound and the candidate's martingale, each a
    # fresh draw of an unchanged model, 300 windows of 200 labels
    rng = np.random.default_rng(11)
    reps, windows, size, p, n_b = 2000, 300, 200, 0.8, 2000
    k_b = rng.binomial(n_b, p, size=reps)
    level = np.array([lower_bound(0.025, successes=int(k), n=n_b) for k in k_b])
    s = np.cumsum(rng.binomial(size, p, size=(reps, windows)), axis=1)
    n = size * np.arange(1, windows + 1)
    rate = _ever(s, n, level[:, None], 0.025).mean()
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_a_real_drop_fails_within_four_windows_with_a_large_baseline() -> None:
    rng = np.random.default_rng(3)
    reps, windows, size = 400, 12, 200
    k_b = rng.binomial(20000, 0.90, size=reps)
    level = np.array([lower_bound(0.025, successes=int(k), n=20000) for k in k_b])
    s = np.cumsum(rng.binomial(size, 0.85, size=(reps, windows)), axis=1)
    hit = log_evalue(s, size * np.arange(1, windows + 1), level[:, None]) >= math.log(40)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, windows + 1)
    assert np.median(first) <= 4
    assert PRIOR_SIZES[0] < 16 < PRIOR_SIZES[-1]


@pytest.mark.parametrize("seed", range(4))
def test_exceeds_decides_as_the_evalue_does(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    n = rng.integers(0, 5000, size=3000)
    q = rng.uniform(-0.05, 1.02, size=3000)
    s = rng.binomial(n, np.clip(q - rng.uniform(-0.05, 0.08, size=3000), 0, 1))
    for threshold in (0.5, 1.0, 2.0, 20.0, 1000.0):
        expected = log_evalue(s, n, q) >= math.log(threshold)
        assert (exceeds(s, n, q, threshold) == expected).all()
        assert expected.any() and not expected.all()
    assert exceeds(0, 0, 0.5, 1.0).item()  # M_0 = 1 reaches a threshold of 1


@pytest.mark.parametrize("seed", range(3))
def test_the_vectorised_steps_decide_as_sequential_drop(seed: int) -> None:
    # benchmarks/validity/online_gates.py composes these steps over many deployments
    rng = np.random.default_rng(900 + seed)
    seen = set()
    for _ in range(60):
        higher = bool(rng.integers(0, 2))
        kind = "absolute" if rng.integers(0, 2) else "relative"
        margin = float(rng.choice([0.0, 0.01, 0.02]))
        n_b, n = int(rng.integers(50, 20000)), int(rng.integers(1, 5000))
        p = float(rng.uniform(0.05, 0.95))
        k_b = int(rng.binomial(n_b, p))
        s = int(rng.binomial(n, np.clip(p + rng.uniform(-0.08, 0.08), 0, 1)))
        test = sequential_drop(
            s, n, alpha=0.05, margin=margin, margin_type=kind, higher_is_better=higher,
            base_successes=k_b, base_n=n_b,
        )  # fmt: skip
        side = lower_bound if higher else upper_bound
        level = allowed_level(side(0.025, successes=k_b, n=n_b), margin, kind, higher)
        got = exceeds(s, n, level, 40.0) if higher else exceeds(n - s, n, 1 - level, 40.0)
        assert bool(got) == test.rejected
        seen.add(test.rejected)
    assert seen == {True, False}


def test_extreme_counts() -> None:
    # a baseline with no successes allows anything: its bound is 0, nothing is below it
    none = sequential_drop(0, 500, alpha=0.05, base_successes=0, base_n=100)
    assert none.baseline_bound == 0.0 and none.evalue == 1.0 and not none.rejected
    # a perfect baseline: the exact bound alpha_b ** (1 / n), and all-wrong candidates fail
    perfect = sequential_drop(0, 50, alpha=0.05, base_successes=100, base_n=100)
    assert perfect.baseline_bound == pytest.approx(0.025 ** (1 / 100))
    assert perfect.rejected
    assert not sequential_drop(50, 50, alpha=0.05, base_successes=100, base_n=100).rejected
    # an error rate whose baseline is all errors: the upper bound is 1, the level above it
    worst = sequential_drop(
        500, 500, alpha=0.05, higher_is_better=False, base_successes=100, base_n=100
    )
    assert worst.baseline_bound == 1.0 and worst.level >= 1 and not worst.rejected
    # nothing accumulated yet: M = 1
    assert sequential_drop(0, 0, alpha=0.05, base_successes=90, base_n=100).evalue == 1.0
