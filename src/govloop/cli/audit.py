"""``govloop audit``: check the hash-chained ledger and list its entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from govloop.cli.output import console, fail, stderr

app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def _session() -> Iterator[Any]:
    """A session on the configured database; the engine is disposed afterwards."""
    from sqlmodel import Session

    from govloop.cli.services import resolved_settings
    from govloop.stores.sql import create_engine_for, init_db

    engine = create_engine_for(resolved_settings())
    try:
        init_db(engine)
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@app.command("verify")
def verify(
    anchor: Annotated[str | None, typer.Option(
        help="SEQ:HASH of an entry saved outside the database (a hash prefix of 12+ hex "
             "digits will do): fail unless the ledger still holds it.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the whole chain; exit 1 naming the first entry altered, removed or reordered."""
    from govloop.audit import Anchor
    from govloop.audit import verify as check

    pinned = None
    if anchor is not None:
        try:
            pinned = Anchor.parse(anchor)
        except ValueError as exc:
            fail(str(exc))
    with _session() as session:
        result = check(session, pinned)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.ok:
        console.print(f"[green]ledger intact:[/] {result.entries} entries, "
                      f"head {result.head_hash[:12]}")
        if result.entries:
            console.print(f"anchor to keep elsewhere: {result.head_seq}:{result.head_hash}",
                          soft_wrap=True)
    else:
        p = result.problem
        assert p is not None
        stderr.print(f"[bold red]ledger broken[/] at entry {p.seq}: {p.reason}", soft_wrap=True)
        stderr.print(f"  kind {p.kind or '-'}, ref {p.ref or '-'}", soft_wrap=True)
        stderr.print(f"  {p.detail}", soft_wrap=True)
        stderr.print(f"  {result.entries} entries before it are intact "
                     f"(up to entry {result.head_seq}, hash {result.head_hash[:12]})",
                     soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


@app.command("log")
def log(
    kind: Annotated[str | None, typer.Option(
        help="Only this kind: gate_result, policy, baseline, experiment, dataset.")] = None,
    model: Annotated[str | None, typer.Option(help="Only entries about this model.")] = None,
    ref: Annotated[str | None, typer.Option(help="Only the entry of this id or hash.")] = None,
    since: Annotated[datetime | None, typer.Option(
        help="Only entries at or after this time (ISO; naive means UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(
        help="Only entries before this time (ISO; naive means UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Entries to show at most.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List ledger entries, newest first."""
    from rich.table import Table

    from govloop.audit import entries

    with _session() as session:
        rows = entries(session, kind=kind, ref=ref, model=model, since=_utc(since),
                       until=_utc(until), limit=limit)
        items = [{"seq": r.seq, "ts": _utc(r.ts).isoformat(),  # type: ignore[union-attr]
                  "kind": r.kind, "ref": r.ref, "model": r.model,
                  "payload": json.loads(r.payload), "prev_hash": r.prev_hash,
                  "entry_hash": r.entry_hash} for r in rows]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    if not items:
        console.print("no ledger entries match")
        return
    table = Table("seq", "time (UTC)", "kind", "model", "ref", "hash")
    for i in items:
        table.add_row(str(i["seq"]), i["ts"][:19].replace("T", " "), i["kind"],
                      i["model"] or "-", i["ref"], i["entry_hash"][:12])
    console.print(table)
