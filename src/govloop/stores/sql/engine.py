"""The engine factory, schema creation and the idempotent insert every store uses.

SQLite by default, PostgreSQL in production; no module-level engine: callers
build one with :func:`create_engine_for` and pass a ``Session`` down.  Commands
that only read (``govloop audit verify``) use :func:`open_existing` instead,
which creates nothing and refuses a database that is not there.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlmodel import Session, SQLModel, create_engine

import govloop.stores.sql.tables  # noqa: F401  (registers every table for init_db)
from govloop.config import Settings
from govloop.errors import ConfigError, RuntimeUnavailable
from govloop.redact import redact_url

__all__ = ["create_engine_for", "init_db", "insert_once", "open_existing"]


def create_engine_for(settings: Settings) -> Engine:
    """An engine for ``settings.database_url`` (SQLite files get WAL and a busy timeout).

    A URL that is none, or a SQLite file whose directory cannot be made, is a
    :class:`~govloop.errors.ConfigError` naming ``GOVLOOP_DB_URL``.
    """
    url = settings.database_url
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            "GOVLOOP_DB_URL is not a database URL (expected e.g. sqlite:///path/to/govloop.db "
            "or postgresql://user@host/db)"
        ) from exc
    if url.startswith("sqlite"):
        path = parsed.database
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"GOVLOOP_DB_URL: cannot make the directory of {path}: {exc.strerror}"
                ) from exc
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


def open_existing(settings: Settings, required: str = "audit_ledger") -> Engine:
    """A read-only engine on the existing database of ``settings``; nothing is created.

    A mistyped SQLite path must not become a new, empty database that then
    reads as "nothing wrong": a missing file, a database that does not answer
    and one without the ``required`` table are each a :class:`ConfigError` or
    :class:`RuntimeUnavailable` naming the database (password hidden).
    SQLite is opened with ``mode=ro``, PostgreSQL sessions are READ ONLY.
    """
    url = settings.database_url
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            "the database URL is not one (expected e.g. sqlite:///path/to/govloop.db or "
            "postgresql://user@host/db): check GOVLOOP_DB_URL"
        ) from exc
    shown = redact_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_read_only(parsed.database, shown)
    else:
        engine = create_engine_for(settings)
        event.listen(engine, "connect", _read_only_session)
    try:
        with engine.connect() as conn:
            present = inspect(conn).has_table(required)
    except DBAPIError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RuntimeUnavailable(f"cannot open the database {shown}: {reason}") from exc
    if not present:
        engine.dispose()
        raise ConfigError(f"{shown} is not a govloop database: it has no {required} table")
    return engine


def _sqlite_read_only(path: str | None, shown: str) -> Engine:
    """An engine that opens the SQLite file ``path`` read-only, after checking it exists."""
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError(f"{shown}: give the path of an existing SQLite file to read")
    file = Path(path)
    if not file.is_file():
        where = "a directory" if file.is_dir() else "no such file"
        raise ConfigError(f"no database at {file} ({where}): check GOVLOOP_DB_URL or GOVLOOP_HOME")
    uri = file.resolve().as_uri() + "?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)

    return create_engine("sqlite://", creator=connect)


def _read_only_session(dbapi_conn: Any, _record: Any) -> None:
    """Make every transaction of a new PostgreSQL connection READ ONLY."""
    cursor = dbapi_conn.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_conn.commit()


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


def insert_once(session: Session, row: SQLModel) -> bool:
    """Insert ``row`` unless its primary key exists; True when it was new."""
    try:
        with session.begin_nested():
            session.add(row)
        return True
    except IntegrityError:
        return False
