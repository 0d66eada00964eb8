"""The system of record: SQL tables (sqlmodel), the engine factory, idempotent writes.

SQLite by default, PostgreSQL in production; no module-level engine: callers
build one with :func:`create_engine_for` and pass a ``Session`` down.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Text, event, make_url, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from govloop.config import Settings
from govloop.schemas import GateResult, MetricSnapshot

__all__ = [
    "GatePolicyRow",
    "GateResultRow",
    "MetricSnapshotRow",
    "create_engine_for",
    "init_db",
    "save_gate_result",
    "save_policy",
    "save_snapshot",
]


class MetricSnapshotRow(SQLModel, table=True):
    __tablename__ = "metric_snapshots"

    event_id: str = Field(primary_key=True)
    model: str = Field(index=True)
    model_version: str
    window_start: datetime = Field(index=True)
    window_end: datetime
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
            count=snap.count,
            accuracy=snap.accuracy,
            body=snap.model_dump_json(by_alias=True),
        ),
    )


def save_gate_result(session: Session, result: GateResult) -> bool:
    return _insert_once(
        session,
        GateResultRow(
            event_id=result.event_id,
            policy=result.policy,
            policy_hash=result.policy_hash,
            model=result.model,
            model_version=result.model_version,
            outcome=result.outcome,
            ts=result.ts,
            trigger_event_id=result.trigger_event_id,
            body=result.model_dump_json(by_alias=True),
        ),
    )


def save_policy(session: Session, name: str, policy_hash: str, body: dict[str, Any],
                created_at: datetime) -> bool:
    if session.get(GatePolicyRow, policy_hash) is not None:
        return False
    return _insert_once(
        session,
        GatePolicyRow(policy_hash=policy_hash, name=name, created_at=created_at,
                      body=json.dumps(body, sort_keys=True)),
    )


def gate_results(session: Session, limit: int = 100) -> list[GateResult]:
    """The latest gate results, newest first."""
    rows = session.exec(select(GateResultRow).order_by(GateResultRow.ts.desc()).limit(limit))  # type: ignore[attr-defined]
    return [GateResult.model_validate_json(r.body) for r in rows]
