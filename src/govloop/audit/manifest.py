"""Manifests: what a gate decision was computed from, exactly enough to compute it again.

A manifest names the policy (its content hash), the inputs (a Kafka record by
topic, partition and offset, or a file, each with a SHA-256), the evidence
recorded inline (drift alerts, a baseline's metrics), and the environment:
govloop's version and git commit, Python and package versions, seeds and the
effective settings with secrets redacted (:mod:`govloop.redact`).  Its ``id``
is the SHA-256 of the canonical JSON of all of that except ``created_at``, so
equal inputs in an equal environment give an equal id and saving again is a
no-op.

The builders are pure apart from reading the environment once per process
(:func:`environment`); :func:`load_manifest` takes the caller's ``Session``
(a manifest is stored with its ledger entry by :mod:`govloop.audit.records`).
:mod:`govloop.repro` recomputes a decision from its manifest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlmodel import Session

from govloop import __version__
from govloop.audit.ledger import canonical_json
from govloop.config import Settings
from govloop.redact import redact_url
from govloop.stores.sql.tables import ManifestRow

__all__ = [
    "PACKAGES",
    "Manifest",
    "build_manifest",
    "event_digest",
    "file_input",
    "git_commit",
    "kafka_input",
    "load_manifest",
    "manifest_id",
    "package_versions",
    "stored_input",
]

#: Distributions whose versions a manifest records, when installed.
PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "pydantic",
    "datasketches",
    "faust-streaming",
    "aiokafka",
    "kafka-python",
    "redis",
    "sqlmodel",
    "sqlalchemy",
)


def event_digest(event: BaseModel) -> str:
    """SHA-256 (hex) of an event's canonical JSON: the same read from Kafka or from SQL.

    >>> from govloop.schemas import Feedback
    >>> fb = Feedback(request_id="r1", positive=True, event_id="e1", ts="2030-01-01T00:00:00Z")
    >>> event_digest(fb) == event_digest(Feedback.model_validate_json(fb.to_json()))
    True
    """
    return hashlib.sha256(canonical_json(event.model_dump(mode="json", by_alias=True))).hexdigest()


def kafka_input(topic: str, partition: int, offset: int, event: BaseModel) -> dict[str, Any]:
    """The manifest entry of one Kafka record: where it is, its event's id and digest."""
    return {
        "kind": "kafka",
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "event_id": getattr(event, "event_id", None),
        "sha256": event_digest(event),
    }


def stored_input(event: BaseModel) -> dict[str, Any]:
    """The manifest entry of an event read from the SQL store (e.g. a stored snapshot)."""
    return {
        "kind": "stored",
        "event_id": getattr(event, "event_id", None),
        "sha256": event_digest(event),
    }


def file_input(path: str | Path, sha256: str) -> dict[str, Any]:
    """The manifest entry of one file: its path and the SHA-256 of its bytes."""
    return {"kind": "file", "path": str(path), "sha256": sha256}


def _config(settings: Settings | None) -> dict[str, Any]:
    """The effective settings as JSON, every string through :func:`~govloop.redact.redact_url`.

    Not only the secret fields: a Kafka bootstrap list may carry SASL settings,
    and whatever is in here is hashed into the manifest's id and the ledger's
    chain, from which nothing can be removed later.
    """
    if settings is None:
        return {}
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        if name == "git_commit":
            continue  # a manifest field of its own
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = str(value)
        out[name] = redact_url(value) if isinstance(value, str) else value
    out["database_url"] = redact_url(settings.database_url)
    return out


@functools.cache
def _git_head() -> str | None:
    """``git rev-parse HEAD`` in the installed package's source directory, if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) >= 40 else None


def git_commit(settings: Settings | None = None) -> str | None:
    """``settings.git_commit`` (``GOVLOOP_GIT_COMMIT``) if set, else the checkout's HEAD, else None.

    Never fails: a missing ``git`` or a package outside a checkout gives None.
    """
    return (settings.git_commit if settings is not None else None) or _git_head()


@functools.cache
def _packages() -> tuple[tuple[str, str], ...]:
    found = []
    for name in PACKAGES:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


def package_versions() -> dict[str, str]:
    """Versions of the :data:`PACKAGES` that are installed."""
    return dict(_packages())


def manifest_id(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a manifest's content (without ``id``, ``created_at``)."""
    body = {k: v for k, v in content.items() if k not in ("id", "created_at")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


class Manifest(BaseModel):
    """Everything a gate decision depends on; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    policy_hash: str
    inputs: list[dict[str, Any]]
    evidence: dict[str, Any] = Field(default_factory=dict)
    govloop_version: str
    git_commit: str | None = None
    python: str
    packages: dict[str, str] = Field(default_factory=dict)
    seeds: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime

    @property
    def content_id(self) -> str:
        """The id this manifest's content hashes to (equal to ``id`` unless altered)."""
        return manifest_id(self.model_dump(mode="json"))


def build_manifest(
    *,
    policy_hash: str,
    inputs: Sequence[Mapping[str, Any]],
    evidence: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> Manifest:
    """The manifest of a decision on ``inputs`` by the policy of hash ``policy_hash``.

    >>> a = build_manifest(policy_hash="p" * 64, inputs=[file_input("r.json", "f" * 64)])
    >>> b = build_manifest(policy_hash="p" * 64, inputs=[file_input("r.json", "f" * 64)])
    >>> a.id == b.id == a.content_id, a.created_at <= b.created_at
    (True, True)
    """
    content: dict[str, Any] = {
        "policy_hash": policy_hash,
        "inputs": [dict(i) for i in inputs],
        "evidence": dict(evidence or {}),
        "govloop_version": __version__,
        "git_commit": git_commit(settings),
        "python": platform.python_version(),
        "packages": package_versions(),
        "seeds": dict(seeds or {}),
        "config": _config(settings),
    }
    # through JSON first, so the id is computed on what is stored (and fails on NaN now)
    content = json.loads(canonical_json(content))
    return Manifest(id=manifest_id(content), created_at=datetime.now(UTC), **content)


def load_manifest(session: Session, id: str) -> Manifest | None:
    """The stored manifest of this id, if any."""
    row = session.get(ManifestRow, id)
    return None if row is None else Manifest.model_validate_json(row.body)
