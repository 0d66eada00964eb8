"""Drift: alerts (once per event id), each feature's latest status, reference profiles."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from govloop.schemas import DriftAlert
from govloop.stores.sql.engine import insert_once
from govloop.stores.sql.tables import DriftAlertRow, DriftStatusRow, ReferenceProfileRow

__all__ = [
    "active_drift",
    "drift_status",
    "latest_reference",
    "references",
    "save_drift_alert",
    "save_reference",
]


def active_drift(session: Session, model: str, model_version: str) -> list[DriftStatusRow]:
    """The features of a model version that are drifting now."""
    query = select(DriftStatusRow).where(
        DriftStatusRow.model == model,
        DriftStatusRow.model_version == model_version,
        DriftStatusRow.state == "drift",
    )
    return sorted(session.exec(query), key=lambda r: r.feature)


def save_drift_alert(session: Session, alert: DriftAlert) -> bool:
    return insert_once(
        session,
        DriftAlertRow(
            event_id=alert.event_id,
            model=alert.model,
            model_version=alert.model_version,
            feature=alert.feature,
            state=alert.state,
            ts=alert.ts,
            body=alert.model_dump_json(by_alias=True),
        ),
    )


def drift_status(session: Session, model: str | None = None) -> list[DriftStatusRow]:
    """Latest drift status per feature, drifting features first."""
    query = select(DriftStatusRow)
    if model is not None:
        query = query.where(DriftStatusRow.model == model)
    rows = list(session.exec(query))
    return sorted(rows, key=lambda r: (r.model, r.model_version, r.state != "drift", r.feature))


def save_reference(
    session: Session,
    model: str,
    model_version: str,
    source: str,
    n: int,
    body: dict[str, Any],
    created_at: datetime,
) -> ReferenceProfileRow:
    """Store a new version of a model version's reference profile and return it."""
    latest = latest_reference(session, model, model_version)
    row = ReferenceProfileRow(
        model=model,
        model_version=model_version,
        version=1 if latest is None else latest.version + 1,
        source=source,
        created_at=created_at,
        n=n,
        body=json.dumps(body),
    )
    session.add(row)
    session.flush()
    return row


def latest_reference(
    session: Session, model: str, model_version: str
) -> ReferenceProfileRow | None:
    """The newest reference profile of a model version, if any."""
    query = (
        select(ReferenceProfileRow)
        .where(
            ReferenceProfileRow.model == model, ReferenceProfileRow.model_version == model_version
        )
        .order_by(ReferenceProfileRow.version.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    return session.exec(query).first()


def references(session: Session, model: str | None = None) -> list[ReferenceProfileRow]:
    """Every stored reference profile (of one model), newest version first."""
    query = select(ReferenceProfileRow)
    if model is not None:
        query = query.where(ReferenceProfileRow.model == model)
    return list(
        session.exec(
            query.order_by(
                ReferenceProfileRow.model,
                ReferenceProfileRow.model_version,
                ReferenceProfileRow.version.desc(),  # type: ignore[attr-defined]
            )
        )
    )  # type: ignore[attr-defined]
