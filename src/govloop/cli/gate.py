"""``govloop gate``: offline gates for CI, and the policy format's JSON Schema.

``govloop gate check`` exits 0 when every policy passes or warns, 1 when one
fails, 2 when one is inconclusive or on an error (a bad policy or results file).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from govloop.cli.output import console, fail
from govloop.cli.settings import resolved_settings

if TYPE_CHECKING:
    from govloop.config import Settings
    from govloop.gates import Policy, ResultsFile, Verdict
    from govloop.judging.gates import Baseline, Decision
    from govloop.schemas import Outcome

app = typer.Typer(
    help="Quality gates: check results files against policies (for CI).", no_args_is_help=True
)

EXIT_CODES = {"pass": 0, "warn": 0, "fail": 1, "inconclusive": 2}
_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "inconclusive": "magenta"}


def _finite(obj: Any) -> Any:
    """JSON-safe: infinities and NaN (a z with no noise) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def junit_xml(verdicts: list[Verdict], source: str) -> bytes:
    """JUnit XML: a testsuite per policy, a testcase per rule.

    fail -> ``<failure>``, inconclusive -> ``<skipped>``; a warning passes,
    with the detail in ``<system-out>``.
    """
    root = ET.Element("testsuites", name="govloop gate check")
    for v in verdicts:
        failures = sum(r.outcome == "fail" for r in v.rules)
        skipped = sum(r.outcome == "inconclusive" for r in v.rules)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=v.policy,
            tests=str(len(v.rules)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
        )
        ET.SubElement(
            ET.SubElement(suite, "properties"), "property", name="policy_hash", value=v.policy_hash
        )
        for r in v.rules:
            case = ET.SubElement(
                suite, "testcase", classname=f"{v.policy}.{r.kind}", name=r.rule, file=source
            )
            if r.outcome == "fail":
                ET.SubElement(case, "failure", message=r.detail, type=r.kind).text = r.detail
            elif r.outcome == "inconclusive":
                ET.SubElement(case, "skipped", message=r.detail)
            elif r.outcome == "warn":
                ET.SubElement(case, "system-out").text = f"warn: {r.detail}"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _check_note(check: dict[str, Any]) -> str:
    """One check of a pattern rule, briefly: its baseline and p-value when it was tested,
    else why it could not be (escaped: the reason names metrics)."""
    p = check.get("p_value")
    if isinstance(p, float) and math.isfinite(p):
        return f"baseline {_fmt(check.get('baseline'))}, p = {p:.2g}"
    return escape(str(check.get("detail", "")))


def _print_verdict(verdict: Verdict, source: str) -> None:
    """One table per policy; every string from a policy or a results file is escaped, so a
    name like ``[bold]x`` or ``mmlu[0]`` prints as written."""
    from rich.table import Table

    style, outcome = _STYLE[verdict.outcome], verdict.outcome.upper()
    table = Table(
        title=f"{escape(verdict.policy)} on {escape(source)}: [{style}]{outcome}[/] "
        f"(policy {verdict.policy_hash[:12]})",
        title_justify="left",
    )
    for col in ("rule", "kind", "observed", "outcome", "detail"):
        table.add_column(col, justify="right" if col == "observed" else "left", overflow="fold")
    for r in verdict.rules:
        table.add_row(
            escape(r.rule),
            r.kind,
            _fmt(r.observed),
            f"[{_STYLE[r.outcome]}]{r.outcome}[/]",
            escape(r.detail) if "checks" not in r.evidence else "",
        )
        for c in r.evidence.get("checks", []):
            table.add_row(
                f"  {escape(c['metric'])}",
                "",
                _fmt(c.get("observed")),
                f"[{_STYLE[c['outcome']]}]{c['outcome']}[/]",
                _check_note(c),
            )
    console.print(table)


@app.command("check")
def check(
    policy: Annotated[
        str, typer.Option("--policy", help="Policy file(s) or directory, comma-separated.")
    ],
    results: Annotated[
        Path,
        typer.Option(
            "--results",
            help="Lighteval or lm-evaluation-harness (0.3, 0.4) results JSON, or JSONL of "
            "predictions with labels.",
        ),
    ],
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Stored baseline: NAME (newest) or NAME@VERSION."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--last", help="With --baseline: pool the last N versions (up to VERSION if pinned)."
        ),
    ] = None,
    baseline_file: Annotated[
        Path | None,
        typer.Option("--baseline-file", help="Instead of a stored baseline: a results file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Also write JUnit XML here (one testcase per rule)."),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Save each gate result, its policy and its manifest to the database "
            "(then: govloop repro verify ID).",
        ),
    ] = False,
) -> None:
    """Judge a results file: exit 0 pass (or warn), 1 fail, 2 inconclusive or error."""
    if baseline is not None and baseline_file is not None:
        fail("give --baseline or --baseline-file, not both")
    if last is not None and baseline is None:
        fail("--last goes with --baseline NAME")
    checked = _judge(resolved_settings(), policy, results, baseline, last, baseline_file, record)
    if junit is not None:
        try:
            junit.write_bytes(junit_xml([d.verdict for d in checked.decisions], str(results)))
        except OSError as exc:
            fail(f"{junit}: cannot write JUnit XML: {exc.strerror}")
    if as_json:
        print(json.dumps(_finite(_json_report(checked, results, record)), indent=2))
    else:
        _print_report(checked, results, record)
    raise typer.Exit(EXIT_CODES[checked.outcome])


