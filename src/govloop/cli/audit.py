"""``govloop audit``: check the hash-chained ledger and list its entries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

from govloop.cli.output import JsonOption, as_utc, console, fail, open_session, stderr
from govloop.cli.settings import resolved_settings

app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)


@app.command("verify")
def verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH of an entry saved outside the database (a hash prefix of 12+ hex "
            "digits will do): fail unless the ledger still holds it."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the whole chain; exit 1 naming the first entry altered, removed or reordered."""
    settings = resolved_settings()
    from govloop.audit import Anchor
    from govloop.audit import verify as check

    pinned = None
    if anchor is not None:
        try:
            pinned = Anchor.parse(anchor)
        except ValueError as exc:
            fail(str(exc))
    with open_session(settings) as session:
        result = check(session, pinned)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.ok:
        console.print(
            f"[green]ledger intact:[/] {result.entries} entries, head {result.head_hash[:12]}"
        )
        if result.entries:
            console.print(
                f"anchor to keep elsewhere: {result.head_seq}:{result.head_hash}", soft_wrap=True
            )
    else:
        p = result.problem
        assert p is not None
        stderr.print(f"[bold red]ledger broken[/] at entry {p.seq}: {p.reason}", soft_wrap=True)
        stderr.print(f"  kind {p.kind or '-'}, ref {p.ref or '-'}", soft_wrap=True)
        stderr.print(f"  {p.detail}", soft_wrap=True)
        stderr.print(
            f"  {result.entries} entries before it are intact "
            f"(up to entry {result.head_seq}, hash {result.head_hash[:12]})",
            soft_wrap=True,
        )
    if not result.ok:
        raise typer.Exit(1)


@app.command("log")
def log(
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: gate_result, policy, baseline, experiment, dataset."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only entries about this model.")] = None,
    ref: Annotated[str | None, typer.Option(help="Only the entry of this id or hash.")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Only entries at or after this time (ISO; naive means UTC)."),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Only entries before this time (ISO; naive means UTC).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Entries to show at most.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List ledger entries, newest first."""
    settings = resolved_settings()
    from rich.table import Table

    from govloop.audit import entries

    with open_session(settings) as session:
        rows = entries(
            session,
            kind=kind,
            ref=ref,
            model=model,
            since=as_utc(since),
            until=as_utc(until),
            limit=limit,
        )
        items = [
            {
                "seq": r.seq,
                "ts": as_utc(r.ts).isoformat(),  # type: ignore[union-attr]
                "kind": r.kind,
                "ref": r.ref,
                "model": r.model,
                "payload": json.loads(r.payload),
                "prev_hash": r.prev_hash,
                "entry_hash": r.entry_hash,
            }
            for r in rows
        ]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    if not items:
        console.print("no ledger entries match")
        return
    table = Table("seq", "time (UTC)", "kind", "model", "ref", "hash")
    for i in items:
        table.add_row(
            str(i["seq"]),
            i["ts"][:19].replace("T", " "),
            i["kind"],
            i["model"] or "-",
            i["ref"],
            i["entry_hash"][:12],
        )
    console.print(table)
