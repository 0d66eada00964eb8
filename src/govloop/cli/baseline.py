"""``govloop baseline``: named, versioned metrics that regression rules compare against."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from govloop.cli.output import JsonOption, as_utc, console, fail, open_session, shown
from govloop.cli.settings import resolved_settings

app = typer.Typer(
    help="Baselines for regression gates: every set is a new version.", no_args_is_help=True
)


def _iso(value: datetime) -> str:
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"metric": k, **v.model_dump(exclude={"note"})} for k, v in sorted(metrics.items())]


def _describe(row: Any, versions: list[int] | None = None) -> dict[str, Any]:
    from govloop.stores.sql import baseline_metrics

    out: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "source": row.source,
        "sha256": row.sha256,
        "model": row.model,
        "created_at": _iso(row.created_at),
        "metrics": metric_rows(baseline_metrics(row)),
    }
    if versions is not None:
        out["versions"] = versions
    return out


@app.command("set")
def set_baseline(
    name: Annotated[str, typer.Argument(help="Baseline name (a new version is added).")],
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A Lighteval or lm-evaluation-harness results JSON, or a JSONL of "
            "predictions with labels.",
        ),
    ] = None,
    window: Annotated[
        bool,
        typer.Option("--window", help="Instead of a file: the stored metric snapshots of --model."),
    ] = False,
    model: Annotated[str | None, typer.Option(help="With --window: the model.")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="With --window: only this model version.")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="With --window: from (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="With --window: until (UTC).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Store a new version of a baseline, from a results file or a window of snapshots."""
    settings = resolved_settings()
    from govloop.audit.records import save_baseline
    from govloop.errors import GovloopError
    from govloop.gates.inputs import load_results
    from govloop.stores.sql import window_metrics

    if (source is None) == (not window):
        fail("give either --from FILE or --window --model M [--version V] [--since] [--until]")
    try:
        with open_session(settings) as session:
            if source is not None:
                loaded = load_results(source)
                metrics, sha, origin = loaded.evidence.metrics, loaded.sha256, f"file {source.name}"
                model_name = loaded.model
            else:
                if model is None:
                    fail("--window needs --model")
                metrics, used = window_metrics(
                    session, model, version, as_utc(since), as_utc(until)
                )
                if used == 0:
                    fail(
                        f"no stored tumbling metric snapshots of {model}"
                        + (f" {version}" if version else "")
                        + " in that range"
                    )
                span = (
                    (f"{since:%Y-%m-%dT%H:%M}" if since else "start")
                    + ".."
                    + (f"{until:%Y-%m-%dT%H:%M}" if until else "now")
                )
                origin = (
                    f"window {model}"
                    + (f" {version}" if version else "")
                    + f" {span} ({used} snapshots)"
                )
                sha, model_name = None, model
            row = save_baseline(session, name, metrics, source=origin, sha256=sha, model=model_name)
            session.commit()
            out = _describe(row)
    except GovloopError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        console.print(
            f"baseline {shown(name)} v{out['version']}: {len(out['metrics'])} metrics from "
            f"{shown(origin)}" + (f" (sha256 {sha[:12]})" if sha else ""),
            soft_wrap=True,
        )


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME (newest version) or NAME@VERSION.")],
    as_json: JsonOption = False,
) -> None:
    """A baseline's metrics, and the versions it has."""
    settings = resolved_settings()
    from rich.table import Table

    from govloop.errors import GovloopError
    from govloop.stores.sql import baseline_versions, get_baseline, parse_ref

    out: dict[str, Any] = {}
    try:
        name, version = parse_ref(ref)
        with open_session(settings) as session:
            row = get_baseline(session, name, version)
            if row is None:
                fail(f"no baseline {ref}")
            out = _describe(row, sorted(r.version for r in baseline_versions(session, name)))
    except GovloopError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(out, indent=2))
        return

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    table = Table(
        "metric",
        "value",
        "stderr",
        "n",
        "successes",
        title=f"baseline {shown(name)} v{out['version']} of {out['versions']}: "
        f"{shown(out['source'])}",
        title_justify="left",
    )
    for m in out["metrics"]:
        table.add_row(
            shown(m["metric"]),
            fmt(m["value"]),
            fmt(m["stderr"]),
            "-" if m["n"] is None else str(m["n"]),
            "-" if m["successes"] is None else str(m["successes"]),
        )
    console.print(table)


@app.command("list")
def list_all(as_json: JsonOption = False) -> None:
    """Every baseline name with its newest version."""
    settings = resolved_settings()
    from rich.table import Table

    from govloop.stores.sql import list_baselines

    with open_session(settings) as session:
        items: list[dict[str, Any]] = [
            {
                "name": r.name,
                "latest": r.version,
                "versions": n,
                "source": r.source,
                "model": r.model,
                "created_at": _iso(r.created_at),
            }
            for r, n in list_baselines(session)
        ]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    if not items:
        console.print("no baselines yet: `govloop baseline set NAME --from FILE`")
        return
    table = Table("name", "latest", "versions", "source", "created")
    for i in items:
        table.add_row(
            shown(i["name"]),
            f"v{i['latest']}",
            str(i["versions"]),
            shown(i["source"]),
            i["created_at"][:19],
        )
    console.print(table)
