"""``govloop gate log``: the online gate results the workers stored in SQL, newest last.

Every result is stored (the gates topic carries only changes of a gate's
state), so this is the full history of each online gate.  ``--follow`` polls
the database for new results until Ctrl-C.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from govloop.cli.output import console, open_session, shown
from govloop.cli.settings import resolved_settings

if TYPE_CHECKING:
    from sqlmodel import Session

    from govloop.schemas import GateResult

__all__ = ["log"]

#: A result is stamped when its snapshot was made; two workers' results can reach SQL
#: out of that order by up to a window close, so a follow looks back this far.
FOLLOW_LOOKBACK = timedelta(minutes=2)
_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "inconclusive": "magenta"}


def _query(
    session: Session,
    model: str | None,
    policy: str | None,
    include_offline: bool,
    since: datetime | None,
    limit: int | None,
) -> list[GateResult]:
    """Matching results, oldest first: the newest ``limit``, or every one from ``since``."""
    from sqlmodel import select

    from govloop.schemas import GateResult
    from govloop.stores.sql import GateResultRow

    row = GateResultRow
    query = select(row)
    if model is not None:
        query = query.where(row.model == model)
    if policy is not None:
        query = query.where(row.policy == policy)
    if not include_offline:
        query = query.where(row.trigger_event_id.is_not(None))  # type: ignore[union-attr]
    if since is not None:
        query = query.where(row.ts >= since)
    query = query.order_by(row.ts.desc(), row.event_id.desc())  # type: ignore[attr-defined]
    if limit is not None:
        query = query.limit(limit)
    return [GateResult.model_validate_json(r.body) for r in session.exec(query)][::-1]


def _as_dict(result: GateResult) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True)


def _line(result: GateResult) -> str:
    """One result as one line of text (every user string escaped)."""
    style = _STYLE.get(result.outcome, "")
    window = (
        f"{result.window_start:%Y-%m-%d %H:%M:%S}-{result.window_end:%H:%M:%S}"
        if result.window_start is not None and result.window_end is not None
        else "offline"
    )
    failed = [r.rule for r in result.rules if r.outcome in ("fail", "inconclusive")]
    change = (
        f" (was {result.previous_outcome})"
        if result.previous_outcome and result.previous_outcome != result.outcome
        else ""
    )
    return (
        f"{result.ts:%Y-%m-%d %H:%M:%S} {shown(result.model)} {shown(result.model_version)} "
        f"window {window} policy {shown(result.policy)}: [{style}]{result.outcome}[/]{change}"
        + (f" rules {shown(', '.join(failed))}" if failed else "")
        + f" id {result.event_id}"
    )


def _emit(results: list[GateResult], as_json: bool) -> None:
    for r in results:
        if as_json:
            print(json.dumps(_as_dict(r)), flush=True)
        else:
            console.print(_line(r), soft_wrap=True, highlight=False)


def log(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    policy: Annotated[str | None, typer.Option(help="Only this policy.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Results to show at most.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new results until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="With --follow: seconds between two looks.")
    ] = 1.0,
    include_offline: Annotated[
        bool, typer.Option("--all", help="Also results recorded by `gate check --record`.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")
    ] = False,
) -> None:
    """Online gate results stored in SQL, newest last; --follow for new ones."""
    settings = resolved_settings()
    with open_session(settings) as session:
        shown_results = _query(session, model, policy, include_offline, None, limit)
    if not shown_results and not follow and not as_json:
        console.print("no gate results yet: the workers judge each window as it closes")
    _emit(shown_results, as_json)
    if not follow:
        return
    seen = {r.event_id: r.ts for r in shown_results}
    newest = max(seen.values(), default=datetime.now(UTC) - FOLLOW_LOOKBACK)
    try:
        while True:
            time.sleep(interval)
            with open_session(settings) as session:
                found = _query(
                    session, model, policy, include_offline, newest - FOLLOW_LOOKBACK, None
                )
            new = [r for r in found if r.event_id not in seen]
            _emit(new, as_json)
            seen |= {r.event_id: r.ts for r in new}
            newest = max([newest, *seen.values()])
            # only what a later look can return again needs remembering
            seen = {k: ts for k, ts in seen.items() if ts >= newest - FOLLOW_LOOKBACK}
    except KeyboardInterrupt:
        return
