"""``govloop drift`` and ``govloop metrics``: what the stream worker has seen."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from govloop.cli.output import JsonOption, console, fail, open_session, shown
from govloop.cli.settings import resolved_settings

app = typer.Typer(help="Data and prediction drift.", no_args_is_help=True)
reference_app = typer.Typer(
    help="Reference profiles: what 'no drift' looks like.", no_args_is_help=True
)
app.add_typer(reference_app, name="reference")
metrics_app = typer.Typer(help="Online metric snapshots.", no_args_is_help=True)

ModelOption = Annotated[str | None, typer.Option(help="Only this model.")]


#: The features of concept drift (the join outcome streams), not of a reference profile.
CONCEPT = ("error_rate", "negative_feedback_rate")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


@app.command("status")
def status(model: ModelOption = None, as_json: JsonOption = False) -> None:
    """Per model: each feature's latest test, threshold, state and since when."""
    settings = resolved_settings()
    from rich.table import Table

    from govloop.stores.sql import drift_status

    with open_session(settings) as session:
        rows = drift_status(session, model)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not rows:
        console.print(
            "no drift results yet: the worker tests each closed window once a "
            "reference exists (`govloop drift reference show`)"
        )
        return
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r.model, r.model_version), []).append(r)
    for (name, version), items in groups.items():
        drifting = sum(r.state == "drift" for r in items)
        # data drift is against a reference profile; concept drift against its first outcomes
        refs = sorted({r.reference_version for r in items if r.feature not in CONCEPT})
        table = Table(
            title=f"{shown(name)} {shown(version)}: {drifting} of {len(items)} features drifting"
            + (f" (reference {shown(', '.join(refs))})" if refs else ""),
            title_justify="left",
        )
        widest = max(len(r.feature) for r in items)
        table.add_column("feature", no_wrap=True, min_width=min(32, widest))
        for col in ("test", "statistic", "threshold", "p-value", "n", "state", "since"):
            table.add_column(col, justify="left" if col in ("test", "state") else "right")
        for r in items:
            table.add_row(
                shown(r.feature),
                shown(r.test),
                f"{r.statistic:.4f}",
                f"{r.threshold:.4f}",
                "-" if r.p_value is None else f"{r.p_value:.2g}",
                str(r.n_current),
                "[bold red]drift[/]" if r.state == "drift" else "[green]ok[/]",
                "" if r.since is None else f"{r.since:%m-%d %H:%M}",
            )
        console.print(table)


