"""The exact two-sample test: scipy oracles, brute-force sizes, monotonicity, the gate's uses."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import barnard_exact, binom

from govloop.gates import Evidence, MetricValue, RegressionRule, Rule, judge, parse_policy
from govloop.gates.checks import check_metric_rule
from govloop.stats import two_sample
from govloop.stats.fleet import holm
from govloop.stats.significance import adjusted_p_values
from govloop.stats.two_sample import (
    _reduce,
    exact_drop,
    rejection_region,
    smallest_p_value,
)
from govloop.stats.two_sample import (
    _score as _statistic,
)


@pytest.mark.parametrize("seed", range(12))
def test_margin_zero_is_barnards_test(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # ordered by the score statistic (scipy's pooled z at margin 0), the search for the
    # supremum over the nuisance must find scipy's Barnard p-value
    monkeypatch.setattr(two_sample, "_statistic", two_sample._score)
    rng = np.random.default_rng(seed)
    nb, nc = (int(x) for x in rng.integers(3, 30, 2))
    kb, kc = int(rng.integers(0, nb + 1)), int(rng.integers(0, nc + 1))
    ref = barnard_exact([[kc, kb], [nc - kc, nb - kb]], alternative="less", n=200).pvalue
    ours = exact_drop(kb, nb, kc, nc).p_value
    # scipy's optimiser can stop just short of the supremum (seed 0: 0.040170 against
    # 0.040190, which a grid of 20,001 nuisance values confirms): never above ours
    assert ref * (1 - 1e-7) - 1e-12 <= ours <= ref * 1.001 + 1e-12


def _mle(d, xa: int, xb: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The constrained MLE by numerical maximisation: the closed forms' oracle."""
    lo = d.p_a_low

    def nll(p: float) -> float:
        q = float(np.clip(d.g(p), 1e-300, 1 - 1e-16))
        return -(binom.logpmf(xa, d.n_a, p) + binom.logpmf(xb, d.n_b, q))

    p = minimize_scalar(nll, bounds=(max(lo, 1e-12), 1 - 1e-12), method="bounded").x
    return p, float(d.g(p))


@pytest.mark.parametrize(("margin", "relative"), [(0.05, False), (0.1, True), (0.0, True)])
def test_statistic_uses_the_constrained_mle(margin: float, relative: bool) -> None:
    d, _, _ = _reduce(0, 40, 0, 30, margin, relative, True)
    for xa, xb in [(30, 20), (35, 10), (20, 25), (5, 2)]:
        pa, pb = _mle(d, xa, xb)
        g = d.param * (xa / 40) if relative else xa / 40 - margin
        var = pb * (1 - pb) / 30 + (d.param**2 if relative else 1) * pa * (1 - pa) / 40
        expected = (xb / 30 - g) / math.sqrt(var)
        assert float(_statistic(d, np.array([xa]), np.array([xb]))[0]) == pytest.approx(
            expected, rel=1e-4
        )


@pytest.mark.parametrize(
    ("margin", "relative", "higher"),
    [(0.0, False, True), (0.05, False, True), (0.1, True, True), (0.1, True, False)],
)
def test_statistic_is_monotone_in_each_count(margin: float, relative: bool, higher: bool) -> None:
    d, _, _ = _reduce(0, 25, 0, 35, margin, relative, higher)
    xa, xb = np.meshgrid(np.arange(d.n_a + 1), np.arange(d.n_b + 1), indexing="ij")
    t = _statistic(d, xa, xb)
    assert (np.diff(t, axis=1) >= -1e-12).all()  # increases with B
    assert (np.diff(t, axis=0) <= 1e-12).all()  # decreases with A


def _brute_size(nb: int, nc: int, pb: float, pc: float, alpha: float, **kw: object) -> float:
    """The exact size by enumerating every outcome through exact_drop itself."""
    total = 0.0
    for kb, kc in itertools.product(range(nb + 1), range(nc + 1)):
        if exact_drop(kb, nb, kc, nc, **kw).p_value < alpha:  # type: ignore[arg-type]
            total += binom.pmf(kb, nb, pb) * binom.pmf(kc, nc, pc)
    return total


