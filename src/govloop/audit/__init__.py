"""The tamper-evident audit trail: a hash-chained, append-only ledger in the SQL store.

Gate results and policy changes (later experiments, baselines and dataset
versions) are appended in the same transaction as the row they record;
:func:`verify` walks the chain and names the first entry that was altered,
removed, reordered, replaced or inserted.  ``docs/audit.md`` explains what the
chain proves and how to anchor its head outside the database.

Every gate decision also references a :class:`Manifest` (policy hash, exact
inputs, versions, seeds, settings); :func:`replay` recomputes the decision
from it and names every difference.
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
from govloop.audit.manifest import (
    Manifest,
    ManifestRow,
    build_manifest,
    event_digest,
    file_input,
    kafka_input,
    load_manifest,
    save_manifest,
)
from govloop.audit.replay import Replay, ReplayError, replay
from govloop.audit.verify import Anchor, Problem, Reason, Verification, verify

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "Anchor",
    "LedgerEntry",
    "LedgerHead",
    "Manifest",
    "ManifestRow",
    "Problem",
    "Reason",
    "Replay",
    "ReplayError",
    "Verification",
    "append",
    "build_manifest",
    "canonical_json",
    "entries",
    "entry_hash",
    "event_digest",
    "file_input",
    "kafka_input",
    "load_manifest",
    "read_head",
    "replay",
    "save_manifest",
    "verify",
]
