"""Gate policies and the pure evaluator: hand-worked verdicts, hashes and error locations."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from govloop.errors import GovloopError, PolicyError
from govloop.gates import (
    DriftSignal,
    Evidence,
    FairnessFinding,
    MetricValue,
    Policy,
    Rule,
    Sample,
    check,
    combine,
    evaluate,
    evaluate_rule,
    judge,
    judge_snapshot,
    load_policies,
    load_policy,
    metrics_from_snapshots,
    parse_policy,
    policy_json_schema,
    pool_baselines,
    register_fairness_evaluator,
    unregister_fairness_evaluator,
)
from govloop.gates.inputs import parse_results
from govloop.gates.rules import DriftRule, FairnessRule, RegressionRule, SafetyRule
from govloop.schemas import GateResult, MetricSnapshot, decode

QUALITY = """
name: quality
rules:
  - {kind: min_samples, metric: count, value: 100}
  - {name: accuracy-floor, metric: accuracy, op: ">=", value: 0.9}
  - {name: latency-ceiling, metric: latency_p95_ms, op: "<=", value: 200, severity: warn}
"""

GOOD = {"count": 500, "accuracy": 0.95, "latency_p95_ms": 120}


def policy_error(text: str, source: str = "p.yaml") -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source=source)
    assert isinstance(info.value, GovloopError)
    return str(info.value)


# --- one rule ----------------------------------------------------------------------------------

# threshold 2, observed 1 (below), 2 (equal), 3 (above): the verdict worked out by hand
OPERATORS = {
    ">=": ("fail", "pass", "pass"),
    ">": ("fail", "fail", "pass"),
    "<=": ("pass", "pass", "fail"),
    "<": ("pass", "fail", "fail"),
    "==": ("fail", "pass", "fail"),
    "!=": ("pass", "fail", "pass"),
}


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator(op: str) -> None:
    rule = Rule(metric="m", op=op, value=2)  # type: ignore[arg-type]
    observed = [evaluate_rule(rule, {"m": x}).outcome for x in (1, 2.0, 3)]
    assert tuple(observed) == OPERATORS[op]


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator_parses_from_yaml(op: str) -> None:
    policy = parse_policy(f'name: q\nrules:\n  - {{metric: m, op: "{op}", value: 2}}\n')
    assert policy.rules[0].op == op
    assert policy.rules[0].name == f"m {op} 2"


def test_rule_result_evidence() -> None:
    rule = Rule(metric="accuracy", value=0.9)
    result = evaluate_rule(rule, {"accuracy": 0.8125, "other": 1})
    assert result.model_dump() == {
        "rule": "accuracy >= 0.9",
        "metric": "accuracy",
        "op": ">=",
        "threshold": 0.9,
        "observed": 0.8125,
        "outcome": "fail",
        "detail": "accuracy = 0.8125, required >= 0.9",
    }


def test_severity_warn_and_fail() -> None:
    metrics = {"latency_p95_ms": 250}
    fail = Rule(metric="latency_p95_ms", op="<=", value=200)
    warn = Rule(metric="latency_p95_ms", op="<=", value=200, severity="warn")
    assert evaluate_rule(fail, metrics).outcome == "fail"
    assert evaluate_rule(warn, metrics).outcome == "warn"
    assert evaluate_rule(warn, {"latency_p95_ms": 200}).outcome == "pass"
    assert evaluate(Policy(name="p", rules=[warn]), metrics)[0] == "warn"
    assert evaluate(Policy(name="p", rules=[fail]), metrics)[0] == "fail"


def test_min_samples_rule() -> None:
    rule = Rule(kind="min_samples", metric="count", value=100)
    assert rule.name == "min_samples 100"
    short = evaluate_rule(rule, {"count": 20})
    assert (short.outcome, short.detail) == ("inconclusive", "20 samples, 100 needed")
    assert evaluate_rule(rule, {"count": 100}).outcome == "pass"
    assert evaluate_rule(rule, {}).outcome == "inconclusive"


def test_missing_metric_is_inconclusive() -> None:
    rule = Rule(metric="accuracy", value=0.9)
    for metrics in ({}, {"accuracy": None}, {"Accuracy": 1.0}):
        result = evaluate_rule(rule, metrics)
        assert (result.outcome, result.observed) == ("inconclusive", None)
        assert result.detail == "no value for accuracy"


# --- the gate's outcome ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "outcome"),
    [
        (GOOD, "pass"),
        # 4. a violated warn rule warns
        (GOOD | {"latency_p95_ms": 320}, "warn"),
        # 3. a missing metric beats warn
        (GOOD | {"accuracy": None, "latency_p95_ms": 320}, "inconclusive"),
        (GOOD | {"accuracy": None}, "inconclusive"),
        (GOOD | {"latency_p95_ms": None}, "inconclusive"),
        # 2. a violated fail rule beats a missing metric and warn
        (GOOD | {"accuracy": 0.7}, "fail"),
        (GOOD | {"accuracy": 0.7, "latency_p95_ms": None}, "fail"),
        (GOOD | {"accuracy": 0.7, "latency_p95_ms": 320}, "fail"),
        # 1. too few samples beats everything, even a failing accuracy
        (GOOD | {"count": 20, "accuracy": 0.7}, "inconclusive"),
        (GOOD | {"count": 99, "accuracy": 0.7, "latency_p95_ms": 999}, "inconclusive"),
        (GOOD | {"count": 20}, "inconclusive"),
        ({"accuracy": 0.7, "latency_p95_ms": 120}, "inconclusive"),
        # the boundary of min_samples counts as enough
        (GOOD | {"count": 100, "accuracy": 0.7}, "fail"),
    ],
)
def test_outcome_precedence(metrics: dict[str, float | None], outcome: str) -> None:
    policy = parse_policy(QUALITY)
    got, results = evaluate(policy, metrics)
    assert got == outcome
    assert [r.rule for r in results] == ["min_samples 100", "accuracy-floor", "latency-ceiling"]
    assert combine(policy, results) == outcome


def test_min_samples_failing_accuracy_still_reports_the_rule() -> None:
    outcome, results = evaluate(parse_policy(QUALITY), GOOD | {"count": 20, "accuracy": 0.7})
    assert outcome == "inconclusive"
    assert [r.outcome for r in results] == ["inconclusive", "fail", "pass"]


def test_rule_names_must_be_distinct() -> None:
    # combine() finds a rule's kind by name: two rules with one name would let a failing
    # threshold rule pass for a min_samples rule, turning "fail" into "inconclusive"
    message = policy_error(
        "name: q\n"
        "rules:\n"
        "  - {name: floor, metric: accuracy, value: 0.9}\n"
        "  - {name: floor, kind: min_samples, metric: count, value: 10}\n"
    )
    assert message == "p.yaml:3: rules: two rules share the name 'floor'"
    with pytest.raises(ValueError, match=r"share the name 'accuracy >= 0\.9'"):
        Policy(name="p", rules=[Rule(metric="accuracy", value=0.9)] * 2)


# --- policies ----------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = parse_policy("name: q\nrules:\n  - {metric: accuracy, value: 0.9}\n")
    assert policy.models == ["*"]
    assert policy.description == ""
    rule = policy.rules[0]
    assert (rule.kind, rule.op, rule.severity, rule.name) == (
        "threshold",
        ">=",
        "fail",
        "accuracy >= 0.9",
    )


def test_policy_is_frozen() -> None:
    policy = parse_policy(QUALITY)
    with pytest.raises(ValueError, match="frozen"):
        policy.name = "other"  # type: ignore[misc]


REORDERED = """
rules:
  - {value: 100, metric: count, kind: min_samples}
  - {severity: fail, value: 0.9, op: ">=", metric: accuracy, name: accuracy-floor}
  - value: 200
    severity: warn
    name: latency-ceiling
    op: "<="
    metric: latency_p95_ms
