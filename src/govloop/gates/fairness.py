"""The fairness hook: a registry of fairness evaluators that fairness rules delegate to.

A fairness rule names an evaluator (``evaluator: demographic_parity``); the
compliance work registers evaluators here.  With none registered under that
name the rule is inconclusive and says how to register one.

>>> from govloop.gates.evidence import Evidence
>>> from govloop.gates.rules import FairnessRule
>>> def gap(rule, evidence):
...     g = evidence.metrics["gap"].value
...     return FairnessFinding(observed=g, violated=g > (rule.max_gap or 0), detail=f"gap {g}")
>>> register_fairness_evaluator("gap", gap)
>>> rule = FairnessRule(kind="fairness", evaluator="gap", max_gap=0.1)
>>> fairness_evaluators()["gap"](rule, Evidence.from_metrics({"gap": 0.2})).violated
True
>>> unregister_fairness_evaluator("gap")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from govloop.gates.evidence import Evidence
    from govloop.gates.rules import FairnessRule

__all__ = [
    "FairnessEvaluator",
    "FairnessFinding",
    "fairness_evaluators",
    "register_fairness_evaluator",
    "unregister_fairness_evaluator",
]


@dataclass(frozen=True)
class FairnessFinding:
    """What an evaluator found: ``violated`` None means it could not tell (inconclusive)."""

    observed: float | None
    violated: bool | None
    detail: str = ""


FairnessEvaluator = Callable[["FairnessRule", "Evidence"], FairnessFinding]

_REGISTRY: dict[str, FairnessEvaluator] = {}


def register_fairness_evaluator(name: str, evaluator: FairnessEvaluator) -> None:
    """Make ``evaluator`` judge fairness rules with ``evaluator: name``."""
    if not name:
        raise ValueError("a fairness evaluator needs a name")
    _REGISTRY[name] = evaluator


def unregister_fairness_evaluator(name: str) -> None:
    _REGISTRY.pop(name, None)


def fairness_evaluators() -> Mapping[str, FairnessEvaluator]:
    """The registered evaluators (a read-only view)."""
    return MappingProxyType(_REGISTRY)
