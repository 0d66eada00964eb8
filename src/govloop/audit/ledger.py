"""The hash-chained audit ledger: one append-only table, written in the caller's transaction.

Every entry carries the SHA-256 of the entry before it (``prev_hash``; the first
one carries :data:`GENESIS_HASH`) and of its own canonical JSON
(``entry_hash``).  A single-row table, ``audit_head``, holds the seq and hash
of the last entry; it is updated in the same transaction, so removing the tail
of the ledger without also rewinding the head is visible.  What the chain can
and cannot prove is checked by :func:`govloop.audit.verify` and explained in
``docs/audit.md``.

Appenders are serialised: PostgreSQL by a transaction-level advisory lock,
SQLite by the database write lock, taken (like ``BEGIN IMMEDIATE``) before
the head is read.  Both are held until the caller's transaction ends, so the
entry commits or rolls back with the thing it records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from govloop.schemas.base import as_utc
from govloop.stores.sql.tables import HEAD_ID, LedgerEntry, LedgerHead

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "LedgerEntry",
    "LedgerHead",
    "append",
    "canonical_json",
    "entries",
    "entry_hash",
    "read_head",
]

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64

#: The kinds govloop records; others are accepted if they match ``[a-z][a-z0-9_]*``.
KINDS = ("gate_result", "policy", "manifest", "baseline", "experiment", "dataset")

#: Key of the PostgreSQL advisory lock that serialises appenders.
_LEDGER_LOCK = 0x6F766C61
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


def canonical_json(obj: Any) -> bytes:
    """The one byte form that is hashed: sorted keys, no spaces, UTF-8, no NaN or infinity.

    >>> canonical_json({"b": [1, 2.5, None], "a": "é"})
    b'{"a":"\\xc3\\xa9","b":[1,2.5,null]}'
    >>> canonical_json({"x": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: Out of range float values are not JSON compliant...
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def entry_hash(
    seq: int, ts: datetime, kind: str, ref: str, model: str | None, payload: str, prev_hash: str
) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's content, ``payload`` parsed.

    The exact bytes, so the chain can be checked without govloop:

    >>> h = entry_hash(1, datetime(2030, 1, 1, tzinfo=UTC), "policy", "p1", None,
    ...                '{"a": 1}', GENESIS_HASH)
    >>> content = ('{"kind":"policy","model":null,"payload":{"a":1},"prev_hash":"'
    ...            + GENESIS_HASH + '","ref":"p1","seq":1,"ts":"2030-01-01T00:00:00.000000Z"}')
    >>> h == hashlib.sha256(content.encode()).hexdigest()
    True
    """
    content = {
        "seq": seq,
        "ts": as_utc(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "kind": kind,
        "ref": ref,
        "model": model,
        "payload": json.loads(payload),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(content)).hexdigest()


def _lock(session: Session) -> None:
    """Serialise appenders until the transaction ends and make sure the head row exists.

    The head upsert is a write, so on SQLite it takes the database write lock
    before anything is read (what ``BEGIN IMMEDIATE`` would do); readers go on.
    """
    conn = session.connection()
    values: dict[str, Any] = {"id": HEAD_ID, "seq": 0, "entry_hash": GENESIS_HASH}
    table = LedgerHead.__table__  # type: ignore[attr-defined]
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LEDGER_LOCK})
        conn.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())
    elif read_head(session) is None:  # pragma: no cover - govloop supports the two above
        session.add(LedgerHead(**values))
        session.flush()


def read_head(session: Session) -> LedgerHead | None:
    """The head record as stored now (not a stale copy from the session's identity map)."""
    query = (
        select(LedgerHead).where(LedgerHead.id == HEAD_ID).execution_options(populate_existing=True)
    )
    return session.exec(query).first()


def append(
    session: Session,
    kind: str,
    ref: str,
    payload: Mapping[str, Any],
    *,
    model: str | None = None,
    ts: datetime | None = None,
) -> LedgerEntry:
    """Append an entry in the caller's transaction; the existing one if ``(kind, ref)`` is in.

    ``ref`` names the thing recorded (a gate result's ``event_id``, a policy's
    hash); the first entry recorded for it wins, so an at-least-once worker
    can call this again safely.  The caller commits.  On PostgreSQL the
    transaction must be READ COMMITTED (the default) so the head read after
    the lock is current; under a stricter level a concurrent append makes the
    head update fail rather than fork the chain.
    """
    if not _KIND.fullmatch(kind):
        raise ValueError(f"ledger kind must match [a-z][a-z0-9_]*, got {kind!r}")
    if not ref:
        raise ValueError("ledger ref must not be empty")
    body = canonical_json(dict(payload)).decode()
    _lock(session)
    existing = session.exec(
        select(LedgerEntry).where(LedgerEntry.kind == kind, LedgerEntry.ref == ref)
    ).first()
    if existing is not None:
        return existing
    head = read_head(session)
    assert head is not None  # created by _lock
    when = as_utc(ts) if ts is not None else datetime.now(UTC)
    seq = head.seq + 1
    entry = LedgerEntry(
        seq=seq,
        ts=when,
        kind=kind,
        ref=ref,
        model=model,
        payload=body,
        prev_hash=head.entry_hash,
        entry_hash=entry_hash(seq, when, kind, ref, model, body, head.entry_hash),
    )
    head.seq, head.entry_hash = seq, entry.entry_hash
    session.add(entry)
    session.add(head)
    session.flush()
    return entry


def entries(
    session: Session,
    kind: str | None = None,
    ref: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[LedgerEntry]:
    """Entries matching every filter given, newest first; ``since`` inclusive, ``until`` not."""
    query = select(LedgerEntry)
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    if ref is not None:
        query = query.where(LedgerEntry.ref == ref)
    if model is not None:
        query = query.where(LedgerEntry.model == model)
    if since is not None:
        query = query.where(LedgerEntry.ts >= as_utc(since))
    if until is not None:
        query = query.where(LedgerEntry.ts < as_utc(until))
    query = query.order_by(LedgerEntry.seq.desc()).limit(limit)  # type: ignore[attr-defined]
    return list(session.exec(query))
