"""Online regression rules: the accumulated evidence, tested so that looking often is safe.

When the evidence carries the model version's accumulated counts
(:attr:`~govloop.gates.evidence.Evidence.cumulative`, online), a regression rule
is judged by :func:`govloop.stats.sequential.sequential_drop`: the baseline's
one-sided confidence bound, less the margin, is the rate the candidate must
keep; the candidate's accumulated successes out of n feed a test martingale,
and the rule fails when it reaches ``1/alpha_c``.  For a model that has not
changed, the chance of *ever* failing, over any number of windows and looks,
is at most the rule's ``alpha`` (see ``docs/gates.md``, "Online gates: valid
under continuous monitoring").  A pattern rule matching several metrics judges
each on its anytime-valid p-value (:func:`sequential_p_value`), adjusted over the
matches (``govloop.gates.checks``), so the bound holds for the family.

A ``min_samples`` rule on a rate, online, counts the labels behind the
accumulated rate (what the regression rules judge), not one window's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from govloop.gates.directions import direction
from govloop.gates.evidence import Evidence, MetricValue
from govloop.gates.rules import RegressionRule, Rule
from govloop.schemas.results import Outcome
from govloop.stats.sequential import SequentialDrop, anytime_p_value, sequential_drop

__all__ = [
    "METHOD",
    "Finding",
    "accumulated_samples",
    "sequential_p_value",
    "sequential_regression",
]

METHOD = "sequential: baseline confidence bound + beta-binomial mixture martingale (Ville)"


class Finding(NamedTuple):
    """A rule's verdict on the accumulated evidence, made into a report by the caller."""

    observed: float | None
    outcome: Outcome
    detail: str
    evidence: dict[str, Any]


def _known(base: MetricValue) -> dict[str, Any]:
    """The baseline as the sequential test takes it: its counts, else value and stderr."""
    if base.has_counts:
        return {"base_successes": base.successes, "base_n": base.n}
    return {"base_value": base.value, "base_stderr": base.standard_error}


def _test(
    rule: RegressionRule, alpha: float, cur: MetricValue, base: MetricValue, higher: bool
) -> SequentialDrop:
    known = _known(base)
    return sequential_drop(
        cur.successes,  # type: ignore[arg-type]
        cur.n,  # type: ignore[arg-type]
        alpha=alpha,
        margin=rule.margin,
        margin_type=rule.margin_type,
        higher_is_better=higher,
        **known,
    )


def _windows(looks: int | None) -> str:
    return "" if looks is None else f" in {looks} window" + ("" if looks == 1 else "s")


def _evalue(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:.3e}"


class _Inputs(NamedTuple):
    cur: MetricValue
    base: MetricValue
    higher: bool
    said_by: str
    move: str


def _inputs(rule: RegressionRule, name: str, evidence: Evidence) -> _Inputs | Finding:
    """What the test of ``name`` needs, or the inconclusive finding saying what is missing."""
    acc = evidence.cumulative or {}
    cur = acc.get(name)
    if cur is None or cur.value is None:
        note = f"{name} {cur.note}" if cur is not None and cur.note else f"no value for {name}"
        return Finding(None, "inconclusive", f"{note} accumulated", {})
    if evidence.baseline is None:
        return Finding(cur.value, "inconclusive", "no baseline to compare with", {})
    base = evidence.baseline.get(name)
    if base is None or base.value is None:
        where = f" in baseline {evidence.baseline_ref}" if evidence.baseline_ref else ""
        return Finding(cur.value, "inconclusive", f"no value for {name}{where}", {})
    higher, said_by = direction(rule.higher_is_better, name, cur, base)
    move = f"{name} {base.value:.3f} -> {cur.value:.3f}"
    if not higher:
        move += " (lower is better)"
    if not cur.has_counts:
        detail = (
            f"{move}: no counts behind the accumulated value, "
            "it cannot be tested under continuous monitoring"
        )
        return Finding(cur.value, "inconclusive", detail, {"baseline": base.value})
    if not base.has_counts and base.standard_error is None:
        detail = (
            f"{move}: the baseline has no counts or standard error, significance cannot be tested"
        )
        return Finding(cur.value, "inconclusive", detail, {"baseline": base.value})
    return _Inputs(cur, base, higher, said_by, move)


def sequential_p_value(rule: RegressionRule, name: str, evidence: Evidence) -> float | None:
    """The anytime-valid p-value of ``name``'s drop on the accumulated evidence
    (:func:`govloop.stats.sequential.anytime_p_value`), None when it cannot be tested."""
    got = _inputs(rule, name, evidence)
    if isinstance(got, Finding):
        return None
    cur, base = got.cur, got.base
    known = _known(base)
    return anytime_p_value(
        cur.successes,  # type: ignore[arg-type]
        cur.n,  # type: ignore[arg-type]
        margin=rule.margin,
        margin_type=rule.margin_type,
        higher_is_better=got.higher,
        **known,
    )