@dataclass(frozen=True)
class Checked:
    """What ``gate check`` decided: the results file judged, the baseline, a decision per
    policy."""

    loaded: ResultsFile
    base: Baseline | None
    decisions: list[Decision]

    @property
    def outcome(self) -> Outcome:
        from govloop.gates.outcomes import worst

        return worst(d.verdict.outcome for d in self.decisions)

    @property
    def baseline_info(self) -> dict[str, Any] | None:
        return None if self.base is None or self.base.ref is None else dict(self.base.ref)


def _judge(
    settings: Settings,
    policy: str,
    results: Path,
    baseline: str | None,
    last: int | None,
    baseline_file: Path | None,
    record: bool,
) -> Checked:
    """Load the policies, the results file and the baseline, decide, and record when asked;
    any govloop error becomes one line on stderr and exit 2."""
    from govloop.audit.manifest import file_input
    from govloop.errors import GovloopError
    from govloop.gates import load_policies, load_results
    from govloop.judging.gates import Baseline, decide

    base: Baseline | None = None
    try:
        policies = load_policies(policy)
        if not policies:
            fail(f"no policy files in {policy}")
        loaded = load_results(results)
        if baseline_file is not None:
            ref = load_results(baseline_file)
            base = Baseline(
                ref.evidence.metrics,
                baseline_file.name,
                {"ref": baseline_file.name, "sha256": ref.sha256},
            )
        elif baseline is not None:
            base = _stored_baseline(settings, baseline, last)
        inputs = [file_input(results.resolve(), loaded.sha256)]
        decisions = [
            decide(p, loaded, inputs=inputs, baseline=base, settings=settings) for p in policies
        ]
        if record:
            _record(settings, policies, decisions)
    except GovloopError as exc:
        first, *more = str(exc).splitlines()
        fail(first + (f" (and {len(more)} more: govloop gate validate)" if more else ""))
    return Checked(loaded, base, decisions)


def _json_report(checked: Checked, results: Path, record: bool) -> dict[str, Any]:
    loaded = checked.loaded
    return {
        "outcome": checked.outcome,
        "exit_code": EXIT_CODES[checked.outcome],
        "results": {
            "file": str(results),
            "sha256": loaded.sha256,
            "kind": loaded.kind,
            "model": loaded.model,
        },
        "baseline": checked.baseline_info,
        "recorded": record,
        "policies": [
            v.model_dump(mode="json")
            | {"gate_result_id": r.event_id, "manifest": m.model_dump(mode="json")}
            for v, r, m in checked.decisions
        ],
    }


def _print_report(checked: Checked, results: Path, record: bool) -> None:
    for d in checked.decisions:
        _print_verdict(d.verdict, results.name)
    if checked.baseline_info is not None:
        console.print(f"baseline: {escape(str(checked.baseline_info['ref']))}")
    for _, r, _ in checked.decisions:
        console.print(
            f"{'recorded' if record else 'gate result'} {r.event_id} "
            f"({escape(r.policy)}, manifest {r.manifest_id})",
            soft_wrap=True,
        )
    outcome = checked.outcome
    console.print(f"gate: [{_STYLE[outcome]}]{outcome}[/] (exit {EXIT_CODES[outcome]})")


def _stored_baseline(settings: Settings, ref: str, last: int | None) -> Baseline:
    """A stored baseline (``NAME`` or ``NAME@V``, or the last N versions pooled)."""
    from govloop.cli.output import open_session
    from govloop.judging.gates import Baseline
    from govloop.stores.sql import resolve_baseline

    with open_session(settings) as session:
        metrics, label, versions = resolve_baseline(session, ref, last)
    return Baseline(metrics, label, {"ref": label, "versions": versions})


def _record(settings: Settings, policies: list[Policy], decisions: list[Decision]) -> None:
    """Save each policy version and decision (manifest, gate result) in one transaction."""
    from sqlalchemy.exc import SQLAlchemyError

    from govloop.audit.records import save_decision, save_policy
    from govloop.cli.output import open_session
    from govloop.schemas import utcnow

    try:
        with open_session(settings) as session:
            for p, d in zip(policies, decisions, strict=True):
                save_policy(session, p.name, p.content_hash, p.model_dump(mode="json"), utcnow())
                save_decision(session, d.result, d.manifest)
            session.commit()
    except SQLAlchemyError as exc:
        fail(f"cannot record the gate results: {exc.__class__.__name__}: {exc}".splitlines()[0])


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of policy files."""
    from govloop.gates import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2))


@app.command("validate")
def validate(
    policies: Annotated[list[Path], typer.Argument(help="Policy files to check.")],
) -> None:
    """Check policy files; errors name the file, line and field. Exit 2 on the first bad one."""
    from govloop.errors import PolicyError
    from govloop.gates import load_policy

    for path in policies:
        try:
            p = load_policy(path)
        except PolicyError as exc:
            fail(str(exc))
        console.print(
            f"{path}: ok, policy {p.name} with {len(p.rules)} rules (sha256 {p.content_hash[:12]})"
        )
