"""The tamper-evident audit trail: a hash-chained, append-only ledger in the SQL store.

Gate results and policy changes (later experiments, baselines and dataset
versions) are appended in the same transaction as the row they record;
:func:`verify` walks the chain and names the first entry that was altered,
removed, reordered, replaced or inserted.  ``docs/audit.md`` explains what the
chain proves and how to anchor its head outside the database.
"""

from govloop.audit.ledger import (
    GENESIS_HASH,
    KINDS,
    LedgerEntry,
    LedgerHead,
    append,
    canonical_json,
    entries,
    entry_hash,
    read_head,
)
from govloop.audit.verify import Anchor, Problem, Reason, Verification, verify

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "Anchor",
    "LedgerEntry",
    "LedgerHead",
    "Problem",
    "Reason",
    "Verification",
    "append",
    "canonical_json",
    "entries",
    "entry_hash",
    "read_head",
    "verify",
]