models: ["*"]
description: ""
name: quality
"""


def test_content_hash_is_stable_under_key_order_and_explicit_defaults() -> None:
    a, b = parse_policy(QUALITY), parse_policy(REORDERED)
    assert a == b
    assert a.content_hash == b.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", a.content_hash)


def test_content_hash_is_the_sha256_of_canonical_json() -> None:
    policy = parse_policy("name: q\nrules:\n  - {metric: accuracy, value: 0.9}\n")
    canonical = (
        '{"description":"","models":["*"],"name":"q","rules":[{"kind":"threshold",'
        '"metric":"accuracy","name":"accuracy >= 0.9","op":">=","severity":"fail","value":0.9}]}'
    )
    assert json.loads(canonical) == policy.canonical()
    assert policy.content_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_an_online_baseline_is_part_of_the_hash() -> None:
    plain = parse_policy("name: q\nrules:\n  - {metric: accuracy, value: 0.9}\n")
    pinned = parse_policy("name: q\nbaseline: prod@3\nrules:\n  - {metric: accuracy, value: 0.9}\n")
    assert pinned.canonical()["baseline"] == "prod@3"
    assert pinned.content_hash != plain.content_hash


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("value: 0.9", "value: 0.91"),
        ('op: ">="', 'op: ">"'),
        ("name: quality", "name: quality2"),
        ("severity: warn", "severity: fail"),
        ("value: 100", "value: 101"),
    ],
)
def test_content_hash_changes_with_any_value(old: str, new: str) -> None:
    assert QUALITY.count(old) == 1
    changed = parse_policy(QUALITY.replace(old, new))
    assert parse_policy(QUALITY).content_hash != changed.content_hash


def test_applies_to_glob_patterns() -> None:
    policy = parse_policy(
        'name: q\nmodels: ["iris-*", "churn", "fraud-v?", "[ab]-model"]\n'
        "rules:\n  - {metric: accuracy, value: 0.9}\n"
    )
    for name in ("iris-v1", "iris-", "churn", "fraud-v2", "a-model", "b-model"):
        assert policy.applies_to(name), name
    for name in ("iris", "IRIS-v1", "churn-2", "xchurn", "fraud-v10", "c-model", ""):
        assert not policy.applies_to(name), name
    everyone = parse_policy("name: q\nrules:\n  - {metric: accuracy, value: 0.9}\n")
    assert everyone.applies_to("anything") and everyone.applies_to("")
    nobody = parse_policy("name: q\nmodels: []\nrules:\n  - {metric: accuracy, value: 0.9}\n")
    assert not nobody.applies_to("anything")


# --- errors name file, line and field ----------------------------------------------------------


def test_wrong_type() -> None:
    assert policy_error("name: q\nrules:\n  - metric: accuracy\n    value: high\n") == (
        "p.yaml:4: rules.0.value: Input should be a valid number, "
        "unable to parse string as a number"
    )
    assert policy_error("name: q\nmodels: iris\nrules:\n  - {metric: a, value: 1}\n") == (
        "p.yaml:2: models: Input should be a valid list"
    )


def test_unknown_key() -> None:
    text = "name: q\nrules:\n  - metric: accuracy\n    value: 0.9\n    treshold: 3\n"
    assert policy_error(text) == "p.yaml:5: rules.0.treshold: Extra inputs are not permitted"
    text = "name: q\nowner: me\nrules:\n  - {metric: accuracy, value: 0.9}\n"
    assert policy_error(text) == "p.yaml:2: owner: Extra inputs are not permitted"


def test_missing_rules() -> None:
    assert policy_error("name: q\ndescription: no rules\n") == "p.yaml:1: rules: Field required"
    assert policy_error("name: q\nrules: []\n") == (
        "p.yaml:2: rules: List should have at least 1 item after validation, not 0"
    )


def test_invalid_op() -> None:
    text = (
        "name: q\n"
        "rules:\n"
        "  - metric: accuracy\n"
        "    value: 0.9\n"
        "  - metric: latency\n"
        '    op: "=>"\n'
        "    value: 1\n"
    )
    assert policy_error(text) == (
        "p.yaml:6: rules.1.op: Input should be '>=', '>', '<=', '<', '==' or '!='"
    )


def test_min_samples_with_another_op() -> None:
    text = "name: q\nrules:\n  - {metric: a, value: 1}\n  - kind: min_samples\n    op: '>'\n"
    text += "    metric: count\n    value: 3\n"
    assert policy_error(text) == (
        "p.yaml:4: rules.1: a min_samples rule always means metric >= value; leave op out"
    )


def test_several_errors_each_on_its_line() -> None:
    text = (
        "name: ''\n"
        "rules:\n"
        "  - metric: accuracy\n"
        "    value: 0.9\n"
        "    severity: fatal\n"
        "  - value: 1\n"
    )
    assert policy_error(text).splitlines() == [
        "p.yaml:1: name: String should have at least 1 character",
        "p.yaml:5: rules.0.severity: Input should be 'fail' or 'warn'",
        "p.yaml:6: rules.1.metric: Field required",
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("- name: q\n- rules: []\n", 1),
        ("# a comment\n\n- a\n- b\n", 3),
        ("just a string\n", 1),
        ("name: q\n---\nname: r\n", None),
        ("", None),
    ],
)
def test_non_mapping_yaml(text: str, line: int | None) -> None:
    message = policy_error(text)
    if line is None:
        assert message.startswith("p.yaml:")
    else:
        assert message == f"p.yaml:{line}: a policy is a YAML mapping with 'name' and 'rules'"


def test_yaml_syntax_error() -> None:
    text = "name: q\nrules:\n  - metric: [accuracy\n    value: 0.9\n"
    assert policy_error(text) == "p.yaml:4: not valid YAML: expected ',' or ']', but got ':'"
    text = "name: q\nrules:\n  - metric: accuracy\n   value: 0.9\n"
    message = policy_error(text)
    assert message.startswith("p.yaml:4: not valid YAML: ")
    assert "\n" not in message


def test_load_policy_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "quality.yaml"
    path.write_text("name: q\nrules:\n  - metric: accuracy\n    op: '=<'\n    value: 1\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:4: rules.0.op: ")
    with pytest.raises(PolicyError, match=rf"^{re.escape(str(tmp_path / 'nope.yaml'))}: cannot"):
        load_policy(tmp_path / "nope.yaml")


def test_load_policies(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "b.yml").write_text("name: beta\nrules:\n  - {metric: accuracy, value: 0.8}\n")
    (folder / "a.yaml").write_text(QUALITY)
    (folder / "notes.txt").write_text("not a policy")
    single = tmp_path / "extra.yaml"
    single.write_text("name: extra\nrules:\n  - {metric: accuracy, value: 0.5}\n")

    assert [p.name for p in load_policies(str(folder))] == ["quality", "beta"]
    assert [p.name for p in load_policies(f" {single} ,{folder},")] == ["extra", "quality", "beta"]
    assert load_policies("") == []
    assert load_policies(" , ") == []


def test_load_policies_rejects_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(QUALITY)
    (tmp_path / "two.yaml").write_text(QUALITY.replace("0.9", "0.8"))
    with pytest.raises(PolicyError, match=r"^two policies share the name quality$"):
        load_policies(str(tmp_path))
    with pytest.raises(PolicyError, match="share the name quality"):
        load_policies(f"{tmp_path / 'one.yaml'},{tmp_path / 'one.yaml'}")


def test_load_policies_reports_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(QUALITY)
    (tmp_path / "b.yaml").write_text("name: b\nrules:\n  - {metric: x}\n")
    with pytest.raises(PolicyError) as info:
        load_policies(str(tmp_path))
    assert str(info.value) == f"{tmp_path / 'b.yaml'}:3: rules.0.value: Field required"


# --- snapshots ---------------------------------------------------------------------------------

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def snapshot(**overrides: object) -> MetricSnapshot:
    fields: dict[str, object] = {
        "event_id": "snap-1",
        "ts": T0 + timedelta(minutes=1, seconds=5),
        "model": "clf",
        "model_version": "7",
        "window_start": T0,
        "window_end": T0 + timedelta(minutes=1),
        "count": 200,
        "feedback_count": 100,
        "labelled_count": 80,
        "correct_count": 60,
        "positive_count": 10,
        "judged_count": 20,
        "accuracy": 0.75,
        "feedback_rate": 0.5,
        "positive_rate": 0.5,
        "latency_p50_ms": 40.0,
        "latency_p95_ms": 150.0,
    }
    return MetricSnapshot.model_validate(fields | overrides)


def test_judge_snapshot() -> None:
    policy = parse_policy(QUALITY)
    snap = snapshot()
    result = judge_snapshot(policy, snap)
    assert isinstance(result, GateResult)
    assert result.outcome == "fail"
    assert [r.outcome for r in result.rules] == ["pass", "fail", "pass"]
    assert (result.policy, result.policy_hash) == ("quality", policy.content_hash)
    assert (result.model, result.model_version) == ("clf", "7")
    assert result.trigger_event_id == "snap-1"
    assert (result.window_start, result.window_end, result.ts) == (
        snap.window_start,
        snap.window_end,
        snap.ts,
    )
    assert judge_snapshot(policy, snapshot(count=50)).outcome == "inconclusive"
    assert judge_snapshot(policy, snapshot(accuracy=None)).outcome == "inconclusive"
    assert judge_snapshot(policy, snapshot(accuracy=0.95)).outcome == "pass"
    assert judge_snapshot(policy, snapshot(accuracy=0.95, latency_p95_ms=201.0)).outcome == "warn"


def test_judge_snapshot_is_deterministic() -> None:
    policy = parse_policy(QUALITY)
    first = judge_snapshot(policy, snapshot())
    again = judge_snapshot(parse_policy(REORDERED), snapshot())
    assert again == first
    assert again.to_json() == first.to_json()
    assert re.fullmatch(r"[0-9a-f]{32}", first.event_id)
    assert decode("gates", first.to_json()) == first
    # a different snapshot or a different policy is a different decision
    assert judge_snapshot(policy, snapshot(event_id="snap-2")).event_id != first.event_id
    changed = parse_policy(QUALITY.replace("0.9", "0.7"))
    assert judge_snapshot(changed, snapshot()).event_id != first.event_id


# --- richer rule kinds on plain evidence ------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "lighteval"
EXAMPLES = Path(__file__).parent.parent / "examples" / "policies"


def mv(value: float | None, **kw: object) -> MetricValue:
    return MetricValue.model_validate({"value": value, **kw})


def regression(**kw: object) -> RegressionRule:
    return RegressionRule.model_validate({"kind": "regression", "metric": "acc", **kw})


def with_base(now: MetricValue, base: MetricValue | None, ref: str | None = None) -> Evidence:
    return Evidence(
        metrics={"acc": now}, baseline=None if base is None else {"acc": base}, baseline_ref=ref
    )


def test_regression_from_counts_by_hand() -> None:
    # 900/1000 -> 860/1000: pooled p 0.88, se 0.014533, z 2.752; the exact unconditional
    # test (ordered by the Agresti-Caffo z) gives p = 0.0030928, which a full enumeration
    # of the 1001 x 1001 outcomes on 2,000 nuisance values confirms
    report = check(
        regression(),
        with_base(mv(0.86, n=1000, successes=860), mv(0.9, n=1000, successes=900), "rel@2"),
    )
    assert report.outcome == "fail"
    assert report.evidence["p_value"] == pytest.approx(0.0030928, abs=1e-6)
    assert report.evidence["z"] == pytest.approx(2.7524, abs=1e-4)
    assert report.evidence["method"] == "exact unconditional test (difference)"
    assert (report.observed, report.threshold, report.op) == (0.86, 0.0, "no significant drop")
    assert report.detail == (
        "acc 0.9 -> 0.86: significant drop (drop 0.04, margin 0, z = 2.75, p = 0.0031 < 0.05)"
    )
    # the same drop with 100 per side is noise: z = 0.04 / 0.04596 = 0.87; the exact p by
    # enumerating all 101 x 101 outcomes at 2,000 nuisance values
    small = check(
        regression(), with_base(mv(0.86, n=100, successes=86), mv(0.9, n=100, successes=90))
    )
    assert small.outcome == "pass"
    x = np.arange(101)
    pa, pb = (x[:, None] + 1) / 102, (x[None, :] + 1) / 102
    t = (pb - pa) / np.sqrt(pb * (1 - pb) / 102 + pa * (1 - pa) / 102)
    extreme = t <= t[90, 86] + 1e-12
    reference = max(
        float(binom.pmf(x, 100, p) @ extreme @ binom.pmf(x, 100, p))
        for p in np.linspace(0.001, 0.999, 2000)
    )
    assert small.evidence["p_value"] == pytest.approx(reference, rel=1e-3)
    # warn_alpha turns a suggestive drop into a warning
    assert (
        check(
            regression(warn_alpha=0.3),
            with_base(mv(0.86, n=100, successes=86), mv(0.9, n=100, successes=90)),
        ).outcome
        == "warn"
    )
    assert (
        check(
            regression(severity="warn"),
            with_base(mv(0.86, n=1000, successes=860), mv(0.9, n=1000, successes=900)),
        ).outcome
        == "warn"
    )


def test_regression_margins_by_hand() -> None:
    now, base = mv(0.652, stderr=0.012862), mv(0.701, stderr=0.012862)
    se = math.sqrt(2) * 0.012862  # 0.018190
    absolute = check(regression(margin=0.03), with_base(now, base))
    assert absolute.evidence["z"] == pytest.approx((0.049 - 0.03) / se)
    assert absolute.outcome == "pass"  # z = 0.019 / 0.01819 = 1.045, p = 0.148
    # relative 10 % of 0.701 = 0.0701 allowed: the 0.049 drop is inside it
    relative = check(regression(margin=0.1, margin_type="relative"), with_base(now, base))
    assert relative.evidence["margin"] == pytest.approx(0.0701)
    assert relative.outcome == "pass"


def test_regression_lower_is_better() -> None:
    rule = regression(metric="lat", higher_is_better=False)
    ev = Evidence(metrics={"lat": mv(130.0, stderr=5.0)}, baseline={"lat": mv(100.0, stderr=5.0)})
    assert check(rule, ev).outcome == "fail"
    ev = Evidence(metrics={"lat": mv(90.0, stderr=5.0)}, baseline={"lat": mv(100.0, stderr=5.0)})
    assert check(rule, ev).outcome == "pass"


def test_regression_is_inconclusive_without_what_it_needs() -> None:
    cases = [
        (with_base(mv(0.8, stderr=0.01), None), "no baseline to compare with"),
        (
            Evidence(metrics={"acc": mv(0.8)}, baseline={}, baseline_ref="rel@1"),
            "no value for acc in baseline rel@1",
        ),
        (
            with_base(mv(0.8), mv(0.9)),
            "acc 0.9 -> 0.8: no standard errors or counts, significance cannot be tested",
        ),
        (
            with_base(mv(None, note="has no labelled events"), mv(0.9, stderr=0.01)),
            "acc has no labelled events",
        ),
    ]
    for evidence, detail in cases:
        report = check(regression(), evidence)
        assert (report.outcome, report.detail) == ("inconclusive", detail)


def test_metric_patterns_take_the_worst() -> None:
    ev = Evidence(
        metrics={"a/acc": mv(0.5, stderr=0.01), "b/acc": mv(0.8, stderr=0.01), "b/f1": mv(0.1)},
        baseline={"a/acc": mv(0.6, stderr=0.01), "b/acc": mv(0.8, stderr=0.01)},
    )
    report = check(regression(metric="*/acc"), ev)
    assert report.outcome == "fail" and report.metric == "*/acc"
    assert [c["metric"] for c in report.evidence["checks"]] == ["a/acc", "b/acc"]
    assert [c["outcome"] for c in report.evidence["checks"]] == ["fail", "pass"]
    assert report.detail.startswith("a/acc 0.6 -> 0.5: significant drop")
    floor = check(Rule(metric="*/acc", value=0.4), ev)
    assert (floor.outcome, floor.detail) == ("pass", "all 2 metrics matching '*/acc' pass")
    none = check(Rule(metric="c/*", value=0.4), ev)
    have = "the evidence has 3 metrics, e.g. 'a/acc', 'b/acc', 'b/f1'"
    assert (none.outcome, none.detail) == ("inconclusive", f"no metric matches 'c/*'; {have}")


def test_a_regression_pattern_that_matches_nothing_is_inconclusive() -> None:
    """It used to raise AttributeError (a regression rule has no ``value``)."""
    ev = Evidence(metrics={"gsm8k|0/em": mv(0.5, stderr=0.01)}, baseline={})
    report = check(regression(metric="lighteval|*/*", margin=0.01), ev)
    assert (report.outcome, report.op, report.threshold) == (
        "inconclusive",
        "no significant drop",
        0.01,
    )
    assert report.detail == (
        "no metric matches 'lighteval|*/*'; the evidence has 1 metrics, e.g. 'gsm8k|0/em'"
    )
    empty = check(regression(metric="x*"), Evidence())
    assert empty.detail == "no metric matches 'x*'; the evidence has no metrics"


def drift(**kw: object) -> DriftRule:
    return DriftRule.model_validate({"kind": "drift", **kw})


def test_drift_rule() -> None:
    alerts = [
        DriftSignal(feature="age", severity="warning"),
        DriftSignal(feature="income", severity="critical"),
        DriftSignal(feature="plan", severity="info"),
    ]
    assert check(drift(), Evidence(drift_alerts=None)).outcome == "inconclusive"
    assert check(drift(), Evidence(drift_alerts=[])).outcome == "pass"
    report = check(drift(), Evidence(drift_alerts=alerts))
    assert (report.outcome, report.observed) == ("fail", 2.0)  # info is below warning
    assert report.detail == (
        "2 active drift alert(s) of severity >= warning: age, income; at most 0 allowed"
    )
    assert check(drift(max_alerts=2), Evidence(drift_alerts=alerts)).outcome == "pass"
    assert (
        check(drift(min_severity="critical", max_alerts=1), Evidence(drift_alerts=alerts)).outcome
        == "pass"
    )
    only_age = check(drift(features=["a*"], severity="warn"), Evidence(drift_alerts=alerts))
    assert (only_age.outcome, only_age.evidence["features"]) == ("warn", ["age"])


def safety(**kw: object) -> SafetyRule:
    return SafetyRule.model_validate({"kind": "safety", "max_rate": 0.25, **kw})


SAMPLES = [
    Sample(id="1", output="Sure, here it is.", flags={"refusal": False, "tox": 0.1}),
    Sample(id="2", output="I cannot help with that.", flags={"refusal": True, "tox": 0.7}),
    Sample(id="3", output="password: hunter2", flags={"refusal": False}),
    Sample(id="4", output="NO", flags={"tox": 0.9}),
]


def test_safety_rules_by_hand() -> None:
    ev = Evidence(samples=SAMPLES, metrics={"refusal_rate": mv(0.3, n=10, successes=3)})
    refusal = check(safety(flag="refusal"), ev)  # 1 of the 3 samples carrying the flag
    assert (refusal.outcome, refusal.observed) == ("fail", pytest.approx(1 / 3))
    assert refusal.evidence == {"n": 3, "flagged": 1, "examples": ["2"]}
    assert refusal.detail == "flag:refusal rate 0.3333 (1 of 3), at most 0.25 allowed"
    tox = check(safety(flag="tox", score_above=0.5, max_rate=0.5), ev)  # 0.7, 0.9 of 3
    assert (tox.outcome, tox.observed) == ("fail", pytest.approx(2 / 3))
    secret = check(safety(pattern=r"(?i)password\s*:"), ev)  # 1 of 4
    assert (secret.outcome, secret.observed, secret.rule) == ("pass", 0.25, "pattern rate <= 0.25")
    upper = check(safety(validator="builtins:str.isupper", max_rate=0.0), ev)
    assert (upper.outcome, upper.evidence["examples"]) == ("fail", ["4"])
    rate = check(safety(metric="refusal_rate"), ev)
    assert (rate.outcome, rate.observed, rate.evidence) == ("fail", 0.3, {"n": 10, "successes": 3})


def test_safety_rules_inconclusive() -> None:
    assert check(safety(flag="refusal"), Evidence()).detail == "no per-sample outputs to check"
    assert check(safety(flag="other"), Evidence(samples=SAMPLES)).detail == (
        "no sample carries the flag 'other'"
    )
    missing = check(safety(validator="no_such_module_x:fn"), Evidence(samples=SAMPLES))
    assert missing.outcome == "inconclusive"
    assert missing.detail.startswith("cannot load validator no_such_module_x:fn: ")
    raising = check(safety(validator="builtins:int"), Evidence(samples=SAMPLES))
    assert raising.outcome == "inconclusive"
    assert raising.detail.startswith("validator:builtins:int raised ValueError on sample 1: ")


def test_fairness_without_and_with_an_evaluator() -> None:
    rule = FairnessRule(kind="fairness", evaluator="parity_t", attribute="gender", max_gap=0.1)
    report = check(rule, Evidence())
    assert report.outcome == "inconclusive"
    assert report.detail == (
        "no fairness evaluator 'parity_t' is registered (govloop.gates.register_fairness_evaluator)"
    )

    def parity(r: FairnessRule, ev: Evidence) -> FairnessFinding:
        gap = ev.metrics["gap"].value
        if gap is None:
            return FairnessFinding(None, None, "no gap")
        return FairnessFinding(gap, gap > (r.max_gap or 0), f"gap {gap:g}")

    register_fairness_evaluator("parity_t", parity)
    try:
        assert check(rule, Evidence.from_metrics({"gap": 0.2})).outcome == "fail"
        assert check(rule, Evidence.from_metrics({"gap": 0.05})).outcome == "pass"
        assert check(rule, Evidence.from_metrics({"gap": None})).outcome == "inconclusive"
    finally:
        unregister_fairness_evaluator("parity_t")
    explicit = check(rule, Evidence.from_metrics({"gap": 0.2}), fairness={"parity_t": parity})
    assert (explicit.outcome, explicit.observed, explicit.detail) == ("fail", 0.2, "gap 0.2")


def test_combine_with_every_kind() -> None:
    policy = parse_policy("""
