"""One check per rule kind: a rule and the evidence in, a :class:`RuleReport` out.

A report is a :class:`~govloop.schemas.RuleResult` (what the ``gates`` topic
carries) plus the rule's kind and its structured evidence (baseline, drop,
z, p-value, counts...).  Metric patterns are expanded here: a rule on
``"lighteval|*/acc"`` checks each matching metric and reports the worst; a
regression rule judges each match on its p-value adjusted over the matches.
"""

from __future__ import annotations

import fnmatch
import importlib
import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from pydantic import Field

from govloop.gates.directions import direction, unit_scores
from govloop.gates.evidence import Evidence, MetricValue, Sample
from govloop.gates.fairness import FairnessEvaluator
from govloop.gates.outcomes import SEVERITY
from govloop.gates.rules import DriftRule, FairnessRule, RegressionRule, Rule, SafetyRule
from govloop.gates.sequential import sequential_p_value, sequential_regression
from govloop.schemas.results import Outcome, RuleResult
from govloop.stats.significance import (
    DropTest,
    adjusted_p_values,
    bounded_stderr_drop,
    stderr_drop,
)
from govloop.stats.two_sample import exact_drop, smallest_p_value

__all__ = ["RuleReport", "check_drift", "check_fairness", "check_metric_rule", "check_safety"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_REGRESSION_OP = "no significant drop"


class RuleReport(RuleResult):
    """One rule's verdict, with its kind and evidence."""

    kind: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def result(self) -> RuleResult:
        """The event-shaped result (without kind and structured evidence)."""
        return RuleResult.model_validate(self.model_dump(exclude={"kind", "evidence"}))


def _missing(name: str, mv: MetricValue | None, where: str = "") -> str:
    if mv is not None and mv.note:
        return f"{name} {mv.note}"
    return f"no value for {name}{where}"


def _matches(pattern: str, names: Mapping[str, object]) -> list[str]:
    if pattern in names or not any(c in pattern for c in "*?["):
        return [pattern]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def _no_match(rule: Rule | RegressionRule, names: Mapping[str, object]) -> RuleReport:
    """A pattern that matches nothing: inconclusive, naming the pattern and a few metrics
    the evidence does have (docs/gates.md says why this is not an error)."""
    some = sorted(names)[:3]
    have = (
        f"; the evidence has {len(names)} metrics, e.g. {', '.join(map(repr, some))}"
        if some
        else "; the evidence has no metrics"
    )
    detail = f"no metric matches {rule.metric!r}{have}"
    if isinstance(rule, RegressionRule):
        kw: dict[str, Any] = {"op": _REGRESSION_OP, "threshold": rule.margin}
    else:
        kw = {}
    return _report(rule, rule.metric, None, "inconclusive", detail, {}, **kw)


def check_metric_rule(rule: Rule | RegressionRule, evidence: Evidence) -> RuleReport:
    """A threshold, min_samples or regression rule, over every metric its pattern matches."""
    names = _matches(rule.metric, evidence.metrics)
    if not names:
        return _no_match(rule, evidence.metrics)
    if isinstance(rule, Rule):
        reports = [_threshold(rule, name, evidence) for name in names]
    else:
        reports = _regressions(rule, names, evidence)
    if len(reports) == 1:
        return reports[0]
    worst = max(reports, key=lambda r: SEVERITY[r.outcome])
    bad = [r for r in reports if r.outcome != "pass"]
    detail = (
        "; ".join(r.detail for r in bad)
        if bad
        else f"all {len(reports)} metrics matching {rule.metric!r} pass"
    )
    checks = [
        {
            "metric": r.metric,
            "outcome": r.outcome,
            "observed": r.observed,
            "detail": r.detail,
            **r.evidence,
        }
        for r in reports
    ]
    return worst.model_copy(
        update={"metric": rule.metric, "detail": detail, "evidence": {"checks": checks}}
    )


def _regressions(rule: RegressionRule, names: list[str], evidence: Evidence) -> list[RuleReport]:
    """Each match judged on its p-value adjusted over the family of matches (a match that
    cannot be tested counts in the family with p = 1, which only makes it stricter)."""
    if evidence.cumulative is not None:
        return _online_regressions(rule, names, evidence)
    first = [_regression(rule, name, evidence) for name in names]
    if len(names) == 1 or rule.correction == "none":
        return first
    raw = [r.evidence.get("p_value", 1.0) for r in first]
    raw = [1.0 if p is None or math.isnan(p) else p for p in raw]
    adjusted = adjusted_p_values(raw, rule.correction)
    return [
        _regression(rule, name, evidence, (p, len(names))) if "p_value" in r.evidence else r
        for name, r, p in zip(names, first, adjusted, strict=True)
    ]


def _online_regressions(
    rule: RegressionRule, names: list[str], evidence: Evidence
) -> list[RuleReport]:
    """Online (accumulated evidence): one match is judged by its e-value at ``alpha``; several
    on their anytime-valid p-values, adjusted over the matches at every look.

    Holm's adjustment of anytime-valid p-values keeps ``P(any match of an unchanged metric
    ever fails) <= alpha``.  With ``m`` matches of which ``m0`` are unchanged: if Holm
    rejects an unchanged match at a look, it rejects the unchanged match with the smallest
    p-value, ranked at most ``m - m0 + 1``, so that p-value is at most ``alpha / m0``.  So
    some unchanged match has ``p_t <= alpha / m0`` at some look; each does with
    probability at most ``alpha / m0`` (``P(ever p_t <= x) <= x``), and the union over the
    ``m0`` gives ``alpha``, whatever the dependence between the metrics.
    Bonferroni's ``m p`` is larger than Holm's, so the same holds; ``none`` judges each
    match at ``alpha`` by its e-value, and an unchanged family of ``k`` fails with
    probability up to ``k alpha``.
    """
    kw: dict[str, Any] = {"op": _REGRESSION_OP, "threshold": rule.margin}
    if len(names) == 1 or rule.correction == "none":
        return [_report(rule, n, *sequential_regression(rule, n, evidence), **kw) for n in names]
    raw = [sequential_p_value(rule, name, evidence) for name in names]
    adjusted = adjusted_p_values([1.0 if p is None else p for p in raw], rule.correction)
    return [
        _report(
            rule,
            name,
            *sequential_regression(rule, name, evidence, None if p is None else (p, q, len(names))),
            **kw,
        )
        for name, p, q in zip(names, raw, adjusted, strict=True)
    ]


def _report(
    rule: Any,
    metric: str,
    observed: float | None,
    outcome: Outcome,
    detail: str,
    evidence: dict[str, Any],
    op: str | None = None,
    threshold: float | None = None,
) -> RuleReport:
    return RuleReport(
        kind=rule.kind,
        rule=rule.name,
        metric=metric,
        op=op if op is not None else getattr(rule, "op", "<="),
        threshold=threshold if threshold is not None else rule.value,
        observed=observed,
        outcome=outcome,
        detail=detail,
        evidence=evidence,
    )


#: Rates by name: a min_samples rule on one counts its n, never its value.
_RATE_NAMES = ("accuracy", "error_rate", "positive_rate", "feedback_rate")


def _sample_count(name: str, mv: MetricValue) -> float | None:
    """What a min_samples rule counts: a rate's ``n``; a plain count's value; else None."""
    if mv.n is not None:
        return float(mv.n)
    value = mv.value
    is_rate = (
        mv.successes is not None
        or mv.stderr is not None
        or name in _RATE_NAMES
        or name.endswith("_rate")
        or value is None
        or not float(value).is_integer()
    )
    return None if is_rate else value


def _threshold(rule: Rule, name: str, evidence: Evidence) -> RuleReport:
    mv = evidence.metrics.get(name)
    if mv is None or mv.value is None:
        return _report(rule, name, None, "inconclusive", _missing(name, mv), {})
    value = mv.value
    ok = _OPS[rule.op](value, rule.value)
    if rule.kind == "min_samples":
        count = _sample_count(name, mv)
        if count is None:
            detail = f"{name} carries no sample count (n): the samples behind it are unknown"
            return _report(rule, name, None, "inconclusive", detail, {})
        value, ok = count, count >= rule.value
        outcome: Outcome = "pass" if ok else "inconclusive"
        what = "" if mv.n is None else f" behind {name}"
        detail = f"{value:g} samples{what}, {rule.value:g} needed"
    else:
        outcome = "pass" if ok else rule.severity
        detail = f"{name} = {value:.4g}, required {rule.op} {rule.value:g}"
    extra = {k: v for k, v in mv.model_dump(exclude={"value", "note"}).items() if v is not None}
    return _report(rule, name, value, outcome, detail, extra)


#: The test on standard errors needs this many effective samples on the rarer side of
#: a metric in [0, 1] (``n_eff min(v, 1 - v)``, ``n_eff = v (1 - v) / se^2``); below it a
#: mean near 0 or 1 is too skewed for the corrected t reference (docs/gates.md; the
#: validity benchmark measures the result).
MIN_EFFECTIVE = 50.0
#: With a known n, also ``n min(v, 1 - v)`` at least this: scores near 0 or 1 whose rare
#: low (high) values were not seen in a small sample look precise (n_eff large) and are not.
MIN_RARER = 10.0


def _counts(mv: MetricValue) -> tuple[int, int] | None:
    """(count, n) of a rate: its counts, or a proportion in [0, 1] with a known n that
    is a whole number of its n (lm-evaluation-harness's ``n-samples``)."""
    if mv.has_counts:
        return mv.successes, mv.n  # type: ignore[return-value]
    if mv.n and mv.value is not None and 0 <= mv.value <= 1:
        k = round(mv.value * mv.n)
        if abs(mv.value * mv.n - k) <= 1e-6 * max(1, mv.n):
            return k, mv.n
    return None


@lru_cache(maxsize=4096)
def _exact(kb: int, nb: int, kc: int, nc: int, margin: float, rel: bool, hib: bool) -> DropTest:
    return exact_drop(kb, nb, kc, nc, margin, rel, hib)


def _drop_test(
    base: MetricValue,
    cur: MetricValue,
    rule: RegressionRule,
    higher_is_better: bool,
    unit: bool = True,
) -> DropTest | str:
    """The test of a drop, or why there is none; ``unit``: a value in [0, 1] is a mean of
    [0, 1] scores (:func:`~govloop.gates.directions.unit_scores`)."""
    relative = rule.margin_type == "relative"
    bc, cc = _counts(base), _counts(cur)
    if bc is not None and cc is not None:
        if relative and higher_is_better and rule.margin >= 1:
            return "a relative margin of 100 % or more allows any drop"
        test = _exact(bc[0], bc[1], cc[0], cc[1], rule.margin, relative, higher_is_better)
        if not test.significant(rule.alpha):
            least = smallest_p_value(bc[1], cc[1], rule.margin, relative, higher_is_better)
            if least >= rule.alpha:
                return (
                    f"too few samples for the rule: baseline n = {bc[1]}, candidate n = "
                    f"{cc[1]}; even a perfect baseline against a candidate wrong on every "
                    f"sample gives p = {least:.2g}, not below alpha {rule.alpha:g}"
                )
        return test
    base_se, cur_se = base.standard_error, cur.standard_error
    if base_se is None or cur_se is None:
        return "no standard errors or counts, significance cannot be tested"
    if base_se == 0 or cur_se == 0:
        side = "baseline" if base_se == 0 else "candidate"
        return (
            f"the {side}'s standard error is 0 and no counts are known: "
            "a z-test would take its value as exact"
        )
    for side, mv, se in (("baseline", base, base_se), ("candidate", cur, cur_se)):
        v = mv.value
        if unit and v is not None and 0 <= v <= 1:
            n_eff = v * (1 - v) / (se * se)
            if n_eff * min(v, 1 - v) < MIN_EFFECTIVE:
                return (
                    f"the {side}'s {v:.4g} +- {se:.2g} is too near 0 or 1 for the test "
                    f"(about {n_eff * min(v, 1 - v):.3g} effective samples on the rarer side, "
                    f"{MIN_EFFECTIVE:g} needed) and no counts are known"
                )
            if mv.n and mv.n * min(v, 1 - v) < MIN_RARER:
                return (
                    f"the {side}'s {v:.4g} on n = {mv.n} is too near 0 or 1 for the test "
                    f"(n * {min(v, 1 - v):.3g} = {mv.n * min(v, 1 - v):.3g} on the rarer side, "
                    f"{MIN_RARER:g} needed) and no counts are known"
                )
    margin = rule.margin if not relative else rule.margin * abs(base.value)  # type: ignore[arg-type]
    bv, cv = base.value, cur.value
    if unit and bv is not None and cv is not None and 0 < bv < 1 and 0 < cv < 1:
        for side, mv in (("baseline", base), ("candidate", cur)):
            if mv.n is not None and mv.n < 2:
                return f"the {side}'s standard error rests on n = {mv.n} sample: no test"
        return bounded_stderr_drop(
            bv, base_se, cv, cur_se, margin, higher_is_better, base.n or None, cur.n or None
        )
    return stderr_drop(
        base.value,  # type: ignore[arg-type]
        base_se,
        cur.value,  # type: ignore[arg-type]
        cur_se,
        margin,
        higher_is_better,
    )


def _regression(
    rule: RegressionRule,
    name: str,
    evidence: Evidence,
    adjusted: tuple[float, int] | None = None,
) -> RuleReport:
    """One metric's regression check; ``adjusted`` is its (adjusted p-value, family size)
    when the rule's pattern matched several metrics.  Offline only: online evidence goes
    to :func:`_online_regressions`."""
    op = _REGRESSION_OP
    kw: dict[str, Any] = {"op": op, "threshold": rule.margin}
    cur = evidence.metrics.get(name)
    if cur is None or cur.value is None:
        return _report(rule, name, None, "inconclusive", _missing(name, cur), {}, **kw)
    if evidence.baseline is None:
        return _report(
            rule, name, cur.value, "inconclusive", "no baseline to compare with", {}, **kw
        )
    base = evidence.baseline.get(name)
    where = f" in baseline {evidence.baseline_ref}" if evidence.baseline_ref else " in the baseline"
    if base is None or base.value is None:
        return _report(rule, name, cur.value, "inconclusive", _missing(name, base, where), {}, **kw)
    higher, said_by = direction(rule.higher_is_better, name, cur, base)
    test = _drop_test(base, cur, rule, higher, unit_scores(name))
    move = f"{name} {base.value:.4g} -> {cur.value:.4g}"
    if not higher:
        move += " (lower is better)"
    if isinstance(test, str):
        sizes = {"baseline": base.value, "baseline_n": base.n, "n": cur.n}
        known = {k: v for k, v in sizes.items() if v is not None}
        return _report(rule, name, cur.value, "inconclusive", f"{move}: {test}", known, **kw)
    p = test.p_value if adjusted is None else adjusted[0]
    found: dict[str, Any] = {
        "baseline": base.value,
        "baseline_ref": evidence.baseline_ref,
        "drop": test.drop,
        "margin": test.margin,
        "margin_type": rule.margin_type,
        "stderr": test.stderr,
        "z": test.z,
        "p_value": test.p_value,
        "alpha": rule.alpha,
        "method": test.method,
        "higher_is_better": higher,
        "direction_from": said_by,
    }
    shown = f"p = {test.p_value:.2g}"
    if adjusted is not None:
        found |= {"p_adjusted": p, "correction": rule.correction, "family_size": adjusted[1]}
        shown += f", {rule.correction}-adjusted over {adjusted[1]}: {p:.2g}"
    margin = f"{rule.margin:.4g}" if rule.margin_type == "absolute" else f"{rule.margin:.2%}"
    stats = f"drop {test.drop:.4g}, margin {margin}, z = {test.z:.2f}, {shown}"
    if _below(p, rule.alpha):
        outcome: Outcome = rule.severity
        detail = f"{move}: significant drop ({stats} < {rule.alpha:g})"
    elif rule.warn_alpha is not None and _below(p, rule.warn_alpha):
        outcome = "warn"
        detail = f"{move}: suggestive drop ({stats} < warn_alpha {rule.warn_alpha:g})"
    else:
        outcome = "pass"
        detail = f"{move}: no significant drop ({stats})"
    return _report(rule, name, cur.value, outcome, detail, found, op=op, threshold=rule.margin)


def _below(p: float, alpha: float) -> bool:
    return not math.isnan(p) and p < alpha


def check_drift(rule: DriftRule, evidence: Evidence) -> RuleReport:
    kw: dict[str, Any] = {"op": "<=", "threshold": float(rule.max_alerts)}
    if evidence.drift_alerts is None:
        return _report(
            rule, "drift alerts", None, "inconclusive", "no drift status supplied", {}, **kw
        )
    floor = _SEVERITY_RANK[rule.min_severity]
    active = [
        a
        for a in evidence.drift_alerts
        if _SEVERITY_RANK[a.severity] >= floor
        and any(fnmatch.fnmatchcase(a.feature, p) for p in rule.features)
    ]
    features = sorted({a.feature for a in active})
    count = len(active)
    outcome: Outcome = "pass" if count <= rule.max_alerts else rule.severity
    detail = (
        f"{count} active drift alert(s) of severity >= {rule.min_severity}"
        + (f": {', '.join(features)}" if features else "")
        + f"; at most {rule.max_alerts} allowed"
    )
    return _report(
        rule,
        "drift alerts",
        float(count),
        outcome,
        detail,
        {"features": features, "alerts": count},
        **kw,
    )


def _flagger(rule: SafetyRule) -> Callable[[Sample], bool | None]:
    if rule.pattern is not None:
        regex = re.compile(rule.pattern)
        return lambda s: regex.search(s.output) is not None
    if rule.validator is not None:
        module, _, attr = rule.validator.partition(":")
        fn: Any = importlib.import_module(module)
        for part in attr.split("."):
            fn = getattr(fn, part)
        if not callable(fn):
            raise TypeError(f"{rule.validator} is not callable")
        return lambda s: bool(fn(s.output))

    def by_flag(s: Sample) -> bool | None:
        value = s.flags.get(rule.flag)  # type: ignore[arg-type]
        if value is None:
            return None
        if rule.score_above is not None:
            return isinstance(value, int | float) and float(value) > rule.score_above
        return bool(value)

    return by_flag


def check_safety(rule: SafetyRule, evidence: Evidence) -> RuleReport:
    kw: dict[str, Any] = {"op": "<=", "threshold": rule.max_rate}
    source = rule.source
    if rule.metric is not None:
        mv = evidence.metrics.get(rule.metric)
        if mv is None or mv.value is None:
            return _report(rule, source, None, "inconclusive", _missing(rule.metric, mv), {}, **kw)
        rate, found = (
            mv.value,
            {k: v for k, v in mv.model_dump(exclude={"value", "note"}).items() if v is not None},
        )
    else:
        if not evidence.samples:
            return _report(
                rule, source, None, "inconclusive", "no per-sample outputs to check", {}, **kw
            )
        try:
            flagger = _flagger(rule)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            return _report(
                rule,
                source,
                None,
                "inconclusive",
                f"cannot load validator {rule.validator}: {exc}",
                {},
                **kw,
            )
        verdicts = []
        for i, sample in enumerate(evidence.samples):
            try:
                verdicts.append((sample, flagger(sample)))
            except Exception as exc:  # a user's validator: report it, never crash the gate
                return _report(
                    rule,
                    source,
                    None,
                    "inconclusive",
                    f"{source} raised {type(exc).__name__} on sample {sample.id or i}: {exc}",
                    {},
                    **kw,
                )
        judged = [(s, v) for s, v in verdicts if v is not None]
        if not judged:
            return _report(
                rule,
                source,
                None,
                "inconclusive",
                f"no sample carries the flag {rule.flag!r}",
                {},
                **kw,
            )
        flagged = [s for s, v in judged if v]
        rate = len(flagged) / len(judged)
        found = {
            "n": len(judged),
            "flagged": len(flagged),
            "examples": [s.id if s.id is not None else s.output[:80] for s in flagged[:3]],
        }
    outcome: Outcome = "pass" if rate <= rule.max_rate else rule.severity
    counts = f" ({found['flagged']} of {found['n']})" if "flagged" in found else ""
    detail = f"{source} rate {rate:.4g}{counts}, at most {rule.max_rate:g} allowed"
    return _report(rule, source, rate, outcome, detail, found, **kw)


def check_fairness(
    rule: FairnessRule, evidence: Evidence, evaluators: Mapping[str, FairnessEvaluator]
) -> RuleReport:
    kw: dict[str, Any] = {
        "op": "<=",
        "threshold": rule.max_gap if rule.max_gap is not None else 0.0,
    }
    metric = rule.metric or rule.evaluator
    evaluator = evaluators.get(rule.evaluator)
    if evaluator is None:
        return _report(
            rule,
            metric,
            None,
            "inconclusive",
            f"no fairness evaluator {rule.evaluator!r} is registered "
            "(govloop.gates.register_fairness_evaluator)",
            {},
            **kw,
        )
    finding = evaluator(rule, evidence)
    outcome: Outcome = (
        "inconclusive"
        if finding.violated is None
        else rule.severity
        if finding.violated
        else "pass"
    )
    return _report(
        rule,
        metric,
        finding.observed,
        outcome,
        finding.detail,
        {"evaluator": rule.evaluator, "attribute": rule.attribute},
        **kw,
    )
