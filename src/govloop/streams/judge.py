"""The worker's judging step: snapshots and drift alerts in, recorded decisions out.

Each window's overall tumbling snapshot is judged by every policy for its
model; a drift alert makes the policies with drift rules look again at the
model version's latest snapshot, with the alert now active.  The decision
itself is :func:`govloop.judging.gates.decide` (the one path ``govloop gate
check`` takes too); this module gathers what it needs from the SQL store
(the drift alerts in force, the policy's baseline and, for policies with
regression rules, the model version's accumulated windows), records each decision
with its manifest and moves the gate's state
(:func:`govloop.stores.sql.advance_gate`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlmodel import Session

from govloop.audit.manifest import kafka_input, stored_input
from govloop.audit.records import save_decision
from govloop.config import Settings
from govloop.errors import ConfigError
from govloop.gates import DriftSignal, Policy
from govloop.gates.evidence import metrics_from_snapshots
from govloop.judging.gates import Accumulated, Baseline, decide
from govloop.schemas import DeadLetter, DriftAlert, Event, GateResult, MetricSnapshot
from govloop.stores.sql import (
    active_drift,
    advance_gate,
    latest_snapshot,
    resolve_baseline,
    version_windows,
)
from govloop.streams.concept import FEATURES
from govloop.streams.decode import dead_letter

__all__ = [
    "SEVERITY",
    "Judged",
    "accumulated",
    "drift_signals",
    "judge_events",
    "judged",
    "policy_baseline",
]

log = logging.getLogger("govloop.streams")

#: Severity of a drifting feature as a drift rule sees it: concept drift of the
#: error rate is critical, data drift a warning.
SEVERITY = {feature: severity for feature, severity in FEATURES.values()}


def judged(event: Event) -> bool:
    """Whether the judging step looks at ``event``: a drift alert or an overall tumbling
    snapshot (sliding windows and slices are published, not judged)."""
    return isinstance(event, DriftAlert) or (
        isinstance(event, MetricSnapshot)
        and event.window == "tumbling"
        and event.variant is None
        and not event.segment
    )


class Judged(NamedTuple):
    """What :func:`judge_events` gives back: results to publish, and what it could not judge."""

    changes: list[GateResult]  # results that changed a gate's state, for ``gates``
    dead: list[DeadLetter]  # (event, policy) pairs whose judging failed, with the reason


def judge_events(
    session: Session,
    settings: Settings,
    policies: Sequence[Policy],
    located: Sequence[tuple[MetricSnapshot | DriftAlert, Any]],
) -> Judged:
    """Judge each (event, its Kafka record) and record the decisions in ``session``.

    A policy that fails on an event (a bug, or state it cannot judge) sends
    that event to the dead-letter topic with the reason; the other policies
    and events are judged all the same.  Database errors propagate (the
    caller retries the whole step).
    """
    changes = []
    dead = []
    for event, r in located:
        applies = [p for p in policies if p.applies_to(event.model)]
        inputs = [kafka_input(r.topic, r.partition, r.offset, event)]
        trigger: DriftAlert | None = None
        if isinstance(event, DriftAlert):
            applies = [p for p in applies if any(rule.kind == "drift" for rule in p.rules)]
            snap = latest_snapshot(session, event.model, event.model_version)
            if snap is None or not applies:
                continue  # nothing judged yet: the next window sees the alert
            trigger = event
            inputs.append(stored_input(snap))
        else:
            snap = event
        if not applies:
            continue
        signals = drift_signals(session, snap, trigger)
        so_far: Accumulated | None = None
        for policy in applies:
            baseline = policy_baseline(session, policy)
            if so_far is None and any(rule.kind == "regression" for rule in policy.rules):
                so_far = accumulated(session, snap)
            try:
                decision = decide(
                    policy,
                    snap,
                    inputs=inputs,
                    baseline=baseline,
                    drift_alerts=signals,
                    trigger=trigger,
                    settings=settings,
                    accumulated=(
                        so_far if any(r.kind == "regression" for r in policy.rules) else None
                    ),
                )
            except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as exc:
                log.exception("policy %s could not judge %s", policy.name, event.event_id)
                reason = f"policy {policy.name!r} could not judge it: {exc!r}"
                dead.append(dead_letter(r.topic, r.partition, r.offset, reason, r.value))
                continue
            new = save_decision(session, decision.result, decision.manifest)
            change = advance_gate(session, decision.result, settings.gate_recover_windows, new)
            if change is not None:
                changes.append(change)
    return Judged(changes, dead)


def accumulated(session: Session, snap: MetricSnapshot) -> Accumulated:
    """The evidence of ``snap``'s model version so far: its earlier windows (latest
    revision each) and ``snap`` itself, counts summed, for the online regression rules."""
    windows = [*version_windows(session, snap.model, snap.model_version, snap.window_start), snap]
    first = windows[0].window_start.isoformat()
    return Accumulated(
        metrics_from_snapshots(windows),
        len(windows),
        (first, snap.window_start.isoformat()),
    )


def drift_signals(
    session: Session, snap: MetricSnapshot, trigger: DriftAlert | None
) -> list[DriftSignal]:
    """The drift alerts in force for a snapshot's model version, by feature.

    A triggering alert counts as it says, whether its status is stored yet.
    """
    signals = [
        DriftSignal(
            feature=d.feature,
            test=d.test,
            statistic=d.statistic,
            model=d.model,
            severity=SEVERITY.get(d.feature, "warning"),
        )
        for d in active_drift(session, snap.model, snap.model_version)
    ]
    if trigger is not None:
        signals = [x for x in signals if x.feature != trigger.feature]
        if trigger.state == "drift":
            signals = sorted([*signals, DriftSignal.from_alert(trigger)], key=lambda x: x.feature)
    return signals


def policy_baseline(session: Session, policy: Policy) -> Baseline | None:
    """The baseline a policy's regression rules compare with.

    A policy without one, or naming one that is not stored, gets None: its
    regression rules are then inconclusive, never pass.
    """
    if policy.baseline is None:
        return None
    try:
        metrics, label, versions = resolve_baseline(session, policy.baseline, policy.baseline_last)
    except ConfigError as exc:
        log.warning("policy %s: %s; its regression rules are inconclusive", policy.name, exc)
        return None
    ref = {"name": policy.baseline, "last": policy.baseline_last, "versions": versions}
    return Baseline(metrics, label, ref)
