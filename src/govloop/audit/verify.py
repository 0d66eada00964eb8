"""Checking the ledger: walk the chain in seq order and name the first entry that is wrong.

Reasons a :class:`Problem` can give, and how each is recognised:

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import Session, select

from govloop.audit.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    canonical_json,
    entry_hash,
    read_head,
)

__all__ = ["Anchor", "Problem", "Reason", "Verification", "verify"]

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