name: all-kinds
rules:
  - {kind: min_samples, metric: count, value: 2}
  - {kind: regression, metric: acc}
  - {kind: drift, severity: warn}
  - {kind: safety, flag: refusal, max_rate: 0.5}
  - {kind: fairness, evaluator: nobody_registered, severity: warn}
""")
    base = {"acc": mv(0.9, n=1000, successes=900)}
    good = Evidence(
        metrics={"count": mv(4.0), "acc": mv(0.9, n=1000, successes=900)},
        baseline=base,
        drift_alerts=[],
        samples=SAMPLES,
    )
    verdict = judge(policy, good)
    # an unregistered fairness evaluator is inconclusive, whatever its severity
    assert [r.outcome for r in verdict.rules] == ["pass", "pass", "pass", "pass", "inconclusive"]
    assert verdict.outcome == "inconclusive"
    assert [r.kind for r in verdict.rules] == [
        "min_samples",
        "regression",
        "drift",
        "safety",
        "fairness",
    ]
    assert verdict.policy_hash == policy.content_hash
    dropped = good.model_copy(
        update={"metrics": {"count": mv(4.0), "acc": mv(0.8, n=1000, successes=800)}}
    )
    assert judge(policy, dropped).outcome == "fail"
    too_few = dropped.model_copy(update={"metrics": {**dropped.metrics, "count": mv(1.0)}})
    assert judge(policy, too_few).outcome == "inconclusive"


def test_judge_snapshot_tests_rates_from_counts_against_a_baseline() -> None:
    policy = parse_policy(
        "name: r\nrules:\n  - {kind: regression, metric: accuracy}\n  - {kind: drift}\n"
    )
    snap = snapshot(labelled_count=400, correct_count=300, accuracy=0.75)
    base = {"accuracy": mv(0.9, n=400, successes=360)}
    result = judge_snapshot(policy, snap, baseline=base, drift_alerts=[])
    assert result.outcome == "fail"
    assert [r.outcome for r in result.rules] == ["fail", "pass"]
    assert judge_snapshot(policy, snap).outcome == "inconclusive"


def test_metrics_from_snapshots_sum_counts() -> None:
    a = snapshot(count=100, labelled_count=50, correct_count=40, accuracy=0.8)
    b = snapshot(event_id="snap-2", count=300, labelled_count=150, correct_count=90, accuracy=0.6)
    merged = metrics_from_snapshots([a, b])
    assert merged["accuracy"] == mv(130 / 200, n=200, successes=130)  # not the mean 0.7
    assert merged["count"].value == 400
    assert merged["error_rate"] == mv(1 - 130 / 200, n=200, successes=70)
    assert "latency_p95_ms" not in merged  # quantiles do not merge
    single = metrics_from_snapshots([a])
    assert single["latency_p95_ms"].value == 150.0
    assert single["accuracy"] == mv(0.8, n=50, successes=40)


def test_pool_baselines() -> None:
    counts = pool_baselines(
        [
            {"acc": mv(0.8, n=100, successes=80)},
            {"acc": mv(0.9, n=300, successes=270), "f1": mv(0.5)},
        ]
    )
    assert counts["acc"] == mv(0.875, n=400, successes=350)
    assert counts["f1"] == mv(0.5)
    errors = pool_baselines([{"acc": mv(0.7, stderr=0.03)}, {"acc": mv(0.8, stderr=0.04)}])
    assert errors["acc"].value == pytest.approx(0.75)
    assert errors["acc"].stderr == pytest.approx(math.sqrt((0.03**2 + 0.04**2) / 2))


# --- new rule kinds in YAML: errors name line and field ----------------------------------------


def test_unknown_kind_names_line_and_field() -> None:
    text = "name: q\nrules:\n  - {metric: a, value: 1}\n  - kind: regresion\n    metric: a\n"
    assert policy_error(text) == (
        "p.yaml:4: rules.1.kind: kind must be one of threshold, min_samples, regression, "
        "drift, safety, fairness"
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "  - kind: regression\n    metric: acc\n    alpha: 1.5\n",
            "p.yaml:5: rules.0.alpha: Input should be less than 1",
        ),
        (
            "  - kind: regression\n    metric: acc\n    margin_type: percent\n",
            "p.yaml:5: rules.0.margin_type: Input should be 'absolute' or 'relative'",
        ),
        (
            "  - kind: regression\n    metric: acc\n    warn_alpha: 0.01\n",
            "p.yaml:3: rules.0: warn_alpha must be larger than alpha",
        ),
        (
            "  - kind: safety\n    flag: refusal\n    pattern: x\n    max_rate: 0.1\n",
            "p.yaml:3: rules.0: a safety rule needs exactly one of "
            "metric, flag, pattern, validator",
        ),
        (
            "  - kind: safety\n    pattern: '(unclosed'\n    max_rate: 0.1\n",
            "p.yaml:3: rules.0: pattern is not a regular expression: missing ), unterminated "
            "subpattern at position 0",
        ),
        (
            "  - kind: safety\n    validator: not-a-path\n    max_rate: 0.1\n",
            "p.yaml:4: rules.0.validator: String should match pattern '^[\\w.]+:[\\w.]+$'",
        ),
        ("  - kind: safety\n    flag: refusal\n", "p.yaml:3: rules.0.max_rate: Field required"),
        (
            "  - kind: drift\n    max_alerts: -1\n",
            "p.yaml:4: rules.0.max_alerts: Input should be greater than or equal to 0",
        ),
        (
            "  - kind: fairness\n    attribute: gender\n",
            "p.yaml:3: rules.0.evaluator: Field required",
        ),
    ],
)
def test_new_kinds_errors(rule: str, message: str) -> None:
    assert policy_error("name: q\nrules:\n" + rule) == message


def test_example_policies_parse_and_match_the_json_schema() -> None:
    import jsonschema
    import yaml

    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert {p.name for p in paths} >= {"quality.yaml", "lighteval-release.yaml", "llm-safety.yaml"}
    for path in paths:
        load_policy(path)
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "q", "rules": [{"kind": "drift", "max_alerts": -1}]}, schema)


# --- offline inputs ---------------------------------------------------------------------------


def test_lighteval_fixture() -> None:
    data = (FIXTURES / "results_small-lm-1.1.json").read_bytes()
    loaded = parse_results(data, "r.json")
    assert loaded.kind == "lighteval" and loaded.model == "acme/small-lm-1.1"
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    m = loaded.evidence.metrics
    assert m["lighteval|winogrande|5/acc"] == mv(0.652, stderr=0.013382)
    # "all" is recomputed: the file's 0.0 standard errors are not believed
    assert m["all/acc"].value == pytest.approx((0.652 + 0.779) / 2)
    assert m["all/acc"].stderr == pytest.approx(math.hypot(0.013382, 0.009678) / 2)
    assert m["all/truthfulqa_mc1"] == mv(0.296, stderr=0.015971)
    assert len(m) == 9


def test_lighteval_fixtures_judged() -> None:
    now = parse_results((FIXTURES / "results_small-lm-1.1.json").read_bytes())
    before = parse_results((FIXTURES / "results_small-lm-1.0.json").read_bytes())
    policy = load_policy(EXAMPLES / "lighteval-release.yaml")
    verdict = judge(policy, now.evidence.with_baseline(before.evidence.metrics, "1.0"))
    assert verdict.outcome == "fail"
    tasks = verdict.rules[0]
    failing = [c["metric"] for c in tasks.evidence["checks"] if c["outcome"] != "pass"]
    assert failing == ["lighteval|winogrande|5/acc"]  # truthfulqa and piqa moved by noise
    same = judge(policy, before.evidence.with_baseline(before.evidence.metrics, "1.0"))
    assert same.outcome == "pass"


def test_predictions_jsonl() -> None:
    lines = [
        json.dumps(
            {
                "id": i,
                "prediction": i % 3 != 0,
                "label": True,
                "output": "OK" if i == 0 else "fine",
                "flags": {"refusal": i == 1},
            }
        )
        for i in range(6)
    ] + [json.dumps({"prediction": True})]
    loaded = parse_results("\n".join(lines).encode(), "p.jsonl")
    m = loaded.evidence.metrics
    assert loaded.kind == "predictions"
    assert m["accuracy"] == mv(4 / 6, n=6, successes=4)
    assert m["count"].value == 7 and m["labelled_count"].value == 6
    assert m["refusal_rate"] == mv(1 / 6, n=6, successes=1)
    assert [s.output for s in loaded.evidence.samples or []][:2] == ["OK", "fine"]
    assert (loaded.evidence.samples or [])[-1].output == "true"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"results": {}}', "r: no 'results' mapping of tasks to metrics"),
        (b'{"results": {"t": 3}}', "r: results.t is not a mapping of metrics"),
        (
            b'{"prediction": 1}\n{oops\n',
            "r:2:2: not valid JSON: Expecting property name enclosed in double quotes",
        ),
        (
            b'{"prediction": 1}\n{"label": 1}\n',
            "r:2: a prediction line is an object with 'prediction' (and 'label' to be scored)",
        ),
        (b"\n\n", "r: the file is empty: no results and no predictions"),
        (b"\xff", "r: not UTF-8 text"),
    ],
)
def test_bad_results_files(data: bytes, message: str) -> None:
    from govloop.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_results(data, "r")
    assert str(info.value) == message


# --- policies: numbers and encodings --------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "  - {metric: acc, value: .nan}\n",
            "p.yaml:3: rules.0.value: Input should be a finite number",
        ),
        (
            "  - {metric: acc, value: -.inf}\n",
            "p.yaml:3: rules.0.value: Input should be a finite number",
        ),
        (
            "  - {kind: regression, metric: acc, margin: .nan}\n",
            "p.yaml:3: rules.0.margin: Input should be a finite number",
        ),
        (
            "  - {kind: safety, flag: tox, score_above: .nan, max_rate: 0}\n",
            "p.yaml:3: rules.0.score_above: Input should be a finite number",
        ),
    ],
)
def test_nan_and_infinite_numbers_are_refused(rule: str, message: str) -> None:
    """A NaN threshold compares false with everything: ``value: .nan`` used to validate."""
    assert policy_error("name: q\nrules:\n" + rule) == message


def test_a_policy_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: q\nrules:\n  - {metric: acc\xff, value: 1}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}:3: not UTF-8 text (byte 0xff at column 17)"


def test_a_stated_direction_is_part_of_the_hash() -> None:
    """Left out, the direction comes from the results file; stated, the policy's wins."""
    texts = [
        "name: q\nrules:\n  - {kind: regression, metric: acc}\n",
        "name: q\nrules:\n  - {kind: regression, metric: acc, higher_is_better: true}\n",
        "name: q\nrules:\n  - {kind: regression, metric: acc, higher_is_better: false}\n",
    ]
    policies = [parse_policy(t) for t in texts]
    assert "higher_is_better" not in policies[0].canonical()["rules"][0]
    assert len({p.content_hash for p in policies}) == 3


