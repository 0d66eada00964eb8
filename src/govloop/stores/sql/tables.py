"""Every SQL table govloop keeps, in one place (sqlmodel).

The tables of the whole system of record are here, whatever writes them:
metric snapshots, gate policies, results and states, reference profiles,
drift alerts and status, baselines, manifests and the audit ledger.  Queries
live in the modules named after their domain; the audit ledger's hash chain
is :mod:`govloop.audit.ledger`, which writes :class:`LedgerEntry` and
:class:`LedgerHead`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "HEAD_ID",
    "BaselineRow",
    "CalibrationRow",
    "DriftAlertRow",
    "DriftStatusRow",
    "GatePolicyRow",
    "GateResultRow",
    "GateStateRow",
    "LedgerEntry",
    "LedgerHead",
    "ManifestRow",
    "MetricSnapshotRow",
    "ReferenceProfileRow",
]

#: The one row of :class:`LedgerHead`.
HEAD_ID = 1


class MetricSnapshotRow(SQLModel, table=True):
    __tablename__ = "metric_snapshots"

    event_id: str = Field(primary_key=True)
    model: str = Field(index=True)
    model_version: str
    window_start: datetime = Field(index=True)
    window_end: datetime
    # "tumbling" or "sliding"; the slice "" (overall), "variant" or "segment" (added in 0.2:
    # databases from before get the columns from init_db, their rows read as tumbling overall)
    window_kind: str = Field(default="tumbling", sa_column_kwargs={"server_default": "tumbling"})
    slice_kind: str = Field(default="", sa_column_kwargs={"server_default": ""})
    count: int
    accuracy: float | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))


class GatePolicyRow(SQLModel, table=True):
    __tablename__ = "gate_policies"

    policy_hash: str = Field(primary_key=True)
    name: str = Field(index=True)
    created_at: datetime
    body: str = Field(sa_column=Column(Text, nullable=False))


class GateResultRow(SQLModel, table=True):
    __tablename__ = "gate_results"

    event_id: str = Field(primary_key=True)
    policy: str = Field(index=True)
    policy_hash: str
    model: str = Field(index=True)
    model_version: str
    outcome: str
    ts: datetime = Field(index=True)
    trigger_event_id: str | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))


class GateStateRow(SQLModel, table=True):
    """An online gate's stable outcome per policy and model version (see gates.hysteresis)."""

    __tablename__ = "gate_state"

    policy: str = Field(primary_key=True)
    model: str = Field(primary_key=True)
    model_version: str = Field(primary_key=True)
    outcome: str
    recent: str  # JSON list of the latest raw outcomes, newest last
    since: datetime  # window end of the result that set the outcome
    changed_by: str  # that result's event id
    previous: str | None = None  # the outcome before that change
    last_window: datetime  # newest window start judged


class ReferenceProfileRow(SQLModel, table=True):
    """A versioned reference profile of one model version: what 'no drift' looks like."""

    __tablename__ = "reference_profiles"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    model_version: str = Field(index=True)
    version: int
    source: str
    created_at: datetime
    n: int
    body: str = Field(sa_column=Column(Text, nullable=False))


class CalibrationRow(SQLModel, table=True):
    """A model version's confidence calibration map, fitted on its reference period.

    ``state`` is ``pending`` while the reference period's windows are added
    (``last_window`` is the start of the newest one, so a window closed twice
    counts once), then ``fitted`` (``body`` is the map) or ``unlabelled`` (too
    few labels in the period: no map, the estimate stays uncalibrated).
    """

    __tablename__ = "calibrations"
    __table_args__ = (
        UniqueConstraint("model", "model_version", "version", name="uq_calibrations_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    model_version: str = Field(index=True)
    version: int
    state: str
    source: str
    created_at: datetime
    updated_at: datetime
    n_events: int
    n_labels: int
    last_window: float | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))


class DriftAlertRow(SQLModel, table=True):
    __tablename__ = "drift_alerts"

    event_id: str = Field(primary_key=True)
    model: str = Field(index=True)
    model_version: str
    feature: str
    state: str
    ts: datetime = Field(index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))


class DriftStatusRow(SQLModel, table=True):
    """The latest drift test of one feature of one model version, and its state."""

    __tablename__ = "drift_status"

    model: str = Field(primary_key=True)
    model_version: str = Field(primary_key=True)
    feature: str = Field(primary_key=True)
    test: str
    statistic: float
    threshold: float
    p_value: float | None = None
    drifted: bool
    state: str  # "drift" | "ok"
    since: datetime | None = None
    window_end: datetime
    reference_version: str
    n_current: int


class BaselineRow(SQLModel, table=True):
    """One version of a named baseline; ``body`` is ``{metric: MetricValue}`` as JSON."""

    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_baselines_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    source: str
    sha256: str | None = None
    model: str | None = None
    created_at: datetime
    body: str = Field(sa_column=Column(Text, nullable=False))


class ManifestRow(SQLModel, table=True):
    """A stored manifest; ``body`` is its JSON."""

    __tablename__ = "manifests"

    id: str = Field(primary_key=True)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))


class LedgerEntry(SQLModel, table=True):
    """One ledger entry; ``payload`` is canonical JSON text, ``model`` is for filtering."""

    __tablename__ = "audit_ledger"
    __table_args__ = (UniqueConstraint("kind", "ref", name="uq_audit_ledger_kind_ref"),)

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ts: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    kind: str
    ref: str
    model: str | None = Field(default=None, index=True)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str
    entry_hash: str


class LedgerHead(SQLModel, table=True):
    """The seq and hash of the last entry (seq 0 and the genesis hash before the first)."""

    __tablename__ = "audit_head"

    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    entry_hash: str