def sequential_regression(
    rule: RegressionRule,
    name: str,
    evidence: Evidence,
    adjusted: tuple[float, float, int] | None = None,
) -> Finding:
    """A regression rule on the accumulated evidence (``evidence.cumulative`` is set).

    ``adjusted`` is (anytime p-value, its adjusted p-value, family size) when the
    rule's pattern matched several metrics: the match is then judged on its adjusted
    p-value against ``alpha`` (and ``warn_alpha``) rather than on its e-value alone.
    """
    got = _inputs(rule, name, evidence)
    if isinstance(got, Finding):
        return got
    cur, base, higher, said_by, move = got
    test = _test(rule, rule.alpha, cur, base, higher)
    found: dict[str, Any] = {
        "baseline": base.value,
        "baseline_ref": evidence.baseline_ref,
        "baseline_bound": test.baseline_bound,
        "allowed": test.level,
        "margin": rule.margin,
        "margin_type": rule.margin_type,
        "evalue": test.evalue,
        "threshold_evalue": test.threshold,
        "alpha": rule.alpha,
        "alpha_baseline": test.alpha_baseline,
        "alpha_candidate": test.alpha_candidate,
        "successes": cur.successes,
        "n": cur.n,
        "looks": evidence.looks,
        "method": METHOD,
        "higher_is_better": higher,
        "direction_from": said_by,
    }
    margin = f"{rule.margin:g}" if rule.margin_type == "absolute" else f"{rule.margin:.2%}"
    over = f"over {cur.n:,} labels{_windows(evidence.looks)}"
    stat = f"e-value {_evalue(test.evalue)}"
    if adjusted is not None:
        return _on_p_value(rule, cur.value, found, adjusted, f"{move} {over}", margin, stat)
    if test.rejected:
        outcome: Outcome = rule.severity
        detail = (
            f"{move} {over}: the drop beyond {margin} is significant under continuous "
            f"monitoring ({stat} >= {test.threshold:g})"
        )
    else:
        outcome, detail = (
            "pass",
            (
                f"{move} {over}: no significant drop beyond {margin} under continuous "
                f"monitoring ({stat} < {test.threshold:g})"
            ),
        )
        if rule.warn_alpha is not None:
            warn = _test(rule, rule.warn_alpha, cur, base, higher)
            found["warn_evalue"], found["warn_threshold"] = warn.evalue, warn.threshold
            if warn.rejected:
                outcome = "warn"
                detail = (
                    f"{move} {over}: suggestive drop beyond {margin} under continuous "
                    f"monitoring (e-value {_evalue(warn.evalue)} >= {warn.threshold:g}, "
                    f"warn_alpha {rule.warn_alpha:g})"
                )
    return Finding(cur.value, outcome, detail, found)


def _on_p_value(
    rule: RegressionRule,
    observed: float | None,
    found: dict[str, Any],
    adjusted: tuple[float, float, int],
    what: str,
    margin: str,
    stat: str,
) -> Finding:
    raw, p, size = adjusted
    found |= {"p_value": raw, "p_adjusted": p, "correction": rule.correction, "family_size": size}
    shown = f"{stat}, anytime p = {raw:.2g}, {rule.correction}-adjusted over {size}: {p:.2g}"
    outcome: Outcome
    if p <= rule.alpha:
        outcome = rule.severity
        detail = (
            f"{what}: the drop beyond {margin} is significant under continuous "
            f"monitoring ({shown} <= {rule.alpha:g})"
        )
    elif rule.warn_alpha is not None and p <= rule.warn_alpha:
        outcome = "warn"
        detail = (
            f"{what}: suggestive drop beyond {margin} under continuous monitoring "
            f"({shown} <= warn_alpha {rule.warn_alpha:g})"
        )
    else:
        outcome = "pass"
        detail = (
            f"{what}: no significant drop beyond {margin} under continuous monitoring ({shown})"
        )
    return Finding(observed, outcome, detail, found)


def accumulated_samples(rule: Rule, evidence: Evidence) -> Finding | None:
    """A ``min_samples`` rule on a rate, counted on the accumulated labels; None when the
    rule is not about an accumulated rate (then it is judged as offline).

    >>> ev = Evidence(cumulative={"accuracy": MetricValue(value=0.9, n=600, successes=540)},
    ...               looks=3)
    >>> accumulated_samples(Rule(kind="min_samples", metric="accuracy", value=500), ev).detail
    '600 samples behind accuracy accumulated in 3 windows, 500 needed'
    """
    if rule.kind != "min_samples" or evidence.cumulative is None:
        return None
    mv = evidence.cumulative.get(rule.metric)
    if mv is None or not mv.has_counts:
        return None
    n = float(mv.n)  # type: ignore[arg-type]
    outcome: Outcome = "pass" if n >= rule.value else "inconclusive"
    detail = (
        f"{n:g} samples behind {rule.metric} accumulated{_windows(evidence.looks)}, "
        f"{rule.value:g} needed"
    )
    return Finding(n, outcome, detail, {"n": mv.n, "looks": evidence.looks})
