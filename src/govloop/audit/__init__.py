"""The tamper-evident audit trail: a hash-chained, append-only ledger in the SQL store.

Gate results and policy changes (later experiments, baselines and dataset
versions) are appended in the same transaction as the row they record;
:func:`verify` walks the chain and names the first entry that was altered,
removed, reordered, replaced or inserted; :func:`crosscheck` holds the
recorded tables (gate results, policies, manifests, baselines, and the
snapshots and drift alerts manifests read) to it and names every row altered,
removed or added outside it.  ``docs/audit.md`` explains what the
chain proves and how to anchor its head outside the database.

Every gate decision also references a :class:`Manifest` (policy hash, exact
inputs, versions, seeds, settings); :mod:`govloop.repro` recomputes the
decision from it and names every difference.  Rows that enter the ledger are
written, with their entry, by :mod:`govloop.audit.records`.
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
    build_manifest,
    event_digest,
    file_input,
    kafka_input,
    load_manifest,
)
from govloop.audit.records import (
    record,
    save_baseline,
    save_decision,
    save_gate_result,
    save_manifest,
    save_policy,
)
from govloop.audit.verify import (
    Anchor,
    CrossCheck,
    Problem,
    Reason,
    RowProblem,
    TableSummary,
    Verification,
    crosscheck,
    verify,
)

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "Anchor",
    "CrossCheck",
    "LedgerEntry",
    "LedgerHead",
    "Manifest",
    "Problem",
    "Reason",
    "RowProblem",
    "TableSummary",
    "Verification",
    "append",
    "build_manifest",
    "canonical_json",
    "crosscheck",
    "entries",
    "entry_hash",
    "event_digest",
    "file_input",
    "kafka_input",
    "load_manifest",
    "read_head",
    "record",
    "save_baseline",
    "save_decision",
    "save_gate_result",
    "save_manifest",
    "save_policy",
    "verify",
]
