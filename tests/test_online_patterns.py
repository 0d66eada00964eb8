"""Online pattern rules: the family-wise error over a pattern's matches, under continuous
monitoring (no I/O: accumulated evidence built in memory, judged by the gate's own checks).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from govloop.gates import Evidence, MetricValue
from govloop.gates.checks import check_metric_rule
from govloop.gates.rules import RegressionRule
from govloop.stats.sequential import anytime_p_value, log_evalue, sequential_drop

ALPHA = 0.05


def _rule(correction: str = "holm", **kw: object) -> RegressionRule:
    return RegressionRule(kind="regression", metric="task*/acc", correction=correction, **kw)  # type: ignore[arg-type]


def _evidence(base: np.ndarray, n_base: int, cum: np.ndarray, n: int, look: int) -> Evidence:
    names = [f"task{i:02d}/acc" for i in range(len(base))]
    baseline = {
        m: MetricValue(value=float(k) / n_base, n=n_base, successes=int(k))
        for m, k in zip(names, base, strict=True)
    }
    acc = {
        m: MetricValue(value=float(s) / n, n=n, successes=int(s))
        for m, s in zip(names, cum, strict=True)
    }
    return Evidence(metrics=acc, baseline=baseline, cumulative=acc, looks=look)


def _ever_fails(
    rule: RegressionRule,
    rng: np.random.Generator,
    p: np.ndarray,
    *,
    n_base: int,
    window: int,
    looks: int,
    p_cur: np.ndarray | None = None,
) -> int:
    """The look (1-based) of the rule's first fail on one simulated deployment (baseline
    rates ``p``, candidate rates ``p_cur``, the same by default), 0 for never."""
    base = rng.binomial(n_base, p)
    now = p if p_cur is None else p_cur
    cum = np.cumsum(rng.binomial(window, now, size=(looks, len(p))), axis=0)
    for t in range(1, looks + 1):
        ev = _evidence(base, n_base, cum[t - 1], window * t, t)
        if check_metric_rule(rule, ev).outcome == "fail":
            return t
    return 0


#: A small baseline, large windows: each unchanged metric fails alone over 1 % of the time
#: in 6 looks, so 20 of them judged each at alpha fail together far more often than alpha.
SETTING = {"n_base": 100, "window": 5000, "looks": 6}
K, DEPLOYMENTS = 20, 120


def _family_fails(correction: str, seed: int) -> int:
    rng = np.random.default_rng(seed)
    rule = _rule(correction)
    p = np.full(K, 0.7)
    return sum(_ever_fails(rule, rng, p, **SETTING) > 0 for _ in range(DEPLOYMENTS))


#: Fails above this count reject "P(ever fail) <= alpha" at the 0.001 level.
CEILING = int(binom.isf(0.001, DEPLOYMENTS, ALPHA))


@pytest.mark.parametrize("seed", [1, 2])
def test_pattern_over_unchanged_metrics_ever_fails_at_most_alpha(seed: int) -> None:
    assert _family_fails("holm", seed) <= CEILING


def test_each_match_at_alpha_alone_exceeds_alpha() -> None:
    """The same simulation with the matches judged one by one (the behaviour before the
    correction): the bound above fails, so the test above can tell the two apart."""
    assert _family_fails("none", 1) > CEILING


def test_a_real_drop_on_one_of_the_matches_still_fails() -> None:
    rng = np.random.default_rng(7)
    p = np.full(K, 0.9)
    dropped = p.copy()
    dropped[3] = 0.8
    rule = _rule()
    first = [
        _ever_fails(rule, rng, p, n_base=5000, window=200, looks=30, p_cur=dropped)
        for _ in range(20)
    ]
    assert all(t > 0 for t in first)
    assert np.median(first) <= 10


def test_the_failing_match_is_the_dropped_one_and_reports_its_p_values() -> None:
    base = np.full(5, 4500)
    cum = np.full(5, 1800)
    cum[2] = 1600  # 0.90 -> 0.80 over 2,000 labels
    report = check_metric_rule(_rule(), _evidence(base, 5000, cum, 2000, 10))
    assert report.outcome == "fail"
    checks = {c["metric"]: c for c in report.evidence["checks"]}
    bad = checks["task02/acc"]
    assert bad["outcome"] == "fail"
    assert bad["correction"] == "holm" and bad["family_size"] == 5
    assert bad["p_adjusted"] == pytest.approx(5 * bad["p_value"])  # the smallest of 5
    assert bad["p_adjusted"] <= ALPHA
    assert {"evalue", "threshold_evalue", "baseline_bound", "allowed"} <= set(bad)
    assert "holm-adjusted over 5" in bad["detail"]
    assert all(checks[m]["outcome"] == "pass" for m in checks if m != "task02/acc")


def test_correction_none_and_a_single_match_judge_on_the_e_value_alone() -> None:
    base, cum = np.full(3, 4500), np.full(3, 1800)
    cum[0] = 1600
    none = check_metric_rule(_rule("none"), _evidence(base, 5000, cum, 2000, 10))
    assert all("p_adjusted" not in c for c in none.evidence["checks"])
    one = RegressionRule(kind="regression", metric="task00/acc")
    single = check_metric_rule(one, _evidence(base, 5000, cum, 2000, 10))
    assert "p_value" not in single.evidence and single.outcome == "fail"
    assert "e-value" in single.detail and "adjusted" not in single.detail


def test_an_untestable_match_counts_in_the_family_with_p_one() -> None:
    ev = _evidence(np.full(3, 4500), 5000, np.full(3, 1800), 2000, 10)
    assert ev.cumulative is not None
    ev.cumulative["task01/acc"] = MetricValue(value=0.9)  # no counts
    report = check_metric_rule(_rule(), ev)
    checks = {c["metric"]: c for c in report.evidence["checks"]}
    assert checks["task01/acc"]["outcome"] == "inconclusive"
    assert checks["task00/acc"]["family_size"] == 3


@pytest.mark.parametrize(
    ("s", "n", "kw"),
    [
        (680, 800, {"base_successes": 18000, "base_n": 20000}),
        (690, 800, {"base_successes": 18000, "base_n": 20000, "margin": 0.01}),
        (110, 800, {"base_successes": 2000, "base_n": 20000, "higher_is_better": False}),
        (1500, 2000, {"base_value": 0.8, "base_stderr": 0.01}),
        (
            300,
            400,
            {"base_successes": 180, "base_n": 200, "margin": 0.05, "margin_type": "relative"},
        ),
    ],
)
def test_the_p_value_is_the_smallest_alpha_that_rejects(s: int, n: int, kw: dict) -> None:
    p = anytime_p_value(s, n, **kw)
    assert 1e-12 < p < 1
    assert sequential_drop(s, n, alpha=p, **kw).rejected
    assert not sequential_drop(s, n, alpha=p / 1.001, **kw).rejected
    # and rejection is monotone in alpha on either side of it
    assert all(sequential_drop(s, n, alpha=a, **kw).rejected for a in np.geomspace(p, 1, 30))
    below = np.geomspace(1e-9, p / 1.001, 30)
    assert not any(sequential_drop(s, n, alpha=a, **kw).rejected for a in below)


def test_no_evidence_of_a_drop_is_p_one_and_overwhelming_evidence_is_the_floor() -> None:
    assert anytime_p_value(1800, 2000, base_successes=4500, base_n=5000) == 1.0
    assert anytime_p_value(0, 2000, base_successes=5000, base_n=5000) == 1e-12


def test_the_e_value_does_not_fall_as_the_allowed_level_rises() -> None:
    """What monotonicity in alpha rests on: M(S, n; q) non-decreasing in q wherever M > 1."""
    q = np.linspace(0.001, 0.999, 1500)
    for n in (1, 3, 10, 100, 1000, 20000, 300000):
        for s in np.unique(np.round(np.linspace(0, 1, 31) * n).astype(int)):
            lm = log_evalue(s, n, q)
            finite = np.isfinite(lm[1:]) & np.isfinite(lm[:-1])
            step = np.where(finite, lm[1:] - np.where(finite, lm[:-1], 0), 0)
            rising = step >= -1e-9 * np.maximum(1, np.abs(np.where(finite, lm[1:], 0)))
            assert rising[lm[1:] > 0].all(), (n, s)
            # once M is infinite (beyond float range) it stays so as q rises
            assert not (np.isinf(lm[:-1]) & np.isfinite(lm[1:]) & (lm[:-1] > 0)).any(), (n, s)
