"""Replay: recompute a stored gate decision from its manifest and name every difference.

:func:`replay` loads the gate result, its manifest and the policy version the
manifest names, re-reads the inputs (:mod:`govloop.repro.inputs`: the exact
Kafka record by topic, partition and offset, or the results file), checks
each against the digest in the manifest, judges again through the one
judging path (:func:`govloop.judging.gates.decide`, as the worker and
``govloop gate check`` did) with the evidence recorded inline (drift alerts,
a baseline's metrics, an online regression's accumulated evidence), and
compares the recomputed result with the stored one field by field, rule by rule.

Errors (:class:`ReplayError`, or :class:`~govloop.errors.RuntimeUnavailable`
when the broker does not answer) mean the decision could not be replayed at
all; differences mean it was replayed and came out otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from govloop import __version__
from govloop.audit.manifest import Manifest, git_commit, load_manifest, package_versions
from govloop.config import Settings
from govloop.gates import DriftSignal, Policy, parse_results
from govloop.judging.gates import Accumulated, Baseline, decide
from govloop.repro.inputs import ReplayError, held_to, read_event
from govloop.schemas import GateResult, MetricSnapshot
from govloop.stores.sql.tables import GatePolicyRow, GateResultRow

__all__ = ["COMPARED", "RULE_FIELDS", "Replay", "ReplayError", "compare_results", "replay"]

#: What the comparison looks at; ``manifest_id`` and later bookkeeping fields are not recomputed.
COMPARED = (
    "event_id",
    "policy",
    "policy_hash",
    "model",
    "model_version",
    "outcome",
    "trigger_event_id",
    "window_start",
    "window_end",
    "ts",
)
RULE_FIELDS = ("metric", "op", "threshold", "observed", "outcome", "detail")


@dataclass(frozen=True)
class Replay:
    """The outcome of a replay: ``match`` when nothing differs."""

    match: bool
    stored: GateResult
    recomputed: GateResult | None
    differences: list[str]
    inputs: list[str]
    manifest: Manifest | None = None
    notes: list[str] = field(default_factory=list)  # environment changes: reported, not counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate_result_id": self.stored.event_id,
            "match": self.match,
            "differences": self.differences,
            "inputs": self.inputs,
            "notes": self.notes,
            "manifest_id": None if self.manifest is None else self.manifest.id,
            "stored": self.stored.model_dump(mode="json", by_alias=True),
            "recomputed": (
                None
                if self.recomputed is None
                else self.recomputed.model_dump(mode="json", by_alias=True)
            ),
        }


# --- comparison ---------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def compare_results(stored: GateResult, recomputed: GateResult) -> list[str]:
    """Every field and rule on which two gate results differ, one line each (empty: equal).

    ``recomputed`` is compared as it would be stored (through its JSON), so a
    value JSON cannot hold (an infinity) is not reported as a difference.
    """
    recomputed = GateResult.model_validate_json(recomputed.model_dump_json(by_alias=True))
    out = []
    for name in COMPARED:
        a, b = getattr(stored, name), getattr(recomputed, name)
        if a != b:
            out.append(f"{name}: {_show(a)} (stored) != {_show(b)} (recomputed)")
    mine = {r.rule: r for r in recomputed.rules}
    theirs = {r.rule: r for r in stored.rules}
    for name, rule in theirs.items():
        other = mine.get(name)
        if other is None:
            out.append(f"rule {name}: stored, not recomputed")
            continue
        for attr in RULE_FIELDS:
            a, b = getattr(rule, attr), getattr(other, attr)
            if a != b:
                out.append(f"rule {name}: {attr} {_show(a)} (stored) != {_show(b)} (recomputed)")
    out.extend(f"rule {name}: recomputed, not stored" for name in mine if name not in theirs)
    if [r.rule for r in stored.rules if r.rule in mine] != [r for r in mine if r in theirs]:
        out.append("rules: stored in a different order than recomputed")
    return out


def _environment_notes(manifest: Manifest, settings: Settings) -> list[str]:
    notes = []
    if manifest.govloop_version != __version__:
        notes.append(f"govloop {manifest.govloop_version} (manifest) != {__version__} (now)")
    now_commit = git_commit(settings)
    if manifest.git_commit and now_commit and manifest.git_commit != now_commit:
        notes.append(f"git commit {manifest.git_commit[:12]} (manifest) != {now_commit[:12]} (now)")
    if manifest.python != platform.python_version():
        notes.append(f"python {manifest.python} (manifest) != {platform.python_version()} (now)")
    now = package_versions()
    for name, version in sorted(manifest.packages.items()):
        if now.get(name) != version:
            notes.append(f"{name} {version} (manifest) != {now.get(name, 'not installed')} (now)")
    return notes


# --- replay ---------------------------------------------------------------------------------------


def _load(session: Session, gate_result_id: str) -> tuple[GateResult, Manifest, Policy, list[str]]:
    row = session.get(GateResultRow, gate_result_id)
    if row is None:
        db = session.get_bind().engine.url.render_as_string(hide_password=True)
        raise ReplayError(f"no gate result {gate_result_id!r} in {db}")
    stored = GateResult.model_validate_json(row.body)
    if stored.manifest_id is None:
        raise ReplayError(
            f"gate result {gate_result_id} has no manifest (it was recorded "
            "without one), so it cannot be replayed"
        )
    manifest = load_manifest(session, stored.manifest_id)
    if manifest is None:
        raise ReplayError(
            f"manifest {stored.manifest_id} of gate result {gate_result_id} "
            "is not in the manifests table"
        )
    differences = []
    if manifest.content_id != manifest.id:
        differences.append(
            f"manifest {manifest.id}: its content hashes to "
            f"{manifest.content_id}: it was altered after it was recorded"
        )
    if stored.policy_hash != manifest.policy_hash:
        differences.append(
            f"policy_hash: {stored.policy_hash} (stored result) != "
            f"{manifest.policy_hash} (manifest)"
        )
    prow = session.get(GatePolicyRow, manifest.policy_hash)
    if prow is None:
        raise ReplayError(
            f"policy {manifest.policy_hash} named by manifest {manifest.id} is not in gate_policies"
        )
    try:
        policy = Policy.model_validate(json.loads(prow.body))
    except (ValueError, ValidationError) as exc:
        raise ReplayError(
            f"policy {manifest.policy_hash} in gate_policies is not a valid policy any more: {exc}"
        ) from exc
    if policy.content_hash != manifest.policy_hash:
        differences.append(
            f"policy {policy.name}: the stored body hashes to "
            f"{policy.content_hash}, the manifest names {manifest.policy_hash}"
        )
    return stored, manifest, policy, differences


def replay(
    session: Session,
    gate_result_id: str,
    settings: Settings,
    *,
    file_override: Path | None = None,
    strict: bool = False,
) -> Replay:
    """Recompute the gate result ``gate_result_id`` from its manifest and compare.

    A snapshot is re-read from Kafka.  When the broker cannot give it back
    (not configured, down, or the record is past retention; the embedded
    broker keeps nothing after it stops), the snapshot's copy in the SQL
    store is used instead, says so, and must match the manifest's digest
    just the same; ``strict`` forbids that.  Raises :class:`ReplayError` (or
    ``RuntimeUnavailable`` for a broker that does not answer, when strict)
    when it cannot be recomputed at all.
    """
    stored, manifest, policy, differences = _load(session, gate_result_id)
    events = [i for i in manifest.inputs if i.get("kind") in ("kafka", "stored")]
    files = [i for i in manifest.inputs if i.get("kind") == "file"]
    only_events = bool(events) and not files
    one_file = len(files) == 1 and not events
    if not (only_events or one_file) or len(events) + len(files) != len(manifest.inputs):
        kinds = ", ".join(str(i.get("kind")) for i in manifest.inputs) or "none"
        raise ReplayError(
            f"manifest {manifest.id} has inputs ({kinds}); replay knows events "
            "(on Kafka or in the SQL store) or one results file"
        )
    baseline = Baseline.from_evidence(manifest.evidence)
    seen: list[str] = []
    if events:
        read = [read_event(session, settings, spec, strict, seen, differences) for spec in events]
        snaps = [e for e in read if isinstance(e, MetricSnapshot)]
        triggers = [e for e in read if not isinstance(e, MetricSnapshot)]
        if len(snaps) != 1 or len(triggers) > 1:
            raise ReplayError(
                f"manifest {manifest.id}: replay knows one metric snapshot, "
                f"judged on its own or on a drift alert; the inputs hold "
                f"{', '.join(e.SCHEMA for e in read)}"
            )
        alerts = manifest.evidence.get("drift_alerts")
        recomputed = decide(
            policy,
            snaps[0],
            inputs=manifest.inputs,
            baseline=baseline,
            drift_alerts=None if alerts is None else [DriftSignal(**d) for d in alerts],
            trigger=triggers[0] if triggers else None,
            accumulated=Accumulated.from_evidence(manifest.evidence),
        ).result
    else:
        spec = files[0]
        path = file_override or Path(spec["path"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReplayError(
                f"cannot read the results file {path}: {exc.strerror} "
                "(--file PATH points replay at a copy)"
            ) from exc
        same = held_to(
            spec["sha256"],
            hashlib.sha256(data).hexdigest(),
            f"re-read file {path}",
            f"input file {path}",
            "now",
            seen,
            differences,
        )
        loaded = parse_results(data, str(path))
        if not same:  # judge what is there now, under the recorded identity
            loaded = dataclasses.replace(loaded, sha256=spec["sha256"])
        recomputed = decide(
            policy, loaded, inputs=manifest.inputs, baseline=baseline, ts=stored.ts
        ).result
    if baseline is not None:
        seen.append(
            f"baseline {baseline.label or '-'}: {len(baseline.metrics)} metrics recorded "
            "in the manifest"
        )
    so_far = Accumulated.from_evidence(manifest.evidence)
    if so_far is not None:
        seen.append(
            f"accumulated evidence: {so_far.looks} window(s) of the model version, "
            "recorded in the manifest"
        )
    if "drift_alerts" in manifest.evidence:
        seen.append(
            f"drift alerts: {len(manifest.evidence['drift_alerts'])} recorded in the manifest"
        )
    differences.extend(compare_results(stored, recomputed))
    return Replay(
        match=not differences,
        stored=stored,
        recomputed=recomputed,
        differences=differences,
        inputs=seen,
        manifest=manifest,
        notes=_environment_notes(manifest, settings),
    )
