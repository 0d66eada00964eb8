"""Baselines: named, versioned sets of metrics that regression rules compare against.

Every ``set`` writes a new version (1, 2, ...) of a name; nothing is overwritten.
A baseline is referred to as ``NAME`` (its newest version), ``NAME@3`` (a
pinned version), or as the last N versions pooled (:func:`resolve_baseline`
with ``last=N``: see :func:`govloop.gates.pool_baselines` for what pooling means).
Storing one, with its audit ledger entry, is :func:`govloop.audit.records.save_baseline`.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import func
from sqlmodel import Session, select

from govloop.errors import ConfigError
from govloop.gates.evidence import MetricValue, pool_baselines
from govloop.stores.sql.tables import BaselineRow

__all__ = [
    "baseline_metrics",
    "baseline_versions",
    "get_baseline",
    "latest_baseline_version",
    "list_baselines",
    "parse_ref",
    "resolve_baseline",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"NAME"`` -> (NAME, None); ``"NAME@3"`` -> (NAME, 3).

    >>> parse_ref("release@3"), parse_ref("release")
    (('release', 3), ('release', None))
    """
    name, sep, version = ref.partition("@")
    if not _NAME.fullmatch(name) or (sep and not version.isdigit()):
        raise ConfigError(
            f"bad baseline reference {ref!r}: use NAME or NAME@VERSION "
            "(letters, digits, '_', '.', ':', '/', '-')"
        )
    return name, int(version) if sep else None


def baseline_metrics(row: BaselineRow) -> dict[str, MetricValue]:
    return {k: MetricValue.model_validate(v) for k, v in json.loads(row.body).items()}


def latest_baseline_version(session: Session, name: str) -> int:
    query = select(func.max(BaselineRow.version)).where(BaselineRow.name == name)
    return session.exec(query).one() or 0  # type: ignore[call-overload]


def get_baseline(session: Session, name: str, version: int | None = None) -> BaselineRow | None:
    """A version of ``name`` (the newest when ``version`` is None)."""
    query = select(BaselineRow).where(BaselineRow.name == name)
    if version is not None:
        query = query.where(BaselineRow.version == version)
    return session.exec(query.order_by(BaselineRow.version.desc()).limit(1)).first()  # type: ignore[attr-defined]


def baseline_versions(session: Session, name: str, limit: int | None = None) -> list[BaselineRow]:
    """Versions of ``name``, newest first."""
    query = select(BaselineRow).where(BaselineRow.name == name).order_by(BaselineRow.version.desc())  # type: ignore[attr-defined]
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


def list_baselines(session: Session) -> list[tuple[BaselineRow, int]]:
    """The newest version of every name, with how many versions it has, by name."""
    latest = (
        select(BaselineRow.name, func.max(BaselineRow.version).label("v"), func.count().label("n"))
        .group_by(BaselineRow.name)
        .subquery()
    )
    query = (
        select(BaselineRow, latest.c.n)
        .join(
            latest,
            (BaselineRow.name == latest.c.name)  # type: ignore[arg-type]
            & (BaselineRow.version == latest.c.v),
        )
        .order_by(BaselineRow.name)
    )
    return [(row, int(n)) for row, n in session.exec(query)]


def resolve_baseline(
    session: Session, ref: str, last: int | None = None
) -> tuple[dict[str, MetricValue], str, list[int]]:
    """The metrics of ``ref`` (``NAME`` or ``NAME@V``), or of the last ``last`` versions pooled.

    Returns the metrics, a label for reports and the versions used.  ``last``
    counts back from the newest version (or from ``V`` when pinned).
    """
    name, version = parse_ref(ref)
    if last is not None and last < 1:
        raise ConfigError("--last must be at least 1")
    if last is None or last == 1:
        row = get_baseline(session, name, version)
        if row is None:
            raise ConfigError(
                f"no baseline {ref}"
                + ("" if version is None else f" (versions: {_versions_text(session, name)})")
            )
        return baseline_metrics(row), f"{name}@{row.version}", [row.version]
    query = select(BaselineRow).where(BaselineRow.name == name)
    if version is not None:
        query = query.where(BaselineRow.version <= version)
    rows = list(session.exec(query.order_by(BaselineRow.version.desc()).limit(last)))  # type: ignore[attr-defined]
    if not rows:
        raise ConfigError(f"no baseline {ref}")
    versions = sorted(r.version for r in rows)
    label = f"{name}@{versions[0]}..{versions[-1]} (pooled, {len(rows)} versions)"
    return pool_baselines(baseline_metrics(r) for r in rows), label, versions


def _versions_text(session: Session, name: str) -> str:
    got = [str(r.version) for r in baseline_versions(session, name)]
    return ", ".join(reversed(got)) or "none"
