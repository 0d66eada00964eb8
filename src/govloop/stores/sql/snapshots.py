"""Metric snapshots: stored once per event id, read back per model version or time range."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from govloop.gates.evidence import metrics_from_snapshots
from govloop.schemas import MetricSnapshot
from govloop.stores.sql.engine import insert_once
from govloop.stores.sql.tables import MetricSnapshotRow

__all__ = [
    "latest_revisions",
    "latest_snapshot",
    "save_snapshot",
    "version_windows",
    "window_metrics",
]


def save_snapshot(session: Session, snap: MetricSnapshot) -> bool:
    return insert_once(
        session,
        MetricSnapshotRow(
            event_id=snap.event_id,
            model=snap.model,
            model_version=snap.model_version,
            window_start=snap.window_start,
            window_end=snap.window_end,
            window_kind=snap.window,
            slice_kind="variant" if snap.variant is not None else "segment" if snap.segment else "",
            count=snap.count,
            accuracy=snap.accuracy,
            body=snap.model_dump_json(by_alias=True),
        ),
    )


def latest_snapshot(session: Session, model: str, model_version: str) -> MetricSnapshot | None:
    """A model version's newest overall tumbling snapshot."""
    query = (
        select(MetricSnapshotRow)
        .where(
            MetricSnapshotRow.model == model,
            MetricSnapshotRow.model_version == model_version,
            MetricSnapshotRow.window_kind == "tumbling",
            MetricSnapshotRow.slice_kind == "",
        )
        .order_by(MetricSnapshotRow.window_start.desc())  # type: ignore[attr-defined]
        .limit(16)  # the newest window's revisions, if late events amended it
    )
    rows = list(session.exec(query))
    newest = [MetricSnapshot.model_validate_json(r.body) for r in rows]
    newest = [s for s in newest if s.window_start == newest[0].window_start]
    return max(newest, key=lambda s: s.revision) if newest else None


def version_windows(
    session: Session, model: str, model_version: str, before: datetime
) -> list[MetricSnapshot]:
    """A model version's overall tumbling windows that start before ``before``, each its
    latest revision, oldest first: the evidence accumulated before a window is judged."""
    query = select(MetricSnapshotRow).where(
        MetricSnapshotRow.model == model,
        MetricSnapshotRow.model_version == model_version,
        MetricSnapshotRow.window_kind == "tumbling",
        MetricSnapshotRow.slice_kind == "",
        MetricSnapshotRow.window_start < before,
    )
    return latest_revisions(
        [MetricSnapshot.model_validate_json(r.body) for r in session.exec(query)]
    )


def window_metrics(
    session: Session,
    model: str,
    model_version: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[dict[str, Any], int]:
    """Metrics over the stored tumbling, whole-model snapshots of a model in a time range.

    Counts are summed and rates recomputed from them (sliding windows overlap
    and slices repeat the whole, so both are left out).  Returns the metrics
    and the number of snapshots used.
    """
    query = select(MetricSnapshotRow).where(MetricSnapshotRow.model == model)
    if model_version is not None:
        query = query.where(MetricSnapshotRow.model_version == model_version)
    if since is not None:
        query = query.where(MetricSnapshotRow.window_start >= since)
    if until is not None:
        query = query.where(MetricSnapshotRow.window_end <= until)
    snaps = [MetricSnapshot.model_validate_json(r.body) for r in session.exec(query)]
    whole = [s for s in snaps if s.window == "tumbling" and s.segment is None and s.variant is None]
    whole = latest_revisions(whole)
    return metrics_from_snapshots(whole), len(whole)


def latest_revisions(snaps: list[MetricSnapshot]) -> list[MetricSnapshot]:
    """Each window's newest revision only (an amendment holds the whole window's counts)."""
    newest: dict[tuple[str, str, datetime], MetricSnapshot] = {}
    for snap in snaps:
        key = (snap.model, snap.model_version, snap.window_start)
        if key not in newest or snap.revision > newest[key].revision:
            newest[key] = snap
    return sorted(newest.values(), key=lambda s: s.window_start)
