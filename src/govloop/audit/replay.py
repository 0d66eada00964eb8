"""Replay: recompute a stored gate decision from its manifest and name every difference.

:func:`replay` loads the gate result, its manifest and the policy version the
manifest names, re-reads the inputs (the exact Kafka record by topic,
partition and offset, or the results file), checks each against the digest in
the manifest, judges again with the evidence recorded inline (drift alerts, a
baseline's metrics) and compares the recomputed result with the stored one
field by field, rule by rule.

:func:`judge_results` is the offline evaluation itself: ``govloop gate check``
and the replay of an offline decision both call it, so they cannot drift apart.

Errors (:class:`ReplayError`, or :class:`~govloop.errors.RuntimeUnavailable`
when the broker does not answer) mean the decision could not be replayed at
all; differences mean it was replayed and came out otherwise.  The heavy
imports (gates, kafka, the SQL tables) happen inside the functions:
``govloop.stores.sql`` imports this package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from govloop.audit.ledger import canonical_json
from govloop.audit.manifest import (
    Manifest,
    event_digest,
    git_commit,
    load_manifest,
    package_versions,
)
from govloop.config import Settings
from govloop.errors import GovloopError, RuntimeUnavailable
from govloop.schemas import GateResult

if TYPE_CHECKING:
    from govloop.gates import MetricValue, Policy, ResultsFile, Verdict

__all__ = [
    "Replay",
    "ReplayError",
    "baseline_evidence",
    "compare_results",
    "judge_results",
    "offline_result_id",
    "read_record",
    "replay",
]

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


class ReplayError(GovloopError):
    """A decision that cannot be replayed: no such result, no manifest, an input gone."""


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


# --- the offline evaluation, shared with `govloop gate check` ------------------------------------


def offline_result_id(
    results_sha256: str, policy_hash: str, baseline_ref: Mapping[str, Any] | None
) -> str:
    """The deterministic id of an offline decision: results file, policy and baseline.

    >>> offline_result_id("a" * 64, "b" * 64, None) == offline_result_id("a" * 64, "b" * 64, None)
    True
    >>> offline_result_id("a" * 64, "b" * 64, None) == offline_result_id("a" * 64, "b" * 64,
    ...                                                                 {"ref": "base@1"})
    False
    """
    ref = canonical_json(dict(baseline_ref)).decode() if baseline_ref is not None else ""
    return hashlib.sha256(f"{results_sha256}\x1f{policy_hash}\x1f{ref}".encode()).hexdigest()[:32]


def baseline_evidence(
    metrics: Mapping[str, MetricValue], label: str | None, ref: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The ``baseline`` entry of a manifest's evidence: the numbers used, inline."""
    return {
        "label": label,
        "ref": None if ref is None else dict(ref),
        "metrics": {k: v.model_dump(mode="json") for k, v in sorted(metrics.items())},
    }


def _baseline_of(
    evidence: Mapping[str, Any],
) -> tuple[dict[str, MetricValue] | None, str | None, dict[str, Any] | None]:
    from govloop.gates import MetricValue

    base = evidence.get("baseline")
    if base is None:
        return None, None, None
    metrics = {k: MetricValue.model_validate(v) for k, v in base["metrics"].items()}
    return metrics, base.get("label"), base.get("ref")


def judge_results(
    policy: Policy,
    loaded: ResultsFile,
    *,
    baseline: Mapping[str, MetricValue] | None = None,
    baseline_label: str | None = None,
    baseline_ref: Mapping[str, Any] | None = None,
    ts: datetime | None = None,
) -> tuple[Verdict, GateResult]:
    """Judge a results file with ``policy``: the verdict, and the gate result to record.

    The result's id is :func:`offline_result_id`; ``ts`` (default: now) is when
    it was decided.
    """
    from govloop.gates import judge
    from govloop.schemas import utcnow

    evidence = loaded.evidence
    if baseline is not None:
        evidence = evidence.with_baseline(baseline, baseline_label)
    verdict = judge(policy, evidence)
    result = GateResult(
        event_id=offline_result_id(
            loaded.sha256, policy.content_hash, None if baseline_ref is None else dict(baseline_ref)
        ),
        ts=ts or utcnow(),
        policy=policy.name,
        policy_hash=policy.content_hash,
        model=loaded.model or "unknown",
        model_version="",
        outcome=verdict.outcome,
        rules=verdict.results,
    )
    return verdict, result


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