@pytest.mark.parametrize(
    ("kw", "pb", "pc"),
    [
        ({"margin": 0.1}, 0.7, 0.6),
        ({"margin": 0.1, "relative": True}, 0.8, 0.72),
        ({"margin": 0.1, "higher_is_better": False}, 0.2, 0.3),
        ({"margin": 0.2, "relative": True, "higher_is_better": False}, 0.3, 0.36),
    ],
)
def test_region_matches_enumeration_and_is_within_alpha(
    kw: dict[str, object], pb: float, pc: float
) -> None:
    nb, nc, alpha = 12, 15, 0.1
    region = rejection_region(nb, nc, alpha, **kw)  # type: ignore[arg-type]
    brute = _brute_size(nb, nc, pb, pc, alpha, **kw)
    assert region.size(pb, pc) == pytest.approx(brute, abs=1e-12)
    # the size's supremum over the whole null, on a fine grid of true rates, is <= alpha
    grid = np.linspace(0, 1, 201)
    for p in grid:
        for q in grid:
            null = (
                (
                    q >= (1 - kw["margin"]) * p if kw.get("relative") else q >= p - kw["margin"]  # type: ignore[operator]
                )
                if kw.get("higher_is_better", True)
                else (
                    q <= (1 + kw["margin"]) * p if kw.get("relative") else q <= p + kw["margin"]  # type: ignore[operator]
                )
            )
            if null and (p * 20).is_integer() and (q * 20).is_integer():
                assert region.size(p, q) <= alpha + 1e-12, (p, q)


@pytest.mark.parametrize("alpha", [0.05, 0.0005])
@pytest.mark.parametrize(("margin", "relative"), [(0.0, False), (0.01, False), (0.02, True)])
@pytest.mark.parametrize("higher", [True, False])
def test_exact_type_one_on_a_grid_of_cells(
    alpha: float, margin: float, relative: bool, higher: bool
) -> None:
    for nb, nc in [(50, 50), (50, 1000), (1000, 50), (200, 200)]:
        region = rejection_region(nb, nc, alpha, margin, relative, higher)
        for acc in (0.5, 0.8, 0.95, 0.99):
            rate = acc if higher else 1 - acc
            if higher:
                cur = (1 - margin) * rate if relative else rate - margin
            else:
                cur = (1 + margin) * rate if relative else rate + margin
            assert region.size(rate, cur) <= alpha, (nb, nc, acc)


def test_the_p_value_moves_the_right_way() -> None:
    ps = [exact_drop(90, 100, k, 100).p_value for k in range(70, 95)]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(ps))
    with_margin = [exact_drop(90, 100, 80, 100, margin=m).p_value for m in (0, 0.02, 0.05)]
    assert with_margin == sorted(with_margin)


def test_a_perfect_small_baseline_is_not_a_certainty() -> None:
    # the audit's case: the z-test's unpooled se is 0 here and it failed 60 % at the boundary
    region = rejection_region(50, 10000, 0.05, 0.01)
    assert region.size(1.0, 0.99) <= 0.05


def test_too_small_is_inconclusive_and_says_why() -> None:
    assert smallest_p_value(5, 5) > 0.0005
    ev = Evidence(
        metrics={"acc": MetricValue(value=0.0, n=5, successes=0)},
        baseline={"acc": MetricValue(value=1.0, n=5, successes=5)},
    )
    report = check_metric_rule(RegressionRule(kind="regression", metric="acc", alpha=0.0005), ev)
    assert report.outcome == "inconclusive"
    assert "too few samples for the rule: baseline n = 5, candidate n = 5" in report.detail
    assert check_metric_rule(RegressionRule(kind="regression", metric="acc"), ev).outcome == "fail"


