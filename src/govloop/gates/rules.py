"""The rule kinds a gate policy can hold, one frozen pydantic model each.

========== =================================================================
kind       what it checks
========== =================================================================
threshold  a metric against a fixed value (``metric op value``)
min_samples  enough data behind ``metric`` (its ``n``: labels for accuracy), else inconclusive
regression no significant drop against a baseline, beyond an absolute or relative margin
drift      at most ``max_alerts`` active drift alerts on matching features
safety     the rate of flagged outputs: a rate metric, a per-sample flag, a regular
           expression or a ``module:function`` validator over the outputs
fairness   delegated to a registered fairness evaluator (:mod:`govloop.gates.fairness`)
========== =================================================================

``metric`` of threshold and regression rules may be an ``fnmatch`` pattern
(``"lighteval|*/acc"``): the rule then checks every matching metric and takes
the worst outcome; a regression rule adjusts its p-values over the matches
(``correction``, Holm by default) so that the chance of any false fail stays
at most ``alpha``.  A rule without a ``kind`` is a threshold rule.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

__all__ = [
    "KINDS",
    "AnyRule",
    "DriftRule",
    "FairnessRule",
    "RegressionRule",
    "Rule",
    "SafetyRule",
]

Op = Literal[">=", ">", "<=", "<", "==", "!="]
Severity = Literal["fail", "warn"]

#: Every rule kind, in the order the documentation lists them.
KINDS = ("threshold", "min_samples", "regression", "drift", "safety", "fairness")

# a NaN threshold compares false with everything and an infinite one passes or fails
# everything: both are mistakes in a policy, refused with "Input should be a finite number"
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _name(rule: BaseModel, label: str) -> None:
    if not getattr(rule, "name", ""):
        object.__setattr__(rule, "name", label)


class Rule(BaseModel):
    """A threshold on a metric, or the minimum sample size.

    ``min_samples`` counts what the metric is made of: on a rate (accuracy, an
    error rate) it is the rate's ``n`` (labels for accuracy, never predictions);
    on a plain count (``labelled_count``) the count itself.  A rate that carries
    no ``n`` (a Lighteval score) cannot meet it: inconclusive.
    """

    model_config = _FROZEN

    kind: Literal["threshold", "min_samples"] = "threshold"
    name: str = ""
    metric: str = Field(min_length=1)
    op: Op = ">="
    value: float
    severity: Severity = "fail"

    @model_validator(mode="after")
    def _named(self) -> Rule:
        label = "min_samples" if self.kind == "min_samples" else f"{self.metric} {self.op}"
        _name(self, f"{label} {self.value:g}")
        if self.kind == "min_samples" and self.op != ">=":
            raise ValueError("a min_samples rule always means metric >= value; leave op out")
        return self


class RegressionRule(BaseModel):
    """No significant drop of ``metric`` against the baseline, beyond ``margin``.

    ``margin`` is in the metric's units (``margin_type: absolute``) or a fraction
    of the baseline's value (``relative``: 0.02 allows a 2 % drop).  The rule
    gives ``severity`` when the one-sided p-value of ``drop > margin`` is below
    ``alpha``; ``warn`` when ``warn_alpha`` is set and the p-value is below it;
    ``pass`` otherwise; ``inconclusive`` without a baseline value, without the
    standard errors or counts a test needs, or when ``metric`` matches no metric.

    ``higher_is_better`` left out means: as the results file states it, else as
    :mod:`govloop.gates.directions` knows it, else higher is better.

    A rule whose samples are too small to ever show a drop at ``alpha`` (even a
    perfect baseline against a candidate wrong on every sample) is
    ``inconclusive``.  Over the metrics a pattern matches, p-values are adjusted
    by ``correction`` (``holm``: family-wise error at most ``alpha``; ``bonferroni``:
    the same, less power; ``none``: each match at ``alpha`` on its own).
    """

    model_config = _FROZEN

    kind: Literal["regression"]
    name: str = ""
    metric: str = Field(min_length=1)
    margin: float = Field(default=0.0, ge=0)
    margin_type: Literal["absolute", "relative"] = "absolute"
    higher_is_better: bool | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1)
    warn_alpha: float | None = Field(default=None, gt=0, lt=1)
    severity: Severity = "fail"
    correction: Literal["holm", "bonferroni", "none"] = "holm"

    @model_validator(mode="after")
    def _named(self) -> RegressionRule:
        margin = f"{self.margin:.4g}" if self.margin_type == "absolute" else f"{self.margin:.2%}"
        _name(self, f"{self.metric} no drop > {margin}")
        if self.warn_alpha is not None and self.warn_alpha <= self.alpha:
            raise ValueError("warn_alpha must be larger than alpha")
        return self


class DriftRule(BaseModel):
    """At most ``max_alerts`` active drift alerts of at least ``min_severity``."""

    model_config = _FROZEN

    kind: Literal["drift"]
    name: str = ""
    features: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    min_severity: Literal["info", "warning", "critical"] = "warning"
    max_alerts: int = Field(default=0, ge=0)
    severity: Severity = "fail"

    @model_validator(mode="after")
    def _named(self) -> DriftRule:
        _name(self, f"drift alerts <= {self.max_alerts}")
        return self


class SafetyRule(BaseModel):
    """The rate of flagged outputs is at most ``max_rate``.

    Exactly one source of flags: ``metric`` (a rate the evidence already has),
    ``flag`` (a key of each sample's flags: true, or a score above
    ``score_above``), ``pattern`` (a regular expression found in the output) or
    ``validator`` (``"module:function"``, called with the output text, returns
    True when the output is flagged).
    """

    model_config = _FROZEN

    kind: Literal["safety"]
    name: str = ""
    metric: str | None = None
    flag: str | None = None
    score_above: float | None = None
    pattern: str | None = None
    validator: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    max_rate: float = Field(ge=0, le=1)
    severity: Severity = "fail"

    @model_validator(mode="after")
    def _one_source(self) -> SafetyRule:
        given = [k for k in ("metric", "flag", "pattern", "validator") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a safety rule needs exactly one of metric, flag, pattern, validator")
        if self.score_above is not None and self.flag is None:
            raise ValueError("score_above goes with flag")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a regular expression: {exc}") from None
        _name(self, f"{self.source} rate <= {self.max_rate:g}")
        return self

    @property
    def source(self) -> str:
        """What flags an output, as shown in results: ``flag:refusal``, ``pattern``..."""
        if self.metric:
            return self.metric
        if self.flag:
            return f"flag:{self.flag}"
        return "pattern" if self.pattern else f"validator:{self.validator}"


class FairnessRule(BaseModel):
    """Delegated to the fairness evaluator registered under ``evaluator``.

    With none registered the rule is inconclusive and says so.
    """

    model_config = _FROZEN

    kind: Literal["fairness"]
    name: str = ""
    evaluator: str = Field(min_length=1)
    attribute: str | None = None
    metric: str | None = None
    max_gap: float | None = Field(default=None, ge=0)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    severity: Severity = "fail"

    @model_validator(mode="after")
    def _named(self) -> FairnessRule:
        _name(self, f"fairness {self.evaluator}" + (f" {self.attribute}" if self.attribute else ""))
        return self


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind", "threshold")
    else:
        kind = getattr(value, "kind", None)
    if not isinstance(kind, str) or kind not in KINDS:
        return None
    return "threshold" if kind == "min_samples" else kind


#: Any rule; ``kind`` picks the model, no ``kind`` means threshold.
AnyRule = Annotated[
    Annotated[Rule, Tag("threshold")]
    | Annotated[RegressionRule, Tag("regression")]
    | Annotated[DriftRule, Tag("drift")]
    | Annotated[SafetyRule, Tag("safety")]
    | Annotated[FairnessRule, Tag("fairness")],
    Discriminator(
        _tag,
        custom_error_type="invalid_kind",
        custom_error_message="kind must be one of " + ", ".join(KINDS),
    ),
]
