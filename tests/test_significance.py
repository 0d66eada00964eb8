"""Regression significance: scipy oracles, hand-worked cases, and false-fail rates by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2_contingency, norm

from govloop.gates import Evidence, MetricValue, judge, parse_policy
from govloop.stats import mean_estimate, proportion_drop, stderr_drop
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
    # a real drop of 0.05 is 2.7 standard errors of the difference: power 0.86
    drops = rng.normal(0.70, se, TRIALS), rng.normal(0.65, se, TRIALS)
    power = norm.sf(norm.isf(ALPHA) - 0.05 / (se * math.sqrt(2)))
    real = sum(
        judge(policy, _pair(b, c, se)).outcome == "fail" for b, c in zip(*drops, strict=True)
    )
    assert abs(real / TRIALS - power) <= 3 * math.sqrt(power * (1 - power) / TRIALS)
