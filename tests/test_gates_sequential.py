"""Regression rules on accumulated evidence (online): the sequential check through the gate."""

from __future__ import annotations

import pytest

from govloop.gates import Evidence, MetricValue, judge, parse_policy
from govloop.stats.sequential import sequential_drop

POLICY = parse_policy(
    """
name: online
rules:
  - {kind: regression, metric: accuracy, margin: 0.01}
"""
)
BASE = {"accuracy": MetricValue(value=0.9, n=20000, successes=18000)}


def _online(successes: int, n: int, looks: int, **fields: object) -> Evidence:
    window = {"accuracy": MetricValue(value=0.5, n=10, successes=5)}  # one window: not judged
    acc = {"accuracy": MetricValue(value=successes / n, n=n, successes=successes)}
    return Evidence.model_validate(
        {"metrics": window, "baseline": BASE, "cumulative": acc, "looks": looks, **fields}
    )


def test_a_drop_in_the_accumulated_counts_fails_with_a_readable_detail() -> None:
    report = judge(POLICY, _online(670, 800, 4)).rules[0]
    expected = sequential_drop(
        670, 800, alpha=0.05, margin=0.01, base_successes=18000, base_n=20000
    )
    assert report.outcome == "fail"
    assert report.observed == pytest.approx(670 / 800)
    assert report.evidence["evalue"] == pytest.approx(expected.evalue)
    assert report.evidence["threshold_evalue"] == 40.0
    assert report.evidence["n"] == 800 and report.evidence["looks"] == 4
    assert report.detail.startswith(
        "accuracy 0.900 -> 0.838 over 800 labels in 4 windows: the drop"
    )
    assert report.detail.endswith(
        ": the drop beyond 0.01 is significant under continuous monitoring (e-value 468 >= 40)"
    )  # the example of docs/gates.md
    assert report.op == "no significant drop" and report.threshold == 0.01


def test_no_drop_passes_and_the_window_alone_is_not_judged() -> None:
    report = judge(POLICY, _online(722, 800, 4)).rules[0]
    assert report.outcome == "pass"
    assert "no significant drop beyond 0.01 under continuous monitoring" in report.detail
    # offline (no accumulated evidence), the same window is the fixed-sample test
    one_look = judge(POLICY, Evidence(metrics={"accuracy": BASE["accuracy"]}, baseline=BASE))
    assert one_look.rules[0].evidence["method"].startswith("exact unconditional")


def test_warn_alpha_and_error_rate_mirror() -> None:
    warn = parse_policy(
        "name: w\nrules:\n  - {kind: regression, metric: accuracy, alpha: 0.001, warn_alpha: 0.2}"
    )
    # strong enough for 1/0.1 but not for 1/0.0005
    s, n = 690, 800
    strict = sequential_drop(s, n, alpha=0.001, base_successes=18000, base_n=20000)
    loose = sequential_drop(s, n, alpha=0.2, base_successes=18000, base_n=20000)
    assert not strict.rejected and loose.rejected
    assert judge(warn, _online(s, n, 4)).rules[0].outcome == "warn"
    err = parse_policy("name: e\nrules:\n  - {kind: regression, metric: error_rate}")
    ev = Evidence(
        baseline={"error_rate": MetricValue(value=0.1, n=20000, successes=2000)},
        cumulative={"error_rate": MetricValue(value=0.15, n=800, successes=120)},
        looks=4,
    )
    report = judge(err, ev).rules[0]
    assert report.outcome == "fail"
    assert report.evidence["higher_is_better"] is False
    assert "(lower is better)" in report.detail


def test_inconclusive_without_counts_or_baseline() -> None:
    no_base = _online(700, 800, 4).model_copy(update={"baseline": None})
    assert judge(POLICY, no_base).rules[0].outcome == "inconclusive"
    stderr_only = _online(670, 800, 4).model_copy(
        update={"baseline": {"accuracy": MetricValue(value=0.9, stderr=0.002)}}
    )
    assert judge(POLICY, stderr_only).rules[0].outcome == "fail"  # a normal bound
    value_only = _online(670, 800, 4).model_copy(
        update={"baseline": {"accuracy": MetricValue(value=0.9)}}
    )
    assert judge(POLICY, value_only).rules[0].outcome == "inconclusive"
    latency = parse_policy("name: l\nrules:\n  - {kind: regression, metric: latency_p95_ms}")
    ev = Evidence(
        baseline={"latency_p95_ms": MetricValue(value=100.0, stderr=1.0)},
        cumulative={"latency_p95_ms": MetricValue(value=120.0)},
        looks=2,
    )
    report = judge(latency, ev).rules[0]
    assert report.outcome == "inconclusive"
    assert "cannot be tested under continuous monitoring" in report.detail


def test_min_samples_on_a_rate_counts_the_accumulated_labels_online() -> None:
    policy = parse_policy(
        """
name: m
rules:
  - {kind: min_samples, metric: accuracy, value: 500}
  - {kind: regression, metric: accuracy, margin: 0.01}
"""
    )
    enough = judge(policy, _online(670, 800, 4))
    assert enough.rules[0].outcome == "pass" and enough.outcome == "fail"
    assert (
        enough.rules[0].detail == "800 samples behind accuracy accumulated in 4 windows, 500 needed"
    )
    few = judge(policy, _online(200, 250, 1))
    assert few.rules[0].outcome == "inconclusive" and few.outcome == "inconclusive"
