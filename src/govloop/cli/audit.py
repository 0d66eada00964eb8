"""``govloop audit``: check the hash-chained ledger and the tables it records, list entries.

Both commands only read: they open the database that is there (read-only,
creating nothing) and fail with one line when it is missing or does not answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from govloop.cli.output import JsonOption, as_utc, console, fail, stderr
from govloop.cli.settings import resolved_settings
from govloop.config import Settings
from govloop.errors import GovloopError

if TYPE_CHECKING:
    from sqlmodel import Session

    from govloop.audit import CrossCheck, Verification

app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)


@contextmanager
def read_only_session(settings: Settings) -> Iterator[Session]:
    """A read-only session on the existing database; a one-line error if it cannot be read."""
    # here, not at the top: `govloop --help` loads no SQL library (tests/test_cli.py)
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from govloop.stores.sql.engine import open_existing

    try:
        engine = open_existing(settings)
    except GovloopError as exc:
        fail(str(exc))
    try:
        with Session(engine) as session:
            yield session
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"cannot read the audit tables: {reason}")
    finally:
        engine.dispose()


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
    """Check the chain, then every recorded table against it; exit 1 naming what is wrong.

    The chain: the first entry altered, removed, reordered, replaced or
    inserted.  The tables (gate results, policies, manifests, baselines, and
    the snapshots and drift alerts gate decisions read): every row altered,
    removed or added outside the ledger, with a summary per table.
    """
    settings = resolved_settings()
    from govloop.audit import Anchor, crosscheck
    from govloop.audit import verify as check

    pinned = None
    if anchor is not None:
        try:
            pinned = Anchor.parse(anchor)
        except ValueError as exc:
            fail(str(exc))
    with read_only_session(settings) as session:
        result = check(session, pinned)
        tables = crosscheck(session)
    if as_json:
        print(
            json.dumps(
                result.to_dict()
                | tables.to_dict()
                | {"ledger_ok": result.ok, "ok": result.ok and tables.ok},
                indent=2,
            )
        )
    else:
        _print_chain(result)
        _print_tables(tables)
    if not (result.ok and tables.ok):
        raise typer.Exit(1)


def _print_chain(result: Verification) -> None:
    """The chain's verdict: intact with the anchor to keep, or its first problem on stderr."""
    from rich.markup import escape

    if result.ok:
        console.print(
            f"[green]ledger intact:[/] {result.entries} entries, head {result.head_hash[:12]}"
        )
        if result.entries:
            console.print(
                f"anchor to keep elsewhere: {result.head_seq}:{result.head_hash}", soft_wrap=True
            )
        return
    p = result.problem
    assert p is not None
    stderr.print(f"[bold red]ledger broken[/] at entry {p.seq}: {p.reason}", soft_wrap=True)
    stderr.print(f"  kind {escape(p.kind or '-')}, ref {escape(p.ref or '-')}", soft_wrap=True)
    stderr.print(f"  {escape(p.detail)}", soft_wrap=True)
    stderr.print(
        f"  {result.entries} entries before it are intact "
        f"(up to entry {result.head_seq}, hash {result.head_hash[:12]})",
        soft_wrap=True,
    )


def _print_tables(tables: CrossCheck) -> None:
    """One summary line per table on stdout, then every row found wrong on stderr."""
    from rich.markup import escape

    for t in tables.tables:
        wrong = f"{t.altered} altered, {t.removed} removed, {t.unledgered} not in the ledger"
        extra = f"; {t.uncovered} not read by any gate decision, not covered" if t.uncovered else ""
        colour = "green" if t.ok else "bold red"
        console.print(
            f"[{colour}]{t.table}:[/] {t.checked} checked, {wrong}{extra}", soft_wrap=True
        )
    for problem in tables.problems:
        stderr.print(escape(str(problem)), soft_wrap=True, highlight=False)
    hidden = sum(t.altered + t.removed + t.unledgered for t in tables.tables) - len(tables.problems)
    if hidden > 0:
        stderr.print(f"... and {hidden} more rows (see the counts above)")


@app.command("log")
def log(
    kind: Annotated[
        str | None,
        typer.Option(
            help="Only this kind: gate_result, policy, manifest, baseline, experiment, dataset."
        ),
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

    with read_only_session(settings) as session:
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
