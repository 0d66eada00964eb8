"""Quality gates: policies as code (YAML -> pydantic) and the pure evaluator.

No I/O beyond reading a policy or results file: the stream worker and the CLI
feed the evaluator evidence and publish what it decides.

* rules      the rule kinds: threshold, min_samples, regression, drift, safety, fairness
* policy     a YAML policy validated into a frozen model; its JSON Schema
* evidence   what a gate judges: metrics (with standard errors and counts), a baseline,
             drift alerts, per-sample outputs
* checks     one check per rule kind, with its evidence
* directions which way is better for a metric: the policy, the results file, a table
* evaluate   the gate's outcome: :func:`judge` (any evidence), :func:`judge_snapshot` (online)
* inputs     a results file -> evidence (offline, for CI), its format told from its structure:
             lighteval, lm_eval (lm-evaluation-harness 0.3 and 0.4), predictions (JSONL);
             harness holds what the harness formats share
* fairness   the registry fairness rules delegate to
"""

from govloop.gates.checks import RuleReport
from govloop.gates.evaluate import (
    Verdict,
    check,
    combine,
    evaluate,
    evaluate_rule,
    judge,
    judge_snapshot,
)
from govloop.gates.evidence import (
    DriftSignal,
    Evidence,
    MetricValue,
    Sample,
    metrics_from_snapshots,
    pool_baselines,
)
from govloop.gates.fairness import (
    FairnessFinding,
    fairness_evaluators,
    register_fairness_evaluator,
    unregister_fairness_evaluator,
)
from govloop.gates.inputs import ResultsFile, load_results, parse_results
from govloop.gates.policy import (
    Policy,
    load_policies,
    load_policy,
    parse_policy,
    policy_json_schema,
)
from govloop.gates.rules import DriftRule, FairnessRule, RegressionRule, Rule, SafetyRule

__all__ = [
    "DriftRule",
    "DriftSignal",
    "Evidence",
    "FairnessFinding",
    "FairnessRule",
    "MetricValue",
    "Policy",
    "RegressionRule",
    "ResultsFile",
    "Rule",
    "RuleReport",
    "SafetyRule",
    "Sample",
    "Verdict",
    "check",
    "combine",
    "evaluate",
    "evaluate_rule",
    "fairness_evaluators",
    "judge",
    "judge_snapshot",
    "load_policies",
    "load_policy",
    "load_results",
    "metrics_from_snapshots",
    "parse_policy",
    "parse_results",
    "policy_json_schema",
    "pool_baselines",
    "register_fairness_evaluator",
    "unregister_fairness_evaluator",
]