def test_a_known_n_makes_a_proportion_a_count() -> None:
    ev = Evidence(
        metrics={"t/acc": MetricValue(value=860 / 1000, n=1000, stderr=0.011)},
        baseline={"t/acc": MetricValue(value=0.9, n=1000, stderr=0.0095)},
    )
    report = check_metric_rule(RegressionRule(kind="regression", metric="t/acc"), ev)
    assert report.evidence["method"].startswith("exact")


def test_zero_or_skewed_standard_errors_are_inconclusive() -> None:
    rule = RegressionRule(kind="regression", metric="acc")
    zero = Evidence(
        metrics={"acc": MetricValue(value=0.9, stderr=0.01)},
        baseline={"acc": MetricValue(value=1.0, stderr=0.0)},
    )
    report = check_metric_rule(rule, zero)
    assert report.outcome == "inconclusive" and "standard error is 0" in report.detail
    near_one = Evidence(
        metrics={"acc": MetricValue(value=0.97, stderr=0.024)},
        baseline={"acc": MetricValue(value=0.99, stderr=0.001)},
    )
    report = check_metric_rule(rule, near_one)
    assert report.outcome == "inconclusive" and "too near 0 or 1" in report.detail


def test_adjusted_p_values_agree_with_holm() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.random(8) ** 3
        adj = np.array(adjusted_p_values(list(p)))
        assert ((adj <= 0.05) == holm(p, 0.05)).all()


def test_holm_over_a_pattern() -> None:
    tasks = {f"t{i}/acc": (900, 880) for i in range(20)}
    tasks["t0/acc"] = (900, 850)
    ev = Evidence(
        metrics={
            k: MetricValue(value=c / 1000, n=1000, successes=c) for k, (_, c) in tasks.items()
        },
        baseline={
            k: MetricValue(value=b / 1000, n=1000, successes=b) for k, (b, _) in tasks.items()
        },
    )
    holm_ = check_metric_rule(RegressionRule(kind="regression", metric="t*/acc"), ev)
    none = check_metric_rule(
        RegressionRule(kind="regression", metric="t*/acc", correction="none"), ev
    )
    checks = {c["metric"]: c for c in holm_.evidence["checks"]}
    assert checks["t0/acc"]["outcome"] == "fail"  # p ~ 1e-4, x 20 still below 0.05
    assert checks["t1/acc"]["outcome"] == "pass"  # p ~ 0.08 raw, 1 adjusted
    assert checks["t1/acc"]["p_adjusted"] >= checks["t1/acc"]["p_value"]
    assert checks["t0/acc"]["family_size"] == 20 and checks["t0/acc"]["correction"] == "holm"
    assert sum(c["outcome"] == "fail" for c in none.evidence["checks"]) == 1


def test_min_samples_counts_labels_not_predictions() -> None:
    # the docs' case: 500 predictions, 5 of them labelled
    policy = parse_policy(
        "name: q\nrules:\n"
        "  - {kind: min_samples, metric: accuracy, value: 200}\n"
        "  - {metric: accuracy, op: '>=', value: 0.9}\n"
    )
    ev = Evidence(
        metrics={
            "count": MetricValue(value=500.0),
            "labelled_count": MetricValue(value=5.0),
            "accuracy": MetricValue(value=0.6, n=5, successes=3),
        }
    )
    verdict = judge(policy, ev)
    assert verdict.outcome == "inconclusive"
    assert verdict.rules[0].detail == "5 samples behind accuracy, 200 needed"
    labelled = Rule(kind="min_samples", metric="labelled_count", value=5)
    assert check_metric_rule(labelled, ev).outcome == "pass"
    lighteval = Evidence(metrics={"acc": MetricValue(value=0.7, stderr=0.01)})
    report = check_metric_rule(Rule(kind="min_samples", metric="acc", value=10), lighteval)
    assert report.outcome == "inconclusive" and "no sample count" in report.detail
