"""The pure gate evaluator: a policy and the evidence in, a verdict out.

How the outcome is decided, in this order:

1. ``inconclusive`` if a ``min_samples`` rule is not met: too little data never passes;
2. ``fail`` if a rule of severity ``fail`` is violated;
3. ``inconclusive`` if a rule cannot be judged (a missing metric, no baseline,
   no standard errors, no drift status, no samples, no fairness evaluator);
4. ``warn`` if a rule of severity ``warn`` is violated (or a regression is suggestive);
5. ``pass`` otherwise.

The same evaluator judges online snapshots (:func:`judge_snapshot`) and
offline results files (:mod:`govloop.gates.inputs`): both become
:class:`~govloop.gates.evidence.Evidence`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from govloop.gates.checks import (
    RuleReport,
    check_drift,
    check_fairness,
    check_metric_rule,
    check_safety,
)
from govloop.gates.evidence import DriftSignal, Evidence, MetricValue, metrics_from_snapshots
from govloop.gates.fairness import FairnessEvaluator, fairness_evaluators
from govloop.gates.outcomes import worst
from govloop.gates.policy import Policy
from govloop.gates.rules import AnyRule, DriftRule, FairnessRule, Rule, SafetyRule
from govloop.gates.sequential import accumulated_samples
from govloop.schemas.base import Event
from govloop.schemas.results import GateResult, MetricSnapshot, Outcome, RuleResult

__all__ = [
    "Verdict",
    "check",
    "combine",
    "evaluate",
    "evaluate_rule",
    "judge",
    "judge_snapshot",
    "snapshot_evidence",
    "snapshot_result",
]


class Verdict(BaseModel):
    """A policy's decision on some evidence, with every rule's report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str
    policy_hash: str
    outcome: Outcome
    rules: list[RuleReport]

    @property
    def results(self) -> list[RuleResult]:
        return [r.result for r in self.rules]


def _evidence(data: Evidence | Mapping[str, object]) -> Evidence:
    return data if isinstance(data, Evidence) else Evidence.from_metrics(data)


def check(
    rule: AnyRule,
    evidence: Evidence | Mapping[str, object],
    fairness: Mapping[str, FairnessEvaluator] | None = None,
) -> RuleReport:
    """One rule's report on ``evidence`` (a plain ``name -> number`` mapping will do)."""
    ev = _evidence(evidence)
    if isinstance(rule, DriftRule):
        return check_drift(rule, ev)
    if isinstance(rule, SafetyRule):
        return check_safety(rule, ev)
    if isinstance(rule, FairnessRule):
        return check_fairness(rule, ev, fairness_evaluators() if fairness is None else fairness)
    if isinstance(rule, Rule) and (online := accumulated_samples(rule, ev)) is not None:
        return RuleReport(
            kind=rule.kind,
            rule=rule.name,
            metric=rule.metric,
            op=rule.op,
            threshold=rule.value,
            observed=online.observed,
            outcome=online.outcome,
            detail=online.detail,
            evidence=online.evidence,
        )
    return check_metric_rule(rule, ev)


def evaluate_rule(rule: AnyRule, metrics: Evidence | Mapping[str, object]) -> RuleResult:
    """One rule's verdict on ``metrics``.

    >>> from govloop.gates.policy import Rule
    >>> evaluate_rule(Rule(metric="accuracy", value=0.9), {"accuracy": 0.8}).outcome
    'fail'
    >>> evaluate_rule(Rule(metric="accuracy", value=0.9), {"accuracy": None}).outcome
    'inconclusive'
    """
    return check(rule, metrics).result


def combine(policy: Policy, results: Sequence[RuleResult | RuleReport]) -> Outcome:
    """The gate's outcome from its rules' results (see the module docstring)."""
    kinds = {r.name: r.kind for r in policy.rules}
    if any(kinds[r.rule] == "min_samples" and r.outcome != "pass" for r in results):
        return "inconclusive"
    return worst(r.outcome for r in results)