@reference_app.command("set")
def reference_set(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Model version.")],
    source: Annotated[
        Path | None,
        typer.Option(
            "--from", help="JSONL or Parquet of predictions (events, or rows of feature values)."
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            help="Instead of a file: the version's predictions on the stream from this time (UTC)."
        ),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="End of that time range (default: now).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Store a new reference profile version for a model version, from a file or the stream."""
    settings = resolved_settings()
    from govloop.errors import GovloopError
    from govloop.stores.sql import save_reference
    from govloop.streams.reference import profile_from_file, profile_from_stream

    if (source is None) == (since is None):
        fail("give either --from FILE or --since TIME [--until TIME]")
    try:
        if source is not None:
            profile = profile_from_file(source, model, version)
            origin = f"file {source.name}"
        else:
            assert since is not None
            start = since.replace(tzinfo=UTC) if since.tzinfo is None else since
            end = until or datetime.now(UTC)
            end = end.replace(tzinfo=UTC) if end.tzinfo is None else end
            profile = profile_from_stream(settings, model, version, start, end)
            origin = f"stream {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
    except GovloopError as exc:
        fail(str(exc))
    except UnicodeDecodeError as exc:  # streams.reference reads the file as UTF-8 text
        fail(f"{source}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.end]!r})")
    if profile.n == 0:
        fail(f"no predictions of {model} {version} in that range")
    with open_session(settings) as session:
        row = save_reference(
            session, model, version, origin, profile.n, profile.to_dict(), datetime.now(UTC)
        )
        session.commit()
        out: dict[str, Any] = {
            "model": model,
            "model_version": version,
            "version": row.version,
            "n": profile.n,
            "features": sorted([*profile.numeric, *profile.categorical]),
        }
    if as_json:
        print(json.dumps(out))
    else:
        console.print(
            f"reference v{out['version']} of {shown(model)} {shown(version)}: {profile.n} "
            f"events, {len(out['features'])} features",
            soft_wrap=True,
        )


@reference_app.command("show")
def reference_show(model: ModelOption = None, as_json: JsonOption = False) -> None:
    """List stored reference profiles, newest version first."""
    settings = resolved_settings()
    from rich.table import Table

    from govloop.stores.sql import references

    with open_session(settings) as session:
        rows = references(session, model)
    items: list[dict[str, Any]] = []
    for r in rows:
        body = json.loads(r.body)
        items.append(
            {
                "model": r.model,
                "model_version": r.model_version,
                "version": r.version,
                "source": r.source,
                "n": r.n,
                "created_at": _iso(r.created_at),
                "features": len(body["numeric"]) + len(body["categorical"]),
            }
        )
    if as_json:
        print(json.dumps(items, indent=2))
        return
    table = Table("model", "model version", "ref", "source", "events", "features", "created")
    for i in items:
        table.add_row(
            shown(i["model"]),
            shown(i["model_version"]),
            f"v{i['version']}",
            shown(i["source"]),
            str(i["n"]),
            str(i["features"]),
            str(i["created_at"])[:19],
        )
    console.print(table)


@metrics_app.command("show")
def metrics_show(
    model: ModelOption = None,
    last: Annotated[int, typer.Option(help="Snapshots to show.")] = 20,
    window: Annotated[
        str,
        typer.Option(
            help="tumbling (each window) or sliding (the last few, as each closes).",
        ),
    ] = "tumbling",
    slices: Annotated[
        bool,
        typer.Option(
            "--slices",
            help="Also the A/B variant and segment snapshots.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The latest metric snapshots, oldest first."""
    settings = resolved_settings()
    from rich.table import Table
    from sqlmodel import select

    from govloop.schemas import MetricSnapshot
    from govloop.stores.sql import MetricSnapshotRow

    if window not in ("tumbling", "sliding"):
        fail(f"--window must be tumbling or sliding, not {window!r}")
    with open_session(settings) as session:
        query = select(MetricSnapshotRow).where(MetricSnapshotRow.window_kind == window)
        if model is not None:
            query = query.where(MetricSnapshotRow.model == model)
        if not slices:
            query = query.where(MetricSnapshotRow.slice_kind == "")
        query = query.order_by(MetricSnapshotRow.window_start.desc()).limit(last)  # type: ignore[attr-defined]
        snaps = [MetricSnapshot.model_validate_json(r.body) for r in session.exec(query)][::-1]
    if as_json:
        print(json.dumps([s.model_dump(mode="json", by_alias=True) for s in snaps], indent=2))
        return
    table = Table(
        "model",
        *(["slice"] if slices else []),
        "window",
        "preds",
        "labelled",
        "acc",
        "est. acc",
        "feedback",
        "positive",
        "p95 ms",
    )

    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    def slice_of(s: MetricSnapshot) -> str:
        if s.variant is not None:
            return f"{s.experiment}={s.variant}"
        if s.segment:
            return ",".join(f"{k}={v}" for k, v in s.segment.items())
        return "all"

    def estimate(s: MetricSnapshot) -> str:
        """The calibrated estimate; before a calibration map exists, the raw mean confidence."""
        if s.estimated_accuracy is None and s.estimated_accuracy_raw is not None:
            return f"{s.estimated_accuracy_raw:.3f} (raw)"
        return fmt(s.estimated_accuracy, ".3f")

    for s in snaps:
        table.add_row(
            f"{shown(s.model)} {shown(s.model_version)}",
            *([shown(slice_of(s))] if slices else []),
            f"{s.window_start:%H:%M}-{s.window_end:%H:%M}",
            str(s.count),
            str(s.labelled_count),
            fmt(s.accuracy, ".3f"),
            estimate(s),
            fmt(s.feedback_rate, ".0%"),
            fmt(s.positive_rate, ".0%"),
            fmt(s.latency_p95_ms, ".1f"),
        )
    console.print(table)
