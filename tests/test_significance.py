"""Regression significance: scipy oracles, hand-worked cases, and false-fail rates by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2_contingency, norm, ttest_ind_from_stats
from scipy.stats import t as t_dist

from govloop.gates import Evidence, MetricValue, RegressionRule, judge, parse_policy
from govloop.gates.checks import MIN_EFFECTIVE, MIN_RARER, check_metric_rule
from govloop.stats import mean_estimate, proportion_drop, stderr_drop
from govloop.stats.significance import bounded_p_values, bounded_stderr_drop, skew_corrected_p
from govloop.stats.two_sample import rejection_region


@pytest.mark.parametrize("seed", range(20))
def test_pooled_two_proportion_z_squared_is_pearson_chi_square(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = (int(x) for x in rng.integers(50, 5000, size=2))
    k1, k2 = int(rng.integers(1, n1)), int(rng.integers(1, n2))
    t = proportion_drop(k1, n1, k2, n2)
    chi2, p_two_sided, _, _ = chi2_contingency([[k1, n1 - k1], [k2, n2 - k2]], correction=False)
    assert t.z**2 == pytest.approx(chi2, rel=1e-9)
    # one-sided: half the two-sided p in the direction of the drop, the rest otherwise
    expected = p_two_sided / 2 if t.drop > 0 else 1 - p_two_sided / 2
    assert t.p_value == pytest.approx(expected, rel=1e-7, abs=1e-300)
    assert t.drop == pytest.approx(k1 / n1 - k2 / n2)


def test_unpooled_with_margin_by_hand() -> None:
    # 900/1000 -> 860/1000, margin 0.01: se = sqrt(.9*.1/1000 + .86*.14/1000)
    t = proportion_drop(900, 1000, 860, 1000, margin=0.01)
    se = math.sqrt(0.9 * 0.1 / 1000 + 0.86 * 0.14 / 1000)
    assert t.stderr == pytest.approx(se)
    assert t.z == pytest.approx((0.04 - 0.01) / se)
    assert t.p_value == pytest.approx(norm.sf((0.04 - 0.01) / se))
    assert t.method == "two-proportion z-test (unpooled, margin)"


def test_stderr_z_test_against_scipy() -> None:
    # the fixture's winogrande: 0.701 (0.012862) -> 0.652 (0.013382)
    t = stderr_drop(0.701, 0.012862, 0.652, 0.013382)
    se = math.sqrt(0.012862**2 + 0.013382**2)
    assert t.stderr == pytest.approx(se)
    assert t.z == pytest.approx(0.049 / se)
    assert t.p_value == pytest.approx(norm.sf(0.049 / se))
    assert round(t.p_value, 4) == 0.0041
    # the same numbers with a margin: z = (0.049 - 0.02) / se
    assert stderr_drop(0.701, 0.012862, 0.652, 0.013382, margin=0.02).p_value == pytest.approx(
        norm.sf(0.029 / se)
    )


def test_lower_is_better_flips_the_direction() -> None:
    up = stderr_drop(100.0, 2.0, 110.0, 2.0, higher_is_better=False)  # latency rose by 10
    assert up.drop == 10 and up.significant(0.05)
    down = stderr_drop(100.0, 2.0, 90.0, 2.0, higher_is_better=False)
    assert down.drop == -10 and not down.significant(0.05)
    assert proportion_drop(10, 1000, 40, 1000, higher_is_better=False).significant(0.01)


def test_zero_noise() -> None:
    assert stderr_drop(0.9, 0.0, 0.8, 0.0).p_value == 0.0  # certainly worse
    assert stderr_drop(0.9, 0.0, 0.95, 0.0).p_value == 1.0
    same = stderr_drop(0.9, 0.0, 0.9, 0.0)
    assert math.isnan(same.p_value) and not same.significant(0.05)
    assert proportion_drop(10, 10, 10, 10).p_value != proportion_drop(10, 10, 10, 10).p_value


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="n > 0"):
        proportion_drop(1, 0, 1, 10)
    with pytest.raises(ValueError, match="between 0 and n"):
        proportion_drop(11, 10, 1, 10)
    with pytest.raises(ValueError, match="negative"):
        stderr_drop(1, -0.1, 1, 0.1)


def test_mean_estimate_against_numpy() -> None:
    rng = np.random.default_rng(7)
    values, ses = rng.random(6), rng.random(6) / 10
    mean, se = mean_estimate(list(values), list(ses))
    assert mean == pytest.approx(np.mean(values))
    assert se == pytest.approx(np.sqrt(np.sum(ses**2)) / 6)


# --- the gate's exact error rates ---------------------------------------------------------------

ALPHA = 0.05
TRIALS = 2000
#: a fail rate above alpha by more than 3 binomial standard errors is a bug, not bad luck
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / TRIALS)

REGRESSION = parse_policy("""
name: release
rules:
  - {kind: regression, metric: accuracy, alpha: 0.05}
  - {kind: regression, metric: accuracy, margin: 0.01, name: with-margin}