# --- every shipped example can pass and can fail -------------------------------------------


def _snapshot_evidence(**changes: float) -> Evidence:
    values = {
        "count": 1000,
        "labelled_count": 400,
        "correct_count": 360,
        "accuracy": 0.9,
        "judged_count": 200,
        "positive_count": 150,
        "positive_rate": 0.75,
        "latency_p95_ms": 120.0,
    } | changes
    return Evidence.from_metrics(values)


def test_the_quality_example_can_pass_and_can_fail() -> None:
    policy = load_policy(EXAMPLES / "quality.yaml")
    assert judge(policy, _snapshot_evidence()).outcome == "pass"
    assert judge(policy, _snapshot_evidence(accuracy=0.8)).outcome == "fail"
    assert judge(policy, _snapshot_evidence(latency_p95_ms=400.0)).outcome == "warn"
    assert judge(policy, _snapshot_evidence(labelled_count=50)).outcome == "inconclusive"


def test_the_lighteval_example_can_pass_and_can_fail() -> None:
    policy = load_policy(EXAMPLES / "lighteval-release.yaml")
    before = parse_results((FIXTURES / "results_small-lm-1.0.json").read_bytes()).evidence
    after = parse_results((FIXTURES / "results_small-lm-1.1.json").read_bytes()).evidence
    assert judge(policy, before.with_baseline(before.metrics, "1.0")).outcome == "pass"
    assert judge(policy, after.with_baseline(before.metrics, "1.0")).outcome == "fail"


def _predictions(leaks: int, refusals: int, n: int = 100) -> bytes:
    rows = [
        {
            "id": i,
            "prediction": "yes",
            "label": "yes",
            "output": "password: hunter2" if i < leaks else "Fine.",
            "flags": {"refusal": i < refusals, "toxicity": 0.01},
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_the_safety_example_can_pass_and_can_fail() -> None:
    """It used to hold a fairness rule no evaluator judges: it could never pass."""
    policy = load_policy(EXAMPLES / "llm-safety.yaml")
    outcome = {
        key: judge(policy, parse_results(_predictions(*args)).evidence).outcome
        for key, args in {
            "clean": (0, 1),
            "leak": (1, 1),
            "refusals": (0, 10),
            "too few": (0, 0, 20),
        }.items()
    }
    assert outcome == {
        "clean": "pass",
        "leak": "fail",
        "refusals": "warn",
        "too few": "inconclusive",
    }
