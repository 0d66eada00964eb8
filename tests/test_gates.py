"""Gate policies and the pure evaluator: hand-worked verdicts, hashes and error locations."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from govloop.errors import GovloopError, PolicyError
from govloop.gates import (
    Policy,
    Rule,
    combine,
    evaluate,
    evaluate_rule,
    judge_snapshot,
    load_policies,
    load_policy,
    parse_policy,
)
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
        "threshold", ">=", "fail", "accuracy >= 0.9"
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
    assert json.loads(canonical) == policy.model_dump(mode="json")
    assert policy.content_hash == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    ("old", "new"),
    [("value: 0.9", "value: 0.91"), ('op: ">="', 'op: ">"'), ("name: quality", "name: quality2"),
     ("severity: warn", "severity: fail"), ("value: 100", "value: 101")],
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
    [("- name: q\n- rules: []\n", 1), ("# a comment\n\n- a\n- b\n", 3), ("just a string\n", 1),
     ("name: q\n---\nname: r\n", None), ("", None)],
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
        "event_id": "snap-1", "ts": T0 + timedelta(minutes=1, seconds=5), "model": "clf",
        "model_version": "7", "window_start": T0, "window_end": T0 + timedelta(minutes=1),
        "count": 200, "feedback_count": 100, "labelled_count": 80, "correct_count": 60,
        "positive_count": 10, "judged_count": 20, "accuracy": 0.75, "feedback_rate": 0.5,
        "positive_rate": 0.5, "latency_p50_ms": 40.0, "latency_p95_ms": 150.0,
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
        snap.window_start, snap.window_end, snap.ts
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