def judge(
    policy: Policy,
    evidence: Evidence | Mapping[str, object],
    fairness: Mapping[str, FairnessEvaluator] | None = None,
) -> Verdict:
    """Every rule of ``policy`` on ``evidence``, and the gate's outcome.

    >>> from govloop.gates.evidence import MetricValue
    >>> from govloop.gates.policy import parse_policy
    >>> p = parse_policy('''
    ... name: release
    ... rules:
    ...   - {kind: regression, metric: acc, margin: 0.01}
    ... ''')
    >>> now = Evidence(metrics={"acc": MetricValue(value=0.652, stderr=0.013382)},
    ...                baseline={"acc": MetricValue(value=0.701, stderr=0.012862)})
    >>> v = judge(p, now)
    >>> v.outcome, round(v.rules[0].evidence["p_value"], 4)
    ('fail', 0.0232)
    >>> judge(p, {"acc": 0.652}).rules[0].detail
    'no baseline to compare with'
    """
    ev = _evidence(evidence)
    reports = [check(rule, ev, fairness) for rule in policy.rules]
    return Verdict(
        policy=policy.name,
        policy_hash=policy.content_hash,
        outcome=combine(policy, reports),
        rules=reports,
    )


def evaluate(
    policy: Policy, metrics: Evidence | Mapping[str, object]
) -> tuple[Outcome, list[RuleResult]]:
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
    verdict = judge(policy, metrics)
    return verdict.outcome, verdict.results


def snapshot_evidence(
    snapshot: MetricSnapshot,
    *,
    baseline: Mapping[str, MetricValue] | None = None,
    drift_alerts: Sequence[DriftSignal] | None = None,
    cumulative: Mapping[str, MetricValue] | None = None,
    looks: int | None = None,
) -> Evidence:
    """What a policy judges on one metric snapshot: its metrics (rates with their counts),
    the baseline, the drift alerts in force and, online, the model version's accumulated
    metrics over ``looks`` windows (:attr:`Evidence.cumulative`)."""
    return Evidence(
        metrics=metrics_from_snapshots([snapshot]),
        baseline=None if baseline is None else dict(baseline),
        drift_alerts=None if drift_alerts is None else list(drift_alerts),
        cumulative=None if cumulative is None else dict(cumulative),
        looks=looks,
    )


def snapshot_result(
    verdict: Verdict, snapshot: MetricSnapshot, trigger: Event | None = None
) -> GateResult:
    """The gate result of a verdict on one metric snapshot, with a deterministic id.

    The id is derived from the triggering event's id (the snapshot's, or
    ``trigger``'s: a drift alert that makes the gate look again at the latest
    snapshot) and the policy's hash, so judging the same thing twice (after a
    redelivery) yields the same event.
    """
    cause = snapshot if trigger is None else trigger
    digest = hashlib.sha256(f"{cause.event_id}\x1f{verdict.policy_hash}".encode())
    return GateResult(
        event_id=digest.hexdigest()[:32],
        ts=max(snapshot.ts, cause.ts),
        policy=verdict.policy,
        policy_hash=verdict.policy_hash,
        model=snapshot.model,
        model_version=snapshot.model_version,
        outcome=verdict.outcome,
        rules=verdict.results,
        trigger_event_id=cause.event_id,
        window_start=snapshot.window_start,
        window_end=snapshot.window_end,
    )


def judge_snapshot(
    policy: Policy,
    snapshot: MetricSnapshot,
    *,
    baseline: Mapping[str, MetricValue] | None = None,
    drift_alerts: Sequence[DriftSignal] | None = None,
    trigger: Event | None = None,
    cumulative: Mapping[str, MetricValue] | None = None,
    looks: int | None = None,
) -> GateResult:
    """The gate result of ``policy`` on one metric snapshot (:func:`snapshot_result`)."""
    evidence = snapshot_evidence(
        snapshot, baseline=baseline, drift_alerts=drift_alerts, cumulative=cumulative, looks=looks
    )
    return snapshot_result(judge(policy, evidence), snapshot, trigger)
