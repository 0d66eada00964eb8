"""``govloop schemas``: the event contracts, as JSON Schema for other languages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from govloop.cli.output import console, fail, shown

app = typer.Typer(help="Event contracts (JSON Schema).", no_args_is_help=True)


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Directory to write the schemas into.")],
    prefix: Annotated[str, typer.Option(help="Topic prefix used in file names.")] = "govloop.",
) -> None:
    """Write one JSON Schema file per topic."""
    from govloop.schemas import TOPICS, export_json_schemas

    if not prefix or "/" in prefix or "\\" in prefix:
        fail(f"--prefix {prefix!r}: a file name prefix must be non-empty, without a slash")
    try:
        paths = export_json_schemas(directory, prefix)
    except OSError as exc:
        fail(f"{directory}: cannot write the schemas there: {exc.strerror or exc}")
    for name, path in zip(TOPICS, paths, strict=True):
        console.print(f"{TOPICS[name].model.SCHEMA:<28} -> {shown(path)}", soft_wrap=True)


@app.command("list")
def list_schemas() -> None:
    """Show each topic, its schema tag and message key."""
    from rich.table import Table

    from govloop.schemas import TOPICS

    table = Table("topic", "schema", "key", "kind")
    for t in TOPICS.values():
        table.add_row(t.name, t.model.SCHEMA, t.key_field or "-", t.kind)
    console.print(table)
