"""The system of record: SQL tables (sqlmodel), the engine factory, idempotent writes.

SQLite by default, PostgreSQL in production; no module-level engine: callers
build one with :func:`create_engine_for` and pass a ``Session`` down.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Text, event, inspect, make_url, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from govloop.audit.ledger import append as audit_append  # registers the ledger tables
from govloop.audit.manifest import ManifestRow  # noqa: F401  (init_db creates its table)
from govloop.config import Settings
from govloop.schemas import DriftAlert, GateResult, MetricSnapshot
from govloop.stores.baselines import BaselineRow  # noqa: F401  (init_db creates its table)

__all__ = [
    "DriftAlertRow",
    "DriftStatusRow",
    "GatePolicyRow",
    "GateResultRow",
    "GateStateRow",
    "MetricSnapshotRow",
    "ReferenceProfileRow",
    "active_drift",
    "advance_gate",
    "create_engine_for",
    "drift_status",
    "gate_results",
    "init_db",
    "latest_reference",
    "latest_snapshot",
    "references",
    "save_drift_alert",
    "save_gate_result",
    "save_policy",
    "save_reference",
    "save_snapshot",
]


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


def create_engine_for(settings: Settings) -> Engine:
    """An engine for ``settings.database_url`` (SQLite files get WAL and a busy timeout)."""
    url = settings.database_url
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            # switching a new file to WAL while another process does the same can fail at
            # once with "database is locked" (SQLite skips the busy handler there): retry
            for attempt in range(100):
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(0.05)
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


#: Key of the PostgreSQL advisory lock that serialises schema creation.
_SCHEMA_LOCK = 0x6F766C70


def init_db(engine: Engine) -> None:
    """Create every table that does not exist yet (safe when several workers start at once)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        elif conn.dialect.name == "sqlite":
            # take the write lock before create_all looks: its check-then-CREATE otherwise
            # races another process ("table ... already exists", "database is locked")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        SQLModel.metadata.create_all(conn)
        _add_new_columns(conn)


def _add_new_columns(conn: Any) -> None:
    """Add the columns a table gained since it was created (each has a server default).

    create_all makes missing tables but leaves existing ones as they are; the
    few columns added since are all nullable or defaulted, so adding them is
    the whole migration.
    """
    present = inspect(conn)
    for table in SQLModel.metadata.sorted_tables:
        if not present.has_table(table.name):
            continue
        have = {c["name"] for c in present.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable and column.server_default is None:
                raise RuntimeError(f"cannot add column {table.name}.{column.name}: no default")
            quote = conn.dialect.identifier_preparer.quote
            ddl = (
                f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} "
                + column.type.compile(dialect=conn.dialect)
            )
            if column.server_default is not None:
                ddl += f" DEFAULT '{column.server_default.arg}'"  # type: ignore[attr-defined]
            if not column.nullable:
                ddl += " NOT NULL"
            conn.exec_driver_sql(ddl)


def _insert_once(session: Session, row: SQLModel) -> bool:
    """Insert ``row`` unless its primary key exists; True when it was new."""
    try:
        with session.begin_nested():
            session.add(row)
        return True
    except IntegrityError:
        return False


def save_snapshot(session: Session, snap: MetricSnapshot) -> bool:
    return _insert_once(
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


def save_gate_result(session: Session, result: GateResult) -> bool:
    """Insert a gate result once; a new one enters the audit ledger in the same savepoint."""
    body = result.model_dump_json(by_alias=True)
    row = GateResultRow(
        event_id=result.event_id,
        policy=result.policy,
        policy_hash=result.policy_hash,
        model=result.model,
        model_version=result.model_version,
        outcome=result.outcome,
        ts=result.ts,
        trigger_event_id=result.trigger_event_id,
        body=body,
    )
    inserted = False
    try:
        # one savepoint for both: pysqlite commits at the release of a savepoint that
        # opened the transaction, so the ledger entry must be written before it
        with session.begin_nested():
            session.add(row)
            session.flush()
            inserted = True
            audit_append(
                session, "gate_result", result.event_id, json.loads(body), model=result.model
            )
    except IntegrityError:
        if inserted:
            raise
        return False
    return True


def save_policy(
    session: Session, name: str, policy_hash: str, body: dict[str, Any], created_at: datetime
) -> bool:
    """Record a policy version once; a new one enters the audit ledger in the same savepoint."""
    if session.get(GatePolicyRow, policy_hash) is not None:
        return False
    inserted = False
    try:
        with session.begin_nested():
            session.add(
                GatePolicyRow(
                    policy_hash=policy_hash,
                    name=name,
                    created_at=created_at,
                    body=json.dumps(body, sort_keys=True),
                )
            )
            session.flush()
            inserted = True
            audit_append(
                session, "policy", policy_hash, {"name": name, "hash": policy_hash, "body": body}
            )
    except IntegrityError:
        if inserted:
            raise
        return False
    return True


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
    from govloop.gates.hysteresis import GateState, settle

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
        .limit(1)
    )
    row = session.exec(query).first()
    return None if row is None else MetricSnapshot.model_validate_json(row.body)


def active_drift(session: Session, model: str, model_version: str) -> list[DriftStatusRow]:
    """The features of a model version that are drifting now."""
    query = select(DriftStatusRow).where(
        DriftStatusRow.model == model,
        DriftStatusRow.model_version == model_version,
        DriftStatusRow.state == "drift",
    )
    return sorted(session.exec(query), key=lambda r: r.feature)


def save_drift_alert(session: Session, alert: DriftAlert) -> bool:
    return _insert_once(
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


def gate_results(session: Session, limit: int = 100) -> list[GateResult]:
    """The latest gate results, newest first."""
    rows = session.exec(select(GateResultRow).order_by(GateResultRow.ts.desc()).limit(limit))  # type: ignore[attr-defined]
    return [GateResult.model_validate_json(r.body) for r in rows]
