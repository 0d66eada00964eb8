"""Calibration maps of the label-free accuracy estimate, one per model version, in SQL.

A version's reference period is its first ``period_events`` predictions, in
the windows that hold them: as each of those windows closes, its labelled and
correct counts per confidence bin (``cl:<bin>``, ``cc:<bin>``, the labels that
arrived in it) are added to the version's pending map.  The window that
completes the period fits the map (:class:`~govloop.stats.BinnedCalibration`),
or, with fewer than ``min_labels`` labels, records that the version has none.
Windows are added once (by start; one closing again after a crash, or closing
after a later one, is not added) and only their first snapshot counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from sqlmodel import Session, select

from govloop.stats import CONFIDENCE_EDGES, BinnedCalibration
from govloop.stats.binning import bin_counts
from govloop.stats.windows import BIN_COUNTERS
from govloop.stores.sql.tables import CalibrationRow

__all__ = [
    "Calibration",
    "ReferenceWindow",
    "calibrate_windows",
    "fitted_calibration",
    "latest_calibration",
]


class ReferenceWindow(NamedTuple):
    """A closed overall window of a model version: its start and raw counters."""

    model: str
    model_version: str
    start: float
    counters: Mapping[str, int]


class Calibration(NamedTuple):
    """A fitted map and how snapshots name it (``v1: first 1000 events, 412 labels``)."""

    map: BinnedCalibration
    label: str


def latest_calibration(
    session: Session, model: str, model_version: str, for_update: bool = False
) -> CalibrationRow | None:
    """The newest calibration row of a model version (locked for update if asked)."""
    query = (
        select(CalibrationRow)
        .where(CalibrationRow.model == model, CalibrationRow.model_version == model_version)
        .order_by(CalibrationRow.version.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def fitted_calibration(session: Session, model: str, model_version: str) -> Calibration | None:
    """A model version's fitted map, if it has one."""
    return _fitted(latest_calibration(session, model, model_version))


def _fitted(row: CalibrationRow | None) -> Calibration | None:
    if row is None or row.state != "fitted":
        return None
    label = f"v{row.version}: {row.source}, {row.n_labels} labels"
    return Calibration(BinnedCalibration.from_dict(json.loads(row.body)), label)


def calibrate_windows(
    session: Session,
    windows: Iterable[ReferenceWindow],
    period_events: int,
    min_labels: int,
    now: datetime,
) -> dict[tuple[str, str], Calibration | None]:
    """Add closing windows to their versions' reference periods; return each version's map.

    ``period_events`` 0 calibrates nothing (every version's map is None).
    The caller commits.
    """
    bins = len(CONFIDENCE_EDGES) + 1
    out: dict[tuple[str, str], Calibration | None] = {}
    for w in sorted(windows, key=lambda w: (w.model, w.model_version, w.start)):
        key = (w.model, w.model_version)
        if period_events <= 0:
            out[key] = None
            continue
        row = latest_calibration(session, w.model, w.model_version, for_update=True)
        if row is None:
            row = CalibrationRow(
                model=w.model,
                model_version=w.model_version,
                version=1,
                state="pending",
                source=f"first {period_events} events",
                created_at=now,
                updated_at=now,
                n_events=0,
                n_labels=0,
                last_window=None,
                body=json.dumps({"labelled": [0] * bins, "correct": [0] * bins}),
            )
        if row.state == "pending" and (row.last_window is None or w.start > row.last_window):
            body = json.loads(row.body)
            labelled = [
                a + b
                for a, b in zip(
                    body["labelled"], bin_counts(w.counters, BIN_COUNTERS[1], bins), strict=True
                )
            ]
            correct = [
                a + b
                for a, b in zip(
                    body["correct"], bin_counts(w.counters, BIN_COUNTERS[2], bins), strict=True
                )
            ]
            row.n_events += int(w.counters.get("count", 0))
            row.n_labels = sum(labelled)
            row.last_window = w.start
            row.updated_at = now
            row.body = json.dumps({"labelled": labelled, "correct": correct})
            if row.n_events >= period_events:
                row.source = f"first {row.n_events} events"
                if row.n_labels >= min_labels:
                    fitted = BinnedCalibration(
                        tuple(labelled), tuple(correct), CONFIDENCE_EDGES, min_labels
                    )
                    row.state, row.body = "fitted", json.dumps(fitted.to_dict())
                else:
                    row.state = "unlabelled"
            session.add(row)
            session.flush()
        out[key] = _fitted(row)
    return out
