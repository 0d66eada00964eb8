"""One round of drift decisions at window close (pure: profiles and states in, alerts out).

Every window that closes in a round is compared with its model version's
reference; the fleet budget is spent over all features of all those windows
at once; each feature's hysteresis state then decides whether the round
raises a ``drift`` alert, a ``recovered`` alert, or nothing (:func:`next_state`:
a feature enters ``drift`` on the first drifted window and leaves it, with one
``recovered`` alert, only after ``recover_windows`` consecutive clean windows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from govloop.schemas import DriftAlert
from govloop.stats.fleet import FleetBudget
from govloop.stats.profile import FeatureDrift, Profile, compare, drifted_features

__all__ = ["ClosingWindow", "RoundOutcome", "Transition", "decide_round", "next_state"]


@dataclass(frozen=True)
class Transition:
    """A feature's hysteresis state after one window, and the alert it raises, if any."""

    state: dict[str, Any] | None  # None: not drifting
    alert: str | None  # "drift" | "recovered" | None


def next_state(
    state: Mapping[str, Any] | None, drifted: bool, window_start: float, recover_windows: int
) -> Transition:
    """Pure hysteresis step for one feature.

    >>> t = next_state(None, True, 60.0, 2); t.alert, t.state
    ('drift', {'since': 60.0, 'clean': 0})
    >>> t = next_state(t.state, False, 120.0, 2); t.alert, t.state
    (None, {'since': 60.0, 'clean': 1})
    >>> next_state(t.state, False, 180.0, 2).alert
    'recovered'
    """
    if state is None:
        return (
            Transition({"since": window_start, "clean": 0}, "drift")
            if drifted
            else Transition(None, None)
        )
    if drifted:
        return Transition({"since": state["since"], "clean": 0}, None)
    clean = int(state["clean"]) + 1
    if clean >= recover_windows:
        return Transition(None, "recovered")
    return Transition({"since": state["since"], "clean": clean}, None)


@dataclass(frozen=True)
class ClosingWindow:
    """A window of one model version whose drift is decided in this round."""

    model: str
    model_version: str
    start: float
    end: float
    current: Profile
    reference: Profile
    reference_version: str


@dataclass
class RoundOutcome:
    """What a round decided: alerts to publish, states and latest results to store."""

    alerts: list[DriftAlert] = field(default_factory=list)
    states: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)
    latest: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _alert_id(prefix: str, window: ClosingWindow, feature: str, state: str) -> str:
    text = (
        f"{prefix}\x1f{window.model}\x1f{window.model_version}\x1f{feature}\x1f"
        f"{window.start:.3f}\x1f{state}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _severity(d: FeatureDrift, alpha: float) -> str:
    r = d.result
    strong = (r.p_value is not None and r.p_value < alpha / 100) or (
        r.p_value is None and r.statistic >= 2 * r.threshold
    )
    return "critical" if strong else "warning"


def decide_round(
    prefix: str,
    windows: list[ClosingWindow],
    states: Mapping[str, Mapping[str, dict[str, Any]]],
    budget: FleetBudget,
    recover_windows: int = 2,
    min_count: int = 50,
    numeric_method: str = "ks",
    categorical_method: str = "chi_square",
) -> RoundOutcome:
    """Decide drift for every window closing now; ``states`` maps model key -> feature -> state.

    Windows of one model version are decided in time order, so a round that
    closes several of them walks the hysteresis forward one window at a time.
    """
    results: dict[tuple[int, str], FeatureDrift] = {}
    ordered = sorted(windows, key=lambda w: (w.model, w.model_version, w.start))
    for i, w in enumerate(ordered):
        for d in compare(w.reference, w.current, numeric_method, categorical_method, min_count):
            results[(i, d.feature)] = d
    drifted = drifted_features(results, budget)  # type: ignore[arg-type]
    out = RoundOutcome()
    for i, w in enumerate(ordered):
        key = f"{w.model}\x1f{w.model_version}"
        model_states = out.states.setdefault(key, {})
        current_states = dict(states.get(key, {}))
        for f, s in model_states.items():  # earlier windows of this model in this round
            if s is None:
                current_states.pop(f, None)
            else:
                current_states[f] = s
        mine = {f: d for (j, f), d in results.items() if j == i}
        ranked = sorted(
            (f for f in mine if (i, f) in drifted), key=lambda f: mine[f].result.p_value or 0.0
        )
        for feature, d in mine.items():
            hit = (i, feature) in drifted
            step = next_state(current_states.get(feature), hit, w.start, recover_windows)
            model_states[feature] = step.state
            when = datetime.fromtimestamp(w.end, UTC)
            out.latest.setdefault(key, {})[feature] = {
                "test": d.result.test,
                "statistic": d.result.statistic,
                "threshold": d.result.threshold,
                "p_value": d.result.p_value,
                "drifted": hit,
                "window_end": w.end,
                "reference_version": w.reference_version,
                "n_current": d.n_current,
            }
            if step.alert is None:
                continue
            out.alerts.append(
                DriftAlert(
                    event_id=_alert_id(prefix, w, feature, step.alert),
                    ts=when,
                    model=w.model,
                    model_version=w.model_version,
                    feature=feature,
                    test=d.result.test,
                    statistic=d.result.statistic,
                    threshold=d.result.threshold,
                    p_value=d.result.p_value,
                    severity=_severity(d, budget.alpha) if step.alert == "drift" else "info",
                    state=step.alert,
                    reference_version=w.reference_version,
                    top_features=ranked[:5],
                )
            )
    return out
