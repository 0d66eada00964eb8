"""One judging path: (policy, evidence, baseline) -> (verdict, gate result, manifest).

:func:`decide` judges a metric snapshot (online: the stream worker, on each
window and on drift alerts) or a results file (offline: ``govloop gate
check``) the same way: the gate evaluator's verdict
(:func:`govloop.gates.judge`), the gate result with its deterministic id,
and the manifest that names every input, so that ``govloop repro verify``
can compute it again.  Pure: nothing is stored or published here; the
caller records a decision with :func:`govloop.audit.records.save_decision`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from govloop.audit.ledger import canonical_json
from govloop.audit.manifest import Manifest, build_manifest
from govloop.config import Settings
from govloop.gates import DriftSignal, MetricValue, Policy, ResultsFile, Verdict, judge
from govloop.gates.evaluate import snapshot_evidence, snapshot_result
from govloop.schemas import Event, GateResult, MetricSnapshot, utcnow

__all__ = ["Accumulated", "Baseline", "Decision", "decide", "offline_result_id"]


@dataclass(frozen=True)
class Baseline:
    """The metrics regression rules compare with, and how a manifest names them.

    ``label`` is for reports (``release@3``); ``ref`` identifies the baseline
    (stored versions, or a file and its SHA-256) and is part of an offline
    decision's id.
    """

    metrics: Mapping[str, MetricValue]
    label: str | None = None
    ref: Mapping[str, Any] | None = None

    def evidence(self) -> dict[str, Any]:
        """The ``baseline`` entry of a manifest's evidence: the numbers used, inline.

        >>> Baseline({"acc": MetricValue(value=0.9)}, "b@1", {"ref": "b@1"}).evidence()
        {'label': 'b@1', 'ref': {'ref': 'b@1'}, 'metrics': {'acc': {'value': 0.9, ...}}}
        """
        return {
            "label": self.label,
            "ref": None if self.ref is None else dict(self.ref),
            "metrics": {k: v.model_dump(mode="json") for k, v in sorted(self.metrics.items())},
        }

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any]) -> Baseline | None:
        """The baseline a manifest's evidence recorded (:meth:`evidence`), if any.

        >>> b = Baseline({"acc": MetricValue(value=0.9)}, "b@1", {"ref": "b@1"})
        >>> Baseline.from_evidence({"baseline": b.evidence()}) == b
        True
        """
        entry = evidence.get("baseline")
        if entry is None:
            return None
        metrics = {k: MetricValue.model_validate(v) for k, v in entry["metrics"].items()}
        return cls(metrics, entry.get("label"), entry.get("ref"))


@dataclass(frozen=True)
class Accumulated:
    """A model version's evidence so far, for the online regression rules.

    ``metrics`` are summed over its tumbling overall windows up to the judged
    one (each window's latest revision, the judged snapshot for its own
    window); ``looks`` is how many windows; ``windows`` names the first and
    last window start, for reports.  A new model version starts afresh.
    """

    metrics: Mapping[str, MetricValue]
    looks: int
    windows: tuple[str, str] | None = None

    def evidence(self) -> dict[str, Any]:
        """The ``cumulative`` entry of a manifest's evidence: the numbers used, inline.

        >>> a = Accumulated({"acc": MetricValue(value=0.9, n=10, successes=9)}, 2)
        >>> a.evidence()["looks"], Accumulated.from_evidence({"cumulative": a.evidence()}) == a
        (2, True)
        """
        return {
            "looks": self.looks,
            "windows": None if self.windows is None else list(self.windows),
            "metrics": {k: v.model_dump(mode="json") for k, v in sorted(self.metrics.items())},
        }

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any]) -> Accumulated | None:
        """The accumulated evidence a manifest recorded (:meth:`evidence`), if any."""
        entry = evidence.get("cumulative")
        if entry is None:
            return None
        metrics = {k: MetricValue.model_validate(v) for k, v in entry["metrics"].items()}
        windows = entry.get("windows")
        return cls(metrics, int(entry["looks"]), None if windows is None else tuple(windows))


class Decision(NamedTuple):
    """A policy's decision: its verdict, the gate result to record (its ``manifest_id``
    set) and the manifest."""

    verdict: Verdict
    result: GateResult
    manifest: Manifest


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


def _results_decision(
    policy: Policy, loaded: ResultsFile, baseline: Baseline | None, ts: datetime | None
) -> tuple[Verdict, GateResult]:
    evidence = loaded.evidence
    if baseline is not None:
        evidence = evidence.with_baseline(baseline.metrics, baseline.label)
    verdict = judge(policy, evidence)
    result = GateResult(
        event_id=offline_result_id(
            loaded.sha256, policy.content_hash, None if baseline is None else baseline.ref
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


def decide(
    policy: Policy,
    judged: MetricSnapshot | ResultsFile,
    *,
    inputs: Sequence[Mapping[str, Any]],
    baseline: Baseline | None = None,
    drift_alerts: Sequence[DriftSignal] | None = None,
    trigger: Event | None = None,
    settings: Settings | None = None,
    ts: datetime | None = None,
    accumulated: Accumulated | None = None,
) -> Decision:
    """Judge ``judged`` with ``policy``: the verdict, the gate result and its manifest.

    ``inputs`` are the manifest's inputs (:func:`govloop.audit.manifest.kafka_input`,
    ``stored_input`` or ``file_input``).  Online, a snapshot is judged with the
    drift alerts in force (recorded in the manifest even when there are none)
    and, when a drift alert made the gate look again, that alert as
    ``trigger``; offline, a results file is judged at ``ts`` (default: now).
    A baseline's metrics are recorded inline, and so is ``accumulated``: online,
    the model version's evidence so far, which regression rules then judge
    under continuous monitoring (:mod:`govloop.gates.sequential`).

    >>> from govloop.gates import parse_policy
    >>> policy = parse_policy("name: q\\nrules:\\n  - {metric: accuracy, op: '>=', value: 0.8}")
    >>> snap = MetricSnapshot(model="m", model_version="1", window_start=utcnow(),
    ...                       window_end=utcnow(), count=10, labelled_count=10,
    ...                       correct_count=9, accuracy=0.9, feedback_count=10,
    ...                       positive_count=0, judged_count=0)
    >>> d = decide(policy, snap, inputs=[], drift_alerts=[])
    >>> d.verdict.outcome, d.result.outcome, d.result.manifest_id == d.manifest.id
    ('pass', 'pass', True)
    >>> d.manifest.evidence
    {'drift_alerts': []}
    """
    if isinstance(judged, MetricSnapshot):
        evidence = snapshot_evidence(
            judged,
            baseline=None if baseline is None else baseline.metrics,
            drift_alerts=drift_alerts,
            cumulative=None if accumulated is None else accumulated.metrics,
            looks=None if accumulated is None else accumulated.looks,
        )
        verdict = judge(policy, evidence)
        result = snapshot_result(verdict, judged, trigger)
    else:
        verdict, result = _results_decision(policy, judged, baseline, ts)
    recorded: dict[str, Any] = {}
    if drift_alerts is not None:
        recorded["drift_alerts"] = [s.model_dump(mode="json") for s in drift_alerts]
    if baseline is not None:
        recorded["baseline"] = baseline.evidence()
    if accumulated is not None and isinstance(judged, MetricSnapshot):
        recorded["cumulative"] = accumulated.evidence()
    manifest = build_manifest(
        policy_hash=policy.content_hash, inputs=inputs, evidence=recorded, settings=settings
    )
    return Decision(verdict, result.model_copy(update={"manifest_id": manifest.id}), manifest)
