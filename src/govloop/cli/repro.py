"""``govloop repro``: show a gate decision's manifest, and recompute the decision from it.

``govloop repro verify ID`` exits 0 when the recomputed decision matches the
stored one, 1 when something differs (each difference printed), 2 when it
cannot be replayed (no such result, no manifest, an input gone, no broker).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from govloop.cli.output import JsonOption, console, fail, open_session
from govloop.cli.settings import resolved_settings

app = typer.Typer(
    help="Reproducibility: gate decisions' manifests and their replay.", no_args_is_help=True
)

IdArgument = Annotated[str, typer.Argument(help="The gate result's id (its event_id).")]


@app.command("verify")
def verify(
    gate_result_id: IdArgument,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="Re-read this results file instead of the path in the manifest."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Re-read snapshots from Kafka only, never the SQL store's copy."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute a gate decision from its manifest: exit 0 match, 1 differences, 2 error."""
    from govloop.errors import GovloopError
    from govloop.repro import replay

    settings = resolved_settings()
    try:
        with open_session(settings) as session:
            result = replay(session, gate_result_id, settings, file_override=file, strict=strict)
    except GovloopError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        stored = result.stored
        console.print(
            f"gate result {stored.event_id}: {stored.policy} on {stored.model} "
            f"-> {stored.outcome} (manifest {stored.manifest_id})",
            soft_wrap=True,
        )
        for line in result.inputs:
            console.print(f"  {escape(line)}", soft_wrap=True)
        for line in result.notes:
            console.print(f"  [yellow]note:[/] {escape(line)}", soft_wrap=True)
        if result.match:
            console.print(
                f"[green]match:[/] recomputed {len(stored.rules)} rules, outcome {stored.outcome}"
            )
        else:
            n = len(result.differences)
            console.print(f"[bold red]{n} difference{'s' if n > 1 else ''}:[/]")
            for line in result.differences:
                console.print(f"  {escape(line)}", soft_wrap=True)
    raise typer.Exit(0 if result.match else 1)


@app.command("show")
def show(gate_result_id: IdArgument, as_json: JsonOption = False) -> None:
    """Print the manifest of a gate decision."""
    settings = resolved_settings()
    from govloop.audit.manifest import load_manifest
    from govloop.schemas import GateResult
    from govloop.stores.sql import GateResultRow

    with open_session(settings) as session:
        row = session.get(GateResultRow, gate_result_id)
        if row is None:
            fail(f"no gate result {gate_result_id!r}")
        stored = GateResult.model_validate_json(row.body)
        if stored.manifest_id is None:
            fail(f"gate result {gate_result_id} has no manifest")
        manifest = load_manifest(session, stored.manifest_id)
    if manifest is None:
        fail(f"manifest {stored.manifest_id} of gate result {gate_result_id} is not stored")
    if as_json:
        print(json.dumps(manifest.model_dump(mode="json"), indent=2))
        return
    console.print(
        f"manifest {manifest.id} of gate result {gate_result_id} "
        f"({stored.policy}: {stored.outcome})",
        soft_wrap=True,
    )
    console.print(f"  policy   {manifest.policy_hash}", soft_wrap=True)
    for i in manifest.inputs:
        where = (
            f"{i['topic']} partition {i['partition']} offset {i['offset']}"
            if i.get("kind") == "kafka"
            else i.get("path", "?")
        )
        console.print(
            f"  input    {i.get('kind')} {escape(str(where))} sha256 {i.get('sha256')}",
            soft_wrap=True,
        )
    for key, value in sorted(manifest.evidence.items()):
        size = len(value.get("metrics", {})) if isinstance(value, dict) else len(value)
        console.print(f"  evidence {key}: {size} recorded inline")
    console.print(f"  govloop  {manifest.govloop_version} (commit {manifest.git_commit or '-'})")
    console.print(
        f"  python   {manifest.python}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(manifest.packages.items())),
        soft_wrap=True,
    )
    if manifest.seeds:
        console.print(f"  seeds    {json.dumps(manifest.seeds, sort_keys=True)}")
    console.print(f"  created  {manifest.created_at.isoformat()}")
