"""Quality gates: policies as code (YAML -> pydantic) and the pure evaluator.

No I/O beyond reading a policy file: the stream agent and the CLI feed the
evaluator metric values and publish what it decides.
"""

from govloop.gates.evaluate import combine, evaluate, evaluate_rule, judge_snapshot
from govloop.gates.policy import Policy, Rule, load_policies, load_policy, parse_policy

__all__ = [
    "Policy",
    "Rule",
    "combine",
    "evaluate",
    "evaluate_rule",
    "judge_snapshot",
    "load_policies",
    "load_policy",
    "parse_policy",
]
