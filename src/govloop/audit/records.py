"""Recording: a row of the system of record and its audit ledger entry, in one savepoint.

Policy versions, manifests, gate results and baselines are each written
here, and only here, with the ledger entry that makes them tamper-evident
(:func:`govloop.audit.ledger.append`).  Both go in one savepoint, so a row
never lands without its entry nor an entry without its row; the caller
commits.  Recording something already stored is a no-op that says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from govloop.audit.ledger import append, canonical_json
from govloop.audit.manifest import Manifest
from govloop.errors import ConfigError
from govloop.gates.evidence import MetricValue
from govloop.schemas import GateResult
from govloop.stores.sql.baselines import latest_baseline_version, parse_ref
from govloop.stores.sql.gates import gate_result_row, policy_row
from govloop.stores.sql.tables import BaselineRow, GatePolicyRow, ManifestRow

__all__ = [
    "record",
    "save_baseline",
    "save_decision",
    "save_gate_result",
    "save_manifest",
    "save_policy",
]


def record(
    session: Session,
    row: SQLModel,
    kind: str,
    ref: str,
    payload: Mapping[str, Any],
    *,
    model: str | None = None,
    ts: datetime | None = None,
) -> bool:
    """Insert ``row`` and append its ledger entry in one savepoint; False if the row exists.

    One savepoint for both: pysqlite commits at the release of a savepoint
    that opened the transaction, so the ledger entry must be written before
    that release, not after it.  A conflict on the row (it is stored
    already) is a no-op; a conflict after the row went in (on the ledger) is
    an error and propagates.
    """
    inserted = False
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            inserted = True
            append(session, kind, ref, payload, model=model, ts=ts)
    except IntegrityError:
        if inserted:
            raise
        return False
    return True


def save_gate_result(session: Session, result: GateResult) -> bool:
    """Record a gate result once (a redelivered one is a no-op): True when it was new."""
    row = gate_result_row(result)
    return record(
        session, row, "gate_result", result.event_id, json.loads(row.body), model=result.model
    )


def save_policy(
    session: Session, name: str, policy_hash: str, body: dict[str, Any], created_at: datetime
) -> bool:
    """Record a policy version once: True when it was new."""
    if session.get(GatePolicyRow, policy_hash) is not None:
        return False
    row = policy_row(name, policy_hash, body, created_at)
    return record(
        session, row, "policy", policy_hash, {"name": name, "hash": policy_hash, "body": body}
    )


def save_manifest(session: Session, manifest: Manifest) -> str:
    """Record a manifest once (by id) and return the id; an equal manifest again changes nothing."""
    if session.get(ManifestRow, manifest.id) is None:
        body = manifest.model_dump(mode="json")
        row = ManifestRow(
            id=manifest.id, created_at=manifest.created_at, body=canonical_json(body).decode()
        )
        record(session, row, "manifest", manifest.id, body)
    return manifest.id


def save_baseline(
    session: Session,
    name: str,
    metrics: Mapping[str, MetricValue],
    *,
    source: str,
    sha256: str | None = None,
    model: str | None = None,
    created_at: datetime | None = None,
) -> BaselineRow:
    """Store ``metrics`` as the next version of ``name``, with its ledger entry (ref ``NAME@V``).

    Two concurrent sets of one name get distinct versions: the loser of the
    unique (name, version) race retries with the next one.
    """
    parse_ref(name)
    if "@" in name:
        raise ConfigError("a baseline name cannot contain '@'")
    if not metrics:
        raise ConfigError(f"baseline {name}: no metrics to store")
    values = {
        k: v.model_dump(exclude_defaults=True) | {"value": v.value}
        for k, v in sorted(metrics.items())
    }
    body = json.dumps(values, sort_keys=True)
    when = created_at or datetime.now(UTC)
    for _ in range(5):
        version = latest_baseline_version(session, name) + 1
        row = BaselineRow(
            name=name,
            version=version,
            source=source,
            sha256=sha256,
            model=model,
            created_at=when,
            body=body,
        )
        payload = {
            "name": name,
            "version": version,
            "source": source,
            "sha256": sha256,
            "model": model,
            "metrics": json.loads(body),
        }
        if record(session, row, "baseline", f"{name}@{version}", payload, model=model, ts=when):
            return row
    raise ConfigError(
        f"baseline {name}: could not allocate a version, try again"
    )  # pragma: no cover


def save_decision(session: Session, result: GateResult, manifest: Manifest) -> bool:
    """Record a gate decision: its manifest, then the result; True when the result was new."""
    save_manifest(session, manifest)
    return save_gate_result(session, result)