def _environment_notes(manifest: Manifest) -> list[str]:
    import platform

    from govloop import __version__

    notes = []
    if manifest.govloop_version != __version__:
        notes.append(f"govloop {manifest.govloop_version} (manifest) != {__version__} (now)")
    now_commit = git_commit()
    if manifest.git_commit and now_commit and manifest.git_commit != now_commit:
        notes.append(f"git commit {manifest.git_commit[:12]} (manifest) != {now_commit[:12]} (now)")
    if manifest.python != platform.python_version():
        notes.append(f"python {manifest.python} (manifest) != {platform.python_version()} (now)")
    now = package_versions()
    for name, version in sorted(manifest.packages.items()):
        if now.get(name) != version:
            notes.append(f"{name} {version} (manifest) != {now.get(name, 'not installed')} (now)")
    return notes


# --- reading the inputs again -------------------------------------------------------------------


def read_record(
    settings: Settings, topic: str, partition: int, offset: int, timeout: float = 10.0
) -> bytes | None:
    """The value of exactly one Kafka record; errors name topic, partition and offset."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    where = f"{topic} partition {partition} offset {offset}"
    if settings.kafka is None:
        raise ReplayError(
            f"no Kafka address to re-read {where} from: set GOVLOOP_KAFKA or run govloop up"
        )
    if not any(_answers(server) for server in settings.kafka.split(",")):
        raise RuntimeUnavailable(
            f"Kafka at {settings.kafka} does not answer, cannot re-read {where}"
        )
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
    except KafkaError as exc:
        raise RuntimeUnavailable(
            f"Kafka at {settings.kafka} does not answer, cannot re-read {where}: {exc}"
        ) from exc
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts or partition not in parts:
            raise ReplayError(
                f"cannot re-read {where}: the broker has no such "
                f"{'topic' if not parts else 'partition'} (any more)"
            )
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        if not first <= offset < end:
            held = f"offsets {first}..{end - 1}" if end > first else "no records"
            raise ReplayError(
                f"cannot re-read {where}: the record is gone (the partition holds {held})"
            )
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if record.offset == offset:
                    return record.value  # type: ignore[no-any-return]
                if record.offset > offset:
                    raise ReplayError(
                        f"cannot re-read {where}: the record is gone "
                        f"(the next one is at offset {record.offset})"
                    )
        raise ReplayError(f"cannot re-read {where}: nothing came within {timeout:g} s")
    except KafkaError as exc:
        raise RuntimeUnavailable(
            f"Kafka at {settings.kafka} failed while re-reading {where}: {exc}"
        ) from exc
    finally:
        consumer.close()


def _stored_event(session: Session, event_id: str | None) -> Any:
    """The metric snapshot or drift alert ``event_id`` as the SQL store holds it, or None."""
    from govloop.schemas import DriftAlert, MetricSnapshot
    from govloop.stores.sql import DriftAlertRow, MetricSnapshotRow

    if event_id is None:
        return None
    row = session.get(MetricSnapshotRow, event_id)
    if row is not None:
        return MetricSnapshot.model_validate_json(row.body)
    alert = session.get(DriftAlertRow, event_id)
    return None if alert is None else DriftAlert.model_validate_json(alert.body)


def _read_event(
    session: Session,
    settings: Settings,
    spec: dict[str, Any],
    strict: bool,
    seen: list[str],
    differences: list[str],
) -> Any:
    """One event input of a manifest, re-read and held to its digest (noted in ``seen``).

    ``kafka``: the record at its topic, partition and offset; when the broker
    cannot give it back, the SQL store's copy (unless ``strict``).  ``stored``:
    the SQL store's copy of the event ``event_id`` (e.g. the snapshot a drift
    alert was judged with).
    """
    from govloop.schemas import decode

    if spec["kind"] == "stored":
        where = f"stored event {spec['event_id']}"
        event = _stored_event(session, spec["event_id"])
        if event is None:
            raise ReplayError(f"cannot re-read {where}: it is not in the SQL store")
        source = f"read {where} from the SQL store"
    else:
        topic, partition, offset = spec["topic"], int(spec["partition"]), int(spec["offset"])
        where = f"{topic} partition {partition} offset {offset}"
        try:
            event = decode(
                _short_topic(settings, topic), read_record(settings, topic, partition, offset)
            )
            source = f"re-read kafka {where}"
        except (ReplayError, RuntimeUnavailable) as exc:
            event = None if strict else _stored_event(session, spec.get("event_id"))
            if event is None:
                raise
            source = (
                f"Kafka cannot give {where} back ({exc}); read the event's copy "
                "in the SQL store instead"
            )
    _held_to(
        spec["sha256"],
        event_digest(event),
        f"{source}: {event.SCHEMA} {event.event_id}",
        f"input {where}",
        "re-read",
        seen,
        differences,
    )
    return event


def _held_to(
    recorded: str,
    digest: str,
    source: str,
    name: str,
    now: str,
    seen: list[str],
    differences: list[str],
) -> bool:
    """Compare an input's digest with the manifest's: noted in ``seen``, a mismatch in
    ``differences``.  True when they match."""
    same = digest == recorded
    seen.append(
        f"{source}, sha256 {digest[:12]} "
        + ("matches the manifest" if same else "DIFFERS from the manifest")
    )
    if not same:
        differences.append(f"{name}: sha256 {recorded} (manifest) != {digest} ({now})")
    return same


def _answers(server: str) -> bool:
    """Whether a bootstrap server accepts connections (before a client leaks sockets on it)."""
    from govloop.runtime.ports import answers

    host, _, port = server.strip().rpartition(":")
    try:
        return answers(host.strip("[]") or "localhost", int(port), timeout=2.0)
    except ValueError:
        return True  # not host:port; let the client say what is wrong with it


def _short_topic(settings: Settings, topic: str) -> str:
    from govloop.schemas import TOPICS

    if topic.startswith(settings.topic_prefix) and topic[len(settings.topic_prefix) :] in TOPICS:
        return topic[len(settings.topic_prefix) :]
    known = [n for n in TOPICS if topic.endswith(n)]
    if not known:
        raise ReplayError(f"{topic}: not a govloop topic, cannot decode its records")
    return max(known, key=len)


# --- replay ---------------------------------------------------------------------------------------


def _load(session: Session, gate_result_id: str) -> tuple[GateResult, Manifest, Policy, list[str]]:
    from pydantic import ValidationError

    from govloop.gates import Policy
    from govloop.stores.sql import GatePolicyRow, GateResultRow

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
    from govloop.gates import DriftSignal, judge_snapshot, parse_results
    from govloop.schemas import MetricSnapshot

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
    baseline, label, ref = _baseline_of(manifest.evidence)
    seen: list[str] = []
    if events:
        read = [_read_event(session, settings, spec, strict, seen, differences) for spec in events]
        snaps = [e for e in read if isinstance(e, MetricSnapshot)]
        triggers = [e for e in read if not isinstance(e, MetricSnapshot)]
        if len(snaps) != 1 or len(triggers) > 1:
            raise ReplayError(
                f"manifest {manifest.id}: replay knows one metric snapshot, "
                f"judged on its own or on a drift alert; the inputs hold "
                f"{', '.join(e.SCHEMA for e in read)}"
            )
        alerts = manifest.evidence.get("drift_alerts")
        recomputed = judge_snapshot(
            policy,
            snaps[0],
            baseline=baseline,
            drift_alerts=None if alerts is None else [DriftSignal(**d) for d in alerts],
            trigger=triggers[0] if triggers else None,
        )
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
        same = _held_to(
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
        _, recomputed = judge_results(
            policy, loaded, baseline=baseline, baseline_label=label, baseline_ref=ref, ts=stored.ts
        )
    if baseline is not None:
        seen.append(f"baseline {label or '-'}: {len(baseline)} metrics recorded in the manifest")
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
        notes=_environment_notes(manifest),
    )
