"""The pure gate evaluator: a policy and a mapping of metric values in, a verdict out.

How the outcome is decided, in this order:

1. ``inconclusive`` if a ``min_samples`` rule is not met: too little data never passes;
2. ``fail`` if a rule of severity ``fail`` is violated;
3. ``inconclusive`` if a rule's metric is missing (for example accuracy with no labels);
4. ``warn`` if a rule of severity ``warn`` is violated;
5. ``pass`` otherwise.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Mapping

from govloop.gates.policy import Policy, Rule
from govloop.schemas.results import GateResult, MetricSnapshot, Outcome, RuleResult

__all__ = ["combine", "evaluate", "evaluate_rule", "judge_snapshot"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def evaluate_rule(rule: Rule, metrics: Mapping[str, object]) -> RuleResult:
    """One rule's verdict on ``metrics``.

    >>> from govloop.gates.policy import Rule
    >>> evaluate_rule(Rule(metric="accuracy", value=0.9), {"accuracy": 0.8}).outcome
    'fail'
    >>> evaluate_rule(Rule(metric="accuracy", value=0.9), {"accuracy": None}).outcome
    'inconclusive'
    """
    observed = metrics.get(rule.metric)
    common = {"rule": rule.name, "metric": rule.metric, "op": rule.op, "threshold": rule.value}
    if observed is None:
        return RuleResult(
            **common, observed=None, outcome="inconclusive", detail=f"no value for {rule.metric}"
        )
    if isinstance(observed, bool) or not isinstance(observed, int | float):
        return RuleResult(**common, observed=None, outcome="inconclusive",
                          detail=f"{rule.metric} is not a number: {observed!r}")
    value = float(observed)
    ok = _OPS[rule.op](value, rule.value)
    if rule.kind == "min_samples":
        outcome: Outcome = "pass" if ok else "inconclusive"
        detail = f"{value:g} samples, {rule.value:g} needed"
    else:
        outcome = "pass" if ok else rule.severity
        detail = f"{rule.metric} = {value:.4g}, required {rule.op} {rule.value:g}"
    return RuleResult(**common, observed=value, outcome=outcome, detail=detail)


def combine(policy: Policy, results: list[RuleResult]) -> Outcome:
    """The gate's outcome from its rules' results (see the module docstring)."""
    kinds = {r.name: r.kind for r in policy.rules}
    if any(kinds[r.rule] == "min_samples" and r.outcome != "pass" for r in results):
        return "inconclusive"
    outcomes = {r.outcome for r in results}
    for outcome in ("fail", "inconclusive", "warn"):
        if outcome in outcomes:
            return outcome  # type: ignore[return-value]
    return "pass"


def evaluate(policy: Policy, metrics: Mapping[str, object]) -> tuple[Outcome, list[RuleResult]]:
    """Evaluate every rule of ``policy`` on ``metrics``.

    >>> from govloop.gates.policy import parse_policy
    >>> p = parse_policy('''
    ... name: q
    ... rules:
    ...   - {kind: min_samples, metric: count, value: 100}
    ...   - {metric: accuracy, op: ">=", value: 0.9}
    ...   - {metric: latency_p95_ms, op: "<=", value: 200, severity: warn}
    ... ''')
    >>> evaluate(p, {"count": 500, "accuracy": 0.95, "latency_p95_ms": 120})[0]
    'pass'
    >>> evaluate(p, {"count": 500, "accuracy": 0.95, "latency_p95_ms": 320})[0]
    'warn'
    >>> evaluate(p, {"count": 500, "accuracy": 0.70, "latency_p95_ms": 120})[0]
    'fail'
    >>> evaluate(p, {"count": 20, "accuracy": 0.70, "latency_p95_ms": 120})[0]
    'inconclusive'
    """
    results = [evaluate_rule(rule, metrics) for rule in policy.rules]
    return combine(policy, results), results


def judge_snapshot(policy: Policy, snapshot: MetricSnapshot) -> GateResult:
    """The gate result of ``policy`` on one metric snapshot, with a deterministic id.

    The id is derived from the snapshot's id and the policy's hash, so judging
    the same snapshot twice (after a redelivery) yields the same event.
    """
    outcome, rules = evaluate(policy, snapshot.model_dump())
    digest = hashlib.sha256(f"{snapshot.event_id}\x1f{policy.content_hash}".encode())
    return GateResult(
        event_id=digest.hexdigest()[:32],
        ts=snapshot.ts,
        policy=policy.name,
        policy_hash=policy.content_hash,
        model=snapshot.model,
        model_version=snapshot.model_version,
        outcome=outcome,
        rules=rules,
        trigger_event_id=snapshot.event_id,
        window_start=snapshot.window_start,
        window_end=snapshot.window_end,
    )
