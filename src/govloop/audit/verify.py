"""Checking the audit trail: the ledger's chain, then the recorded tables against it.

:func:`verify` walks the chain in seq order and names the first entry that is
wrong.  Reasons a :class:`Problem` can give, and how each is recognised:

    altered     the row's content does not hash to its ``entry_hash`` (a value, its
                ``prev_hash`` or its ``entry_hash`` was changed), and it does not fit
                any other position either
    removed     a seq is missing (gap), the rows after a deletion were renumbered to
                close the gap, the ledger ends before the head record or the anchor
                says it should, or the head record itself is gone
    reordered   the row hashes correctly for another seq: rows were swapped or moved
    replaced    the row hashes correctly for its seq but is not the entry its
                successor, the head record or the anchor was chained to: it was
                rewritten and its hash recomputed
    inserted    a row outside the chain: beyond the head record, or a seq below 1

Without an external anchor, someone who can write the database can rewrite
the tail (or the whole chain) and recompute every hash; :class:`Anchor` pins
an entry's hash that was saved elsewhere (see ``docs/audit.md``).

An intact chain says nothing of the tables users query, which are edited with
plain SQL.  :func:`crosscheck` holds each recorded row to the entry that
recorded it and names every :class:`RowProblem`:

    altered             the row does not read as its entry (or, for a snapshot or
                        drift alert, as the manifest that read it) recorded it
    removed             an entry (or a manifest input) names a row that is gone
    not in the ledger   a row of a recorded table that no entry records
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import Session, SQLModel, select

from govloop.audit.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    canonical_json,
    entry_hash,
    read_head,
)
from govloop.audit.manifest import event_digest
from govloop.schemas import DriftAlert, Event, MetricSnapshot
from govloop.schemas.base import as_utc
from govloop.stores.sql.tables import (
    BaselineRow,
    DriftAlertRow,
    GatePolicyRow,
    GateResultRow,
    ManifestRow,
    MetricSnapshotRow,
)

__all__ = [
    "MAX_PROBLEMS",
    "Anchor",
    "CrossCheck",
    "Problem",
    "Reason",
    "RowProblem",
    "RowReason",
    "TableSummary",
    "Verification",
    "crosscheck",
    "verify",
]

Reason = Literal["altered", "removed", "reordered", "replaced", "inserted"]
_ANCHOR = re.compile(r"(\d+):([0-9a-f]{12,64})")


@dataclass(frozen=True)
class Anchor:
    """An entry's seq and hash (or a prefix of 12+ hex digits) saved outside the database.

    >>> Anchor.parse("42:9F2C1A2B3C4D")
    Anchor(seq=42, hash='9f2c1a2b3c4d')
    """

    seq: int
    hash: str

    @classmethod
    def parse(cls, value: str) -> Anchor:
        match = _ANCHOR.fullmatch(value.strip().lower())
        if match is None or int(match[1]) < 1:
            raise ValueError(f"an anchor is SEQ:HASH with 12 to 64 hex digits, got {value!r}")
        return cls(int(match[1]), match[2])


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the ledger: at which seq, why, and which entry is there."""

    seq: int
    reason: Reason
    detail: str
    kind: str | None = None
    ref: str | None = None

    def __str__(self) -> str:
        what = f" ({self.kind} {self.ref})" if self.kind is not None else ""
        return f"entry {self.seq}{what} {self.reason}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`: how many entries are intact and the last of them.

    With a problem, ``entries``, ``head_seq`` and ``head_hash`` describe the
    intact prefix before ``problem.seq``.
    """

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problem: Problem | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _short(h: str) -> str:
    return h[:12]


def _valid_at(row: LedgerEntry, seq: int) -> bool:
    try:
        return (
            entry_hash(seq, row.ts, row.kind, row.ref, row.model, row.payload, row.prev_hash)
            == row.entry_hash
        )
    except ValueError:  # payload is not JSON
        return False


def _canonical(payload: str) -> bool:
    try:
        return canonical_json(json.loads(payload)).decode() == payload
    except ValueError:
        return False


def _by(session: Session, column: Any, value: str) -> LedgerEntry | None:
    return session.exec(select(LedgerEntry).where(column == value).limit(1)).first()


class _Walk:
    """State of the walk: the last good entry, and the checks of the next row."""

    def __init__(self, session: Session, anchor: Anchor | None) -> None:
        self.session = session
        self.anchor = anchor
        self.count = 0
        self.last: LedgerEntry | None = None

    @property
    def last_seq(self) -> int:
        return 0 if self.last is None else self.last.seq

    @property
    def last_hash(self) -> str:
        return GENESIS_HASH if self.last is None else self.last.entry_hash

    def feed(self, rows: Iterable[LedgerEntry]) -> Problem | None:
        for row in rows:
            problem = self._check(row)
            if problem is not None:
                return problem
            self.last, self.count = row, self.count + 1
        return None

    def _check(self, row: LedgerEntry) -> Problem | None:
        s, p = row.seq, self.last_seq
        if s < 1:
            return Problem(
                s, "inserted", "seqs start at 1: this row was never appended", row.kind, row.ref
            )
        if s != p + 1:
            missing = f"entry {p + 1} is" if s == p + 2 else f"entries {p + 1} to {s - 1} are"
            return Problem(
                p + 1,
                "removed",
                f"{missing} missing: entry {s} follows {'the start' if p == 0 else f'entry {p}'}",
            )
        if not _canonical(row.payload):
            return Problem(
                s,
                "altered",
                "its payload is not the canonical JSON that was hashed (edited by hand)",
                row.kind,
                row.ref,
            )
        if not _valid_at(row, s):
            return self._misplaced(row)
        if row.prev_hash != self.last_hash:
            if p == 0:
                return Problem(
                    s,
                    "replaced",
                    f"it hashes correctly but is chained to "
                    f"{_short(row.prev_hash)}, not to the genesis hash: it was "
                    "forged with a recomputed hash",
                    row.kind,
                    row.ref,
                )
            last = self.last
            assert last is not None
            return Problem(
                p,
                "replaced",
                f"it hashes correctly but entry {s} was chained to "
                f"an entry {p} with hash {_short(row.prev_hash)}, not "
                f"{_short(last.entry_hash)}: entry {p} was rewritten and its hash "
                "recomputed",
                last.kind,
                last.ref,
            )
        if (
            self.anchor is not None
            and self.anchor.seq == s
            and not row.entry_hash.startswith(self.anchor.hash)
        ):
            return Problem(
                s,
                "replaced",
                f"its hash is {_short(row.entry_hash)} but the anchor "
                f"says {_short(self.anchor.hash)}: the chain up to here was rewritten "
                "with recomputed hashes",
                row.kind,
                row.ref,
            )
        return None

    def _misplaced(self, row: LedgerEntry) -> Problem:
        """A row that does not hash for its own seq: moved, renumbered, or altered."""
        s = row.seq
        before = _by(self.session, LedgerEntry.entry_hash, row.prev_hash)
        after = _by(self.session, LedgerEntry.prev_hash, row.entry_hash)
        candidates = [s - 1, s + 1]
        if row.prev_hash == GENESIS_HASH:
            candidates.insert(0, 1)
        if after is not None:
            candidates.insert(0, after.seq - 1)
        if before is not None:
            candidates.insert(0, before.seq + 1)
        home = next(
            (t for t in dict.fromkeys(candidates) if t >= 1 and t != s and _valid_at(row, t)), None
        )
        if home is None:
            return Problem(
                s,
                "altered",
                "its content does not hash to its entry_hash "
                f"({_short(row.entry_hash)}): a value, its prev_hash or its "
                "entry_hash was changed",
                row.kind,
                row.ref,
            )
        if home > s and before is None and row.prev_hash != GENESIS_HASH:
            gone = f"entry {s} is" if home == s + 1 else f"entries {s} to {home - 1} are"
            return Problem(
                s,
                "removed",
                f"{gone} gone: the row at seq {s} is entry {home}, renumbered to close the gap",
                row.kind,
                row.ref,
            )
        return Problem(
            s,
            "reordered",
            f"the row at seq {s} is entry {home}, hashes intact: rows were swapped or moved",
            row.kind,
            row.ref,
        )


def verify(session: Session, anchor: Anchor | None = None) -> Verification:
    """Check the chain up to the head record; ``anchor`` pins an entry saved elsewhere.

    Entries appended while this runs are not checked (the head is read first);
    memory stays constant however long the ledger is.
    """
    head = read_head(session)
    bound = None if head is None else head.seq
    walk = _Walk(session, anchor)
    query = select(LedgerEntry).order_by(LedgerEntry.seq)  # type: ignore[arg-type]
    if bound is not None:
        query = query.where(LedgerEntry.seq <= bound)
    rows = session.exec(query.execution_options(yield_per=500))
    try:
        problem = walk.feed(rows)
    finally:
        rows.close()  # a server-side cursor on PostgreSQL, left early at a problem
    if problem is None:
        problem = _check_end(session, walk, head, anchor)
    if problem is None:
        return Verification(True, walk.count, walk.last_seq, walk.last_hash)
    if walk.last is not None and walk.last.seq >= problem.seq:  # the last entry was replaced
        return Verification(False, walk.count - 1, walk.last.seq - 1, walk.last.prev_hash, problem)
    return Verification(False, walk.count, walk.last_seq, walk.last_hash, problem)


def _check_end(session: Session, walk: _Walk, head: Any, anchor: Anchor | None) -> Problem | None:
    """After the walk: the tail against the head record and the anchor, rows past the head."""
    n = walk.last_seq
    if head is None and n > 0:
        # the ledger may have been empty when the head was read and appended to since
        # (its first append writes the head and the entry together): look again
        head = read_head(session)
        if head is not None and head.seq >= n:
            return None
    if head is None:
        if n > 0:
            return Problem(
                n + 1,
                "removed",
                f"the head record is missing: entries after {n} "
                "may have been removed too (check against an anchor)",
            )
        return None
    if head.seq > n:
        return Problem(
            n + 1,
            "removed",
            f"the ledger ends at entry {n} but the head record "
            f"says it ends at {head.seq} (hash {_short(head.entry_hash)}): the tail "
            "was removed",
        )
    if head.entry_hash != walk.last_hash:
        last = walk.last
        return Problem(
            n,
            "replaced",
            f"it is not the entry the head record names (hash "
            f"{_short(head.entry_hash)}, found {_short(walk.last_hash)}): it was "
            "rewritten and its hash recomputed",
            None if last is None else last.kind,
            None if last is None else last.ref,
        )
    if anchor is not None and anchor.seq > n:
        return Problem(
            n + 1,
            "removed",
            f"the anchor names entry {anchor.seq} but the ledger "
            f"ends at {n}: the tail and the head record were rewound",
        )
    # rows beyond the head: read their maximum first, then the head as it is now, so an
    # append that commits in between is not mistaken for an insertion
    top = session.exec(select(func.max(LedgerEntry.seq))).one()
    now = read_head(session)
    limit = head.seq if now is None else now.seq
    if top is not None and top > limit:
        stray = session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.seq > limit)
            .order_by(LedgerEntry.seq)  # type: ignore[arg-type]
            .limit(1)
        ).first()
        assert stray is not None
        return Problem(
            stray.seq,
            "inserted",
            f"it lies beyond the head record (entry {limit}): "
            "it was not written by govloop.audit.append",
            stray.kind,
            stray.ref,
        )
    return None


# -- the recorded tables against the ledger --------------------------------------------------

RowReason = Literal["altered", "removed", "not in the ledger"]

#: Rows looked up per query, and problems kept (the counts stay exact beyond it).
_BATCH = 500
MAX_PROBLEMS = 1000


@dataclass(frozen=True)
class RowProblem:
    """A row of a recorded table that does not match the ledger: which, why, and the hashes.

    ``ledger_hash`` is what the ledger says the row hashes to, ``row_hash`` what
    it hashes to now (None where there is nothing to hash).
    """

    table: str
    key: str
    reason: RowReason
    detail: str
    ledger_hash: str | None = None
    row_hash: str | None = None

    def __str__(self) -> str:
        return f"{self.table} id={self.key} {self.reason}: {self.detail}"


@dataclass
class TableSummary:
    """What the cross-check found in one table.

    ``checked`` rows the ledger vouches for were compared; ``uncovered`` rows
    of a table the ledger covers only in part (snapshots and drift alerts no
    gate decision read) could not be.
    """

    table: str
    checked: int = 0
    altered: int = 0
    removed: int = 0
    unledgered: int = 0
    uncovered: int = 0

    @property
    def ok(self) -> bool:
        return not (self.altered or self.removed or self.unledgered)


@dataclass(frozen=True)
class CrossCheck:
    """The outcome of :func:`crosscheck`: a summary per table and the rows found wrong."""

    tables: list[TableSummary]
    problems: list[RowProblem]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tables": {t.table: asdict(t) | {"ok": t.ok} for t in self.tables},
            "rows": [asdict(p) for p in self.problems],
        }


def _digest(columns: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a row's columns (NaN allowed: tampering may add it)."""
    text = json.dumps(columns, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _time(value: Any) -> Any:
    """A stored or recorded time as one comparable string (UTC, microseconds); else as is."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _json(text: Any) -> Any:
    """A body column parsed (its text as is when it is not JSON any more)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _columns(row: SQLModel, names: Iterable[str]) -> dict[str, Any]:
    """The named columns of ``row`` in comparable form: times normalised, bodies parsed.

    Only datetime columns are normalised: a text column that happens to read as
    a date (a model version "2030-01-01") is compared as the text it is.
    """
    out = {}
    for name in names:
        value = getattr(row, name)
        if name == "body":
            value = _json(value)
        elif isinstance(value, datetime):
            value = _time(value)
        out[name] = value
    return out


def _first_difference(found: Any, recorded: Any, path: str = "") -> str:
    """Where two JSON values first differ, as ``path: found where the ledger has recorded``."""
    if isinstance(found, dict) and isinstance(recorded, dict):
        for key in sorted(set(found) | set(recorded), key=str):
            if key not in found:
                return f"{path}{key} is missing"
            if key not in recorded:
                return f"{path}{key} was added"
            if found[key] != recorded[key]:
                return _first_difference(found[key], recorded[key], f"{path}{key}.")
    if isinstance(found, list) and isinstance(recorded, list) and len(found) == len(recorded):
        for i, (a, b) in enumerate(zip(found, recorded, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path.rstrip('.')}[{i}].")
    where = path.rstrip(".") or "the value"
    return f"{where} is {_clip(found)} where the ledger has {_clip(recorded)}"


def _clip(value: Any) -> str:
    """A value as JSON, cut to 60 characters: a message names it, it does not dump it."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _differences(found: Mapping[str, Any], recorded: Mapping[str, Any]) -> str:
    """The columns that differ, each with its first difference, ``; ``-separated."""
    parts = []
    for name in recorded:
        if found.get(name) != recorded[name]:
            if name == "body":
                parts.append("body: " + _first_difference(found.get(name), recorded[name]))
            else:
                parts.append(_first_difference(found.get(name), recorded[name], f"{name}."))
    return "; ".join(parts)


@dataclass(frozen=True)
class _Recorded:
    """A table whose every row has a ledger entry of ``kind`` (written by audit.records).

    ``ref`` gives a row's ledger ref, ``lookup`` the rows of some refs, and
    ``expected`` the columns an entry vouches for, as they should read now.
    """

    model: type[SQLModel]
    kind: str
    ref: Callable[[Any], str]
    lookup: Callable[[Session, list[str]], Iterable[Any]]
    expected: Callable[[dict[str, Any], LedgerEntry], dict[str, Any]]
    order: tuple[Any, ...]

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)


def _by_column(column: Any) -> Callable[[Session, list[str]], Iterable[Any]]:
    """A ``lookup`` of the rows whose ``column`` is one of the refs."""
    return lambda session, refs: session.exec(select(column.class_).where(column.in_(refs)))


def _baselines_of(session: Session, refs: list[str]) -> Iterable[BaselineRow]:
    """The baseline rows of refs ``NAME@VERSION`` (a name cannot contain ``@``)."""
    names = {ref.rpartition("@")[0] for ref in refs}
    wanted = set(refs)
    rows = session.exec(select(BaselineRow).where(BaselineRow.name.in_(names)))  # type: ignore[attr-defined]
    return [r for r in rows if f"{r.name}@{r.version}" in wanted]


def _fields(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: payload.get(name) for name in names}


RECORDED: tuple[_Recorded, ...] = (
    _Recorded(
        GateResultRow,
        "gate_result",
        lambda r: r.event_id,
        _by_column(GateResultRow.event_id),
        lambda p, e: (
            _fields(p, "event_id", "policy", "policy_hash", "model", "model_version", "outcome")
            | {"ts": _time(p.get("ts")), "trigger_event_id": p.get("trigger_event_id"), "body": p}
        ),
        (GateResultRow.event_id,),
    ),
    _Recorded(
        GatePolicyRow,
        "policy",
        lambda r: r.policy_hash,
        _by_column(GatePolicyRow.policy_hash),
        # the entry does not record the row's created_at, so it is not compared
        lambda p, e: {"policy_hash": p.get("hash"), "name": p.get("name"), "body": p.get("body")},
        (GatePolicyRow.policy_hash,),
    ),
    _Recorded(
        ManifestRow,
        "manifest",
        lambda r: r.id,
        _by_column(ManifestRow.id),
        lambda p, e: {"id": p.get("id"), "created_at": _time(p.get("created_at")), "body": p},
        (ManifestRow.id,),
    ),
    _Recorded(
        BaselineRow,
        "baseline",
        lambda r: f"{r.name}@{r.version}",
        _baselines_of,
        lambda p, e: (
            _fields(p, "name", "version", "source", "sha256", "model")
            | {"created_at": _time(e.ts), "body": p.get("metrics")}
        ),
        (BaselineRow.name, BaselineRow.version),
    ),
)


class _Findings:
    """Counts per table and the first :data:`MAX_PROBLEMS` problems."""

    def __init__(self, max_problems: int) -> None:
        self.tables: dict[str, TableSummary] = {}
        self.problems: list[RowProblem] = []
        self.max_problems = max_problems

    def summary(self, table: str) -> TableSummary:
        return self.tables.setdefault(table, TableSummary(table))

    def add(self, problem: RowProblem) -> None:
        summary = self.summary(problem.table)
        if problem.reason == "altered":
            summary.altered += 1
        elif problem.reason == "removed":
            summary.removed += 1
        else:
            summary.unledgered += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)


def _batches(rows: Iterable[Any]) -> Iterator[list[Any]]:
    """Lists of up to :data:`_BATCH` rows (``itertools.batched`` once Python 3.12 is the floor)."""
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _ledgered(session: Session, kind: str, bound: int | None) -> Iterator[list[LedgerEntry]]:
    """The entries of ``kind`` up to seq ``bound``, in batches, in seq order."""
    query = select(LedgerEntry).where(LedgerEntry.kind == kind)
    if bound is not None:
        query = query.where(LedgerEntry.seq <= bound)
    rows = session.exec(query.order_by(LedgerEntry.seq).execution_options(yield_per=_BATCH))  # type: ignore[arg-type]
    try:
        yield from _batches(rows)
    finally:
        rows.close()


def _payload(entry: LedgerEntry) -> dict[str, Any] | None:
    """An entry's payload as an object; None when it is not one (the chain walk says why)."""
    value = _json(entry.payload)
    return value if isinstance(value, dict) else None


def _check_entries(session: Session, spec: _Recorded, bound: int | None, out: _Findings) -> None:
    """Every entry of ``spec.kind``: its row must exist and read as the entry recorded it."""
    summary = out.summary(spec.table)
    for batch in _ledgered(session, spec.kind, bound):
        rows = {spec.ref(r): r for r in spec.lookup(session, [e.ref for e in batch])}
        for entry in batch:
            payload = _payload(entry)
            if payload is None:
                continue
            summary.checked += 1
            expected = spec.expected(payload, entry)
            row = rows.get(entry.ref)
            if row is None:
                out.add(
                    RowProblem(
                        spec.table,
                        entry.ref,
                        "removed",
                        f"ledger entry {entry.seq} records it, the table has no such row",
                        _digest(expected),
                    )
                )
                continue
            found = _columns(row, expected)
            if found != expected:
                recorded, now = _digest(expected), _digest(found)
                out.add(
                    RowProblem(
                        spec.table,
                        entry.ref,
                        "altered",
                        f"{_differences(found, expected)}; the ledger's hash of it is "
                        f"{_short(recorded)}, the row hashes to {_short(now)}",
                        recorded,
                        now,
                    )
                )


def _check_rows(session: Session, spec: _Recorded, out: _Findings) -> None:
    """Every row of ``spec``'s table must have its ledger entry."""
    query = select(spec.model).order_by(*spec.order).execution_options(yield_per=_BATCH)
    rows = session.exec(query)
    try:
        for batch in _batches(rows):
            refs = [spec.ref(r) for r in batch]
            known = set(
                session.exec(
                    select(LedgerEntry.ref).where(
                        LedgerEntry.kind == spec.kind,
                        LedgerEntry.ref.in_(refs),  # type: ignore[attr-defined]
                    )
                )
            )
            for ref, row in zip(refs, batch, strict=True):
                if ref not in known:
                    now = _digest(_columns(row, _table_columns(spec.model)))
                    out.add(
                        RowProblem(
                            spec.table,
                            ref,
                            "not in the ledger",
                            f"no {spec.kind} entry records it: it was written outside "
                            "govloop.audit.records",
                            None,
                            now,
                        )
                    )
    finally:
        rows.close()


def _table_columns(model: type[SQLModel]) -> list[str]:
    return [c.name for c in model.__table__.columns]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Referenced:
    """A table of events a manifest can name as an input, by event id and digest.

    Such a row has no ledger entry of its own: the manifest's ``sha256`` of the
    event (:func:`govloop.audit.manifest.event_digest`) is what the ledger
    vouches for.  ``columns`` gives the event fields a row's columns stand for.
    """

    model: type[SQLModel]
    event: type[Event]
    topic: str
    columns: Callable[[Any], dict[str, Any]]
    renamed: Mapping[str, str] = field(default_factory=dict)  # event field -> its column

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat()  # type: ignore[union-attr]


REFERENCED: tuple[_Referenced, ...] = (
    _Referenced(
        MetricSnapshotRow,
        MetricSnapshot,
        "metrics",
        lambda r: {
            "event_id": r.event_id,
            "model": r.model,
            "model_version": r.model_version,
            "window_start": _iso(r.window_start),
            "window_end": _iso(r.window_end),
            "window": r.window_kind,
            "count": r.count,
            "accuracy": r.accuracy,
        },
        {"window": "window_kind"},
    ),
    _Referenced(
        DriftAlertRow,
        DriftAlert,
        "drift",
        lambda r: {
            "event_id": r.event_id,
            "model": r.model,
            "model_version": r.model_version,
            "feature": r.feature,
            "state": r.state,
            "ts": _iso(r.ts),
        },
    ),
)


def _input_table(spec: Mapping[str, Any]) -> _Referenced | None:
    """Which table holds a manifest input's event: a stored input is a snapshot, a Kafka
    input the table of its topic; None for files and other topics."""
    if not isinstance(spec, Mapping) or not spec.get("event_id") or not spec.get("sha256"):
        return None
    if spec.get("kind") == "stored":
        return REFERENCED[0]
    topic = spec.get("topic")
    if spec.get("kind") != "kafka" or not isinstance(topic, str):
        return None
    return next((r for r in REFERENCED if topic.endswith(r.topic)), None)


def _digest_of(spec: _Referenced, fields: dict[str, Any]) -> str:
    """The digest an event of these fields has (of the fields themselves if they are none)."""
    try:
        return event_digest(spec.event.model_validate(fields))
    except ValueError:
        return _digest(fields)


def _contradictions(spec: _Referenced, row: Any, body: dict[str, Any]) -> list[str]:
    """The columns of ``row`` that say otherwise than its body."""
    odd = [
        f"column {spec.renamed.get(name, name)} is {_clip(value)} where its body says "
        f"{_clip(body.get(name))}"
        for name, value in spec.columns(row).items()
        if _time(value) != _time(body.get(name))
    ]
    if spec.model is MetricSnapshotRow and row.slice_kind != _slice_kind(body):
        odd.append(
            f"column slice_kind is {_clip(row.slice_kind)} where its body says "
            f"{_clip(_slice_kind(body))}"
        )
    return odd


def _slice_kind(body: dict[str, Any]) -> str:
    """The ``slice_kind`` column a snapshot is stored with (as stores.sql.snapshots sets it)."""
    if body.get("variant") is not None:
        return "variant"
    return "segment" if body.get("segment") else ""


def _held(spec: _Referenced, row: Any, recorded: str, manifest: str) -> tuple[str, list[str]]:
    """The digest of the event a row holds and what is wrong with it (nothing: ``[]``).

    The row holds its body and its columns: the body must hash to ``recorded``
    (what ``manifest`` read) and no column may say otherwise.  When only a
    column does, the digest is that of the body with the columns over it.
    """
    body = _json(row.body)
    if not isinstance(body, dict):
        return hashlib.sha256(str(row.body).encode()).hexdigest(), ["its body is not JSON any more"]
    digest = _digest_of(spec, body)
    wrong = []
    if digest != recorded:
        wrong.append(f"its body is not the event manifest {_short(manifest)} read")
    odd = _contradictions(spec, row, body)
    if odd and not wrong:
        digest = _digest_of(spec, body | spec.columns(row))
    return digest, wrong + odd


def _check_inputs(session: Session, bound: int | None, out: _Findings) -> None:
    """Every event a recorded manifest read: its row must exist and hash as it did then."""
    seen: dict[str, set[str]] = {r.table: set() for r in REFERENCED}
    for batch in _ledgered(session, "manifest", bound):
        wanted: list[tuple[_Referenced, str, str, str]] = []
        for entry in batch:
            payload = _payload(entry)
            inputs = [] if payload is None else payload.get("inputs") or []
            for item in inputs if isinstance(inputs, list) else []:
                spec = _input_table(item)
                if spec is not None and item["event_id"] not in seen[spec.table]:
                    seen[spec.table].add(item["event_id"])
                    wanted.append((spec, item["event_id"], item["sha256"], entry.ref))
        for spec in REFERENCED:
            ids = [w[1] for w in wanted if w[0] is spec]
            if not ids:
                continue
            key: Any = spec.model.event_id  # type: ignore[attr-defined]
            found: Iterable[Any] = session.exec(select(spec.model).where(key.in_(ids)))
            rows = {r.event_id: r for r in found}
            for s, event_id, recorded, manifest in wanted:
                if s is spec:
                    _compare_input(spec, event_id, recorded, manifest, rows.get(event_id), out)
    for spec in REFERENCED:
        summary = out.summary(spec.table)
        total = session.exec(select(func.count()).select_from(spec.model)).one()
        summary.uncovered = max(0, total - (summary.checked - summary.removed))


def _compare_input(
    spec: _Referenced,
    event_id: str,
    recorded: str,
    manifest: str,
    row: Any,
    out: _Findings,
) -> None:
    """One event input of ``manifest`` (digest ``recorded``) against its row, if any."""
    out.summary(spec.table).checked += 1
    if row is None:
        out.add(
            RowProblem(
                spec.table,
                event_id,
                "removed",
                f"manifest {_short(manifest)} read it as an input, the table has no such row",
                recorded,
            )
        )
        return
    now, wrong = _held(spec, row, recorded, manifest)
    if not wrong:
        return
    what = "; ".join(wrong)
    out.add(
        RowProblem(
            spec.table,
            event_id,
            "altered",
            f"{what}; the ledger's hash of it is {_short(recorded)}, the row hashes to "
            f"{_short(now)}",
            recorded,
            now,
        )
    )


def crosscheck(session: Session, max_problems: int = MAX_PROBLEMS) -> CrossCheck:
    """Hold the recorded tables to the ledger; name every row altered, removed or added.

    Gate results, policies, manifests and baselines each have an entry per
    row: a row must exist for every entry (up to the head record), read as
    the entry recorded it, and have an entry.  Snapshots and drift alerts are
    held to the digests of the manifests that read them; the rest of those
    tables is counted as ``uncovered``.  Trust in the entries is what
    :func:`verify` establishes: run both.  Counts are exact; the first
    ``max_problems`` rows found wrong are listed.
    """
    head = read_head(session)
    bound = None if head is None else head.seq
    out = _Findings(max_problems)
    for spec in RECORDED:
        _check_entries(session, spec, bound, out)
        _check_rows(session, spec, out)
    _check_inputs(session, bound, out)
    return CrossCheck(list(out.tables.values()), out.problems)