""")


def _outcomes(kb: int, nb: int, kc: int, nc: int) -> list[str]:
    ev = Evidence(
        metrics={"accuracy": MetricValue(value=kc / nc, n=nc, successes=kc)},
        baseline={"accuracy": MetricValue(value=kb / nb, n=nb, successes=kb)},
    )
    return [r.outcome for r in judge(REGRESSION, ev).rules]


def test_the_gate_fails_exactly_in_the_rejection_region() -> None:
    """So the region's exact size is the gate's false-fail rate."""
    rng = np.random.default_rng(5)
    plain, margin = rejection_region(60, 80, ALPHA), rejection_region(60, 80, ALPHA, 0.01)
    for kb, kc in zip(rng.binomial(60, 0.8, 150), rng.binomial(80, 0.7, 150), strict=True):
        got = _outcomes(int(kb), 60, int(kc), 80)
        assert got == [
            "fail" if plain.rejects(kb, kc) else "pass",
            "fail" if margin.rejects(kb, kc) else "pass",
        ], (kb, kc)


def test_no_true_change_fails_at_most_alpha() -> None:
    size = rejection_region(1000, 1000, ALPHA).size(0.8, 0.8)
    assert 0.04 <= size <= ALPHA  # valid, and not absurdly conservative either
    # inside the margin the false-fail rate is far below alpha
    assert rejection_region(1000, 1000, ALPHA, 0.01).size(0.8, 0.8) <= ALPHA / 2


def test_a_drop_exactly_at_the_margin_fails_at_most_alpha() -> None:
    assert rejection_region(4000, 4000, ALPHA, 0.01).size(0.8, 0.79) <= ALPHA


def test_a_real_drop_fails() -> None:
    assert rejection_region(2000, 2000, ALPHA).size(0.8, 0.75) >= 0.95  # z-test: about 0.99
    assert rejection_region(2000, 2000, ALPHA, 0.01).size(0.8, 0.75) >= 0.80


def _pair(base: float, now: float, se: float) -> Evidence:
    return Evidence(
        metrics={"acc": MetricValue(value=now, stderr=se)},
        baseline={"acc": MetricValue(value=base, stderr=se)},
    )


def test_no_true_change_from_standard_errors_fails_at_most_alpha() -> None:
    # Lighteval-like: each run reports an estimate and its standard error
    rng = np.random.default_rng(4)
    se = 0.013
    base, now = rng.normal(0.70, se, TRIALS), rng.normal(0.70, se, TRIALS)
    policy = parse_policy("name: r\nrules:\n  - {kind: regression, metric: acc}\n")
    fails = sum(
        judge(policy, _pair(b, c, se)).outcome == "fail" for b, c in zip(base, now, strict=True)
    )
    assert fails / TRIALS <= ALPHA + TOLERANCE
    # a real drop of 0.05 is 2.7 standard errors of the difference: the z-test's power is
    # 0.86; the bounded test (its arithmetic, n_eff from the values) gives up a little
    b, c = rng.normal(0.70, se, TRIALS), rng.normal(0.65, se, TRIALS)
    real = sum(judge(policy, _pair(x, y, se)).outcome == "fail" for x, y in zip(b, c, strict=True))
    n_b, n_c = b * (1 - b) / se**2, c * (1 - c) / se**2
    want = int((bounded_p_values(b, se, c, se, b - c, 0.0, n_b, n_c) < ALPHA).sum())
    assert real == want
    assert real / TRIALS >= 0.8


# --- standard errors of metrics in [0, 1]: Welch t with a skewness bound -------------------


def test_bounded_test_at_one_half_is_welch_with_a_half_step_correction() -> None:
    # at v = 0.5 the skewness bound is 0; the half step (1/n_eff_b + 1/n_eff_c) / 2 is taken
    # off the drop, and the rest is Welch's t-test (scipy, one-sided)
    for seb, sec, nb, nc, margin in ((0.01, 0.02, 2500, 625, -0.03), (0.02, 0.02, 80, 90, -0.05)):
        got = bounded_stderr_drop(0.5, seb, 0.5, sec, margin, baseline_n=nb, current_n=nc)
        step = (seb**2 + sec**2) / 0.25 / 2
        ref = ttest_ind_from_stats(
            0.5 - margin - step,
            seb * math.sqrt(nb),
            nb,
            0.5,
            sec * math.sqrt(nc),
            nc,
            equal_var=False,
            alternative="greater",
        )
        assert got.z == pytest.approx((0 - margin) / math.hypot(seb, sec))
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_skew_corrected_p_inverts_the_cornish_fisher_critical_value() -> None:
    q = np.linspace(-1.0, 5.0, 13)  # c(q) increases above its vertex, -3 / (2 g) <= -1.5
    for g in (0.0, 0.05, 0.3, 1.0):
        z = q + g * (2 * q * q + 1) / 6
        assert skew_corrected_p(z, g, 40) == pytest.approx(t_dist.sf(q, 40), rel=1e-9)
    assert float(skew_corrected_p(-50.0, 1.0, 40)) == 1.0  # no root: far below 0


def _gate_p(vb: float, sb: float, vc: float, sc: float, n: int | None) -> tuple[str, float]:
    ev = Evidence(
        metrics={"acc": MetricValue(value=vc, stderr=sc, n=n)},
        baseline={"acc": MetricValue(value=vb, stderr=sb, n=n)},
    )
    report = check_metric_rule(RegressionRule(kind="regression", metric="acc"), ev)
    return report.outcome, report.evidence.get("p_value", math.nan)


def test_the_gate_uses_the_bounded_test_for_values_in_0_1() -> None:
    rng = np.random.default_rng(8)
    for _ in range(40):
        vb, vc = rng.uniform(0.3, 0.8, 2)
        sb, sc = rng.uniform(0.005, 0.015, 2)
        for n in (None, 3000):
            size = n if n is not None else (vb * (1 - vb) / sb**2, vc * (1 - vc) / sc**2)
            nb, nc = size if isinstance(size, tuple) else (size, size)
            want = float(bounded_p_values(vb, sb, vc, sc, vb - vc, 0.0, nb, nc))
            assert _gate_p(vb, sb, vc, sc, n)[1] == pytest.approx(want, rel=1e-12)
    # a metric outside [0, 1] keeps the z-test
    ev = Evidence(
        metrics={"lat": MetricValue(value=110.0, stderr=2.0)},
        baseline={"lat": MetricValue(value=100.0, stderr=2.0)},
    )
    rule = RegressionRule(kind="regression", metric="lat", higher_is_better=False)
    report = check_metric_rule(rule, ev)
    assert report.evidence["p_value"] == pytest.approx(norm.sf(10 / math.hypot(2, 2)))


def test_the_cell_the_z_test_failed_now_holds_alpha() -> None:
    # skewed scores (Beta, mean 0.8, concentration 5), n_b = 100, n_c = 1000, n known, no
    # change: the z-test fails about 1.3 alpha here; the bounded test, which tests every
    # trial here (none refused), at most alpha
    rng = np.random.default_rng(12)
    trials, nb, nc, a, b = 12000, 100, 1000, 0.8 * 5, 0.2 * 5
    xs, ys = rng.beta(a, b, (trials, nb)), rng.beta(a, b, (trials, nc))
    vb, vc = xs.mean(1), ys.mean(1)
    sb, sc = xs.std(1, ddof=1) / math.sqrt(nb), ys.std(1, ddof=1) / math.sqrt(nc)
    tested = np.ones(trials, dtype=bool)
    for v, se, n in ((vb, sb, nb), (vc, sc, nc)):
        rarer = np.minimum(v, 1 - v)
        tested &= (v * (1 - v) / se**2 * rarer >= MIN_EFFECTIVE) & (n * rarer >= MIN_RARER)
    assert tested.all()
    new = bounded_p_values(vb, sb, vc, sc, vb - vc, 0.0, nb, nc) < ALPHA
    old = norm.sf((vb - vc) / np.hypot(sb, sc)) < ALPHA  # the old gate's z-test
    tol = 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)
    assert new.mean() <= ALPHA + tol < old.mean()
    rule = RegressionRule(kind="regression", metric="acc")
    for i in range(0, trials, 100):  # the arithmetic above is the gate's
        ev = Evidence(
            metrics={"acc": MetricValue(value=vc[i], stderr=sc[i], n=nc)},
            baseline={"acc": MetricValue(value=vb[i], stderr=sb[i], n=nb)},
        )
        assert (check_metric_rule(rule, ev).outcome == "fail") == bool(new[i]), i


def test_a_small_sample_near_1_is_refused_when_n_is_known() -> None:
    # 50 scores near 1 whose rare low ones were not seen: n * (1 - v) = 0.5 < MIN_RARER
    ev = Evidence(
        metrics={"acc": MetricValue(value=0.97, stderr=0.002, n=1000)},
        baseline={"acc": MetricValue(value=0.99, stderr=0.0005, n=50)},
    )
    report = check_metric_rule(RegressionRule(kind="regression", metric="acc"), ev)
    assert report.outcome == "inconclusive" and "on n = 50" in report.detail
