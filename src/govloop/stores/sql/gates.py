"""Gate policies, results and online gate state.

A policy version and a gate result are recorded together with their audit
ledger entry (:mod:`govloop.audit.records`); this module builds their rows
and keeps each online gate's stable outcome (:func:`advance_gate`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from govloop.gates.hysteresis import GateState, settle
from govloop.schemas import GateResult
from govloop.stores.sql.tables import GatePolicyRow, GateResultRow, GateStateRow

__all__ = ["advance_gate", "gate_result_row", "gate_results", "policy_row"]


def gate_result_row(result: GateResult) -> GateResultRow:
    """The row of a gate result (its ``body`` is the event's JSON)."""
    return GateResultRow(
        event_id=result.event_id,
        policy=result.policy,
        policy_hash=result.policy_hash,
        model=result.model,
        model_version=result.model_version,
        outcome=result.outcome,
        ts=result.ts,
        trigger_event_id=result.trigger_event_id,
        body=result.model_dump_json(by_alias=True),
    )


def policy_row(
    name: str, policy_hash: str, body: dict[str, Any], created_at: datetime
) -> GatePolicyRow:
    """The row of one policy version (``body`` is the policy as JSON)."""
    return GatePolicyRow(
        policy_hash=policy_hash,
        name=name,
        created_at=created_at,
        body=json.dumps(body, sort_keys=True),
    )


def advance_gate(
    session: Session, result: GateResult, recover: int, new: bool = True
) -> GateResult | None:
    """Apply an online gate result to its gate's state; the result to publish, if any.

    Returns the result with ``previous_outcome`` set when it changed the
    gate's stable outcome (:func:`govloop.gates.hysteresis.settle`), else
    None.  A result that is not ``new`` (:func:`save_gate_result` found it
    stored: a redelivery) changes nothing, but if it was the one that changed
    the state it is returned again, so a crash between commit and publish
    cannot lose the change.  The state row is locked for the update
    (PostgreSQL), so two workers judging one model (a snapshot and a drift
    alert) take turns.
    """
    assert result.window_start is not None and result.window_end is not None
    key = (result.policy, result.model, result.model_version)
    row = session.get(GateStateRow, key, with_for_update=True)
    if not new:
        if row is not None and row.changed_by == result.event_id:
            return result.model_copy(update={"previous_outcome": row.previous})
        return None
    state = (
        GateState(None) if row is None else GateState(row.outcome, tuple(json.loads(row.recent)))  # type: ignore[arg-type]
    )
    after, changed = settle(state, result.outcome, recover)
    if row is None:
        row = GateStateRow(
            policy=result.policy,
            model=result.model,
            model_version=result.model_version,
            outcome=result.outcome,
            recent="[]",
            since=result.window_end,
            changed_by=result.event_id,
            last_window=result.window_start,
        )
    published = None
    if changed:
        published = result.model_copy(update={"previous_outcome": state.outcome})
        row.since, row.changed_by, row.previous = result.window_end, result.event_id, state.outcome
    row.outcome = after.outcome or result.outcome
    row.recent = json.dumps(list(after.recent))
    if _naive(result.window_start) > _naive(row.last_window):
        row.last_window = result.window_start
    session.add(row)
    return published


def _naive(when: datetime) -> datetime:
    """UTC without tzinfo: SQLite gives stored datetimes back naive, PostgreSQL aware."""
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def gate_results(session: Session, limit: int = 100) -> list[GateResult]:
    """The latest gate results, newest first."""
    rows = session.exec(select(GateResultRow).order_by(GateResultRow.ts.desc()).limit(limit))  # type: ignore[attr-defined]
    return [GateResult.model_validate_json(r.body) for r in rows]
