"""The drift side of the stream worker: profiles per window in, drift alerts out.

An adapter: it feeds :class:`~govloop.stores.drift_state.DriftStore` with the
features of each batch, and at window close gathers the window profiles and
references and hands them to the pure :func:`~govloop.streams.drift.decide_round`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from govloop.config import Settings
from govloop.schemas import DriftAlert, Prediction
from govloop.stats.fleet import FleetBudget
from govloop.stats.profile import Profile, Row
from govloop.stores.drift_state import DriftStore
from govloop.stores.sql import (
    DriftStatusRow,
    latest_reference,
    save_drift_alert,
    save_reference,
)
from govloop.stores.window_state import ClosedWindow
from govloop.streams.drift import ClosingWindow, decide_round
from govloop.streams.features import observed_features

__all__ = ["DriftMonitor", "window_member"]

log = logging.getLogger("govloop.streams.drift")

#: Seconds a reference profile read from SQL is reused before it is read again.
REFERENCE_TTL = 30.0


def window_member(model: str, version: str, epoch: float, size: float) -> str:
    """The window's identity, formatted exactly as the counters' Lua script does."""
    start = math.floor(epoch / size) * size
    return f"{model}\x1f{version}\x1f{start:.3f}"


class DriftMonitor:
    """Per-window feature profiles, references and drift decisions for one worker."""

    def __init__(self, settings: Settings, redis: Any, engine: Engine) -> None:
        self.settings = settings
        self.store = DriftStore(redis, settings.redis_prefix, settings.join_horizon_seconds)
        self.engine = engine
        self.budget = FleetBudget(alpha=settings.drift_alpha, method=settings.drift_budget)
        self._references: dict[str, tuple[float, Profile | None, str]] = {}

    async def observe(self, located: Sequence[tuple[Prediction, str, int]]) -> int:
        """Add predictions (with their ``topic:partition`` and offset) to window profiles."""
        groups: dict[tuple[str, str], list[tuple[int, Row]]] = {}
        size = self.settings.window_seconds
        for p, tp, offset in located:
            member = window_member(p.model, p.model_version, p.epoch, size)
            groups.setdefault((member, tp), []).append((offset, observed_features(p)))
        return await self.store.add(groups)

    async def close(self, windows: Sequence[ClosedWindow],
                    publish: Callable[[DriftAlert], Awaitable[Any]]) -> list[DriftAlert]:
        """Decide drift for closing windows, publish and store the alerts, then the states.

        Alerts go out before the hysteresis states are saved: a crash in between
        re-decides the round and re-publishes the same alerts (same ids), never
        loses one.
        """
        closing: list[ClosingWindow] = []
        size = self.settings.window_seconds
        for w in windows:
            current = await self.store.window_profile(w.member)
            if current is None:
                continue
            reference, version = await self._reference(w.model, w.model_version, current)
            if reference is not None:
                closing.append(ClosingWindow(w.model, w.model_version, w.start, w.start + size,
                                             current, reference, version))
        if not closing:
            return []
        keys = {f"{w.model}\x1f{w.model_version}" for w in closing}
        states = {key: await self.store.states(key) for key in keys}
        outcome = decide_round(self.settings.topic_prefix, closing, states, self.budget,
                               self.settings.drift_recover_windows,
                               self.settings.drift_min_count)

        def record(session: Session) -> None:
            for alert in outcome.alerts:
                save_drift_alert(session, alert)
            for key, features in outcome.latest.items():
                model, version = key.split("\x1f")
                model_states = {**states[key], **outcome.states.get(key, {})}
                for feature, r in features.items():
                    state = model_states.get(feature)
                    session.merge(DriftStatusRow(
                        model=model, model_version=version, feature=feature,
                        test=r["test"], statistic=r["statistic"], threshold=r["threshold"],
                        p_value=r["p_value"], drifted=r["drifted"],
                        state="ok" if state is None else "drift",
                        since=None if state is None else datetime.fromtimestamp(
                            state["since"], UTC),
                        window_end=datetime.fromtimestamp(r["window_end"], UTC),
                        reference_version=r["reference_version"], n_current=r["n_current"],
                    ))
            session.commit()

        for alert in outcome.alerts:
            await publish(alert)
        await asyncio.to_thread(self._in_session, record)
        for key in keys:
            await self.store.save(key, outcome.states.get(key, {}))
        return outcome.alerts

    async def forget(self, windows: Sequence[ClosedWindow]) -> None:
        await self.store.forget(w.member for w in windows)

    def _in_session(self, fn: Any) -> Any:
        with Session(self.engine) as session:
            return fn(session)

    async def _reference(self, model: str, version: str,
                         current: Profile) -> tuple[Profile | None, str]:
        """The version's reference; without one, the first events become it."""
        key = f"{model}\x1f{version}"
        cached = self._references.get(key)
        if cached is not None and cached[1] is not None and \
                time.monotonic() - cached[0] < REFERENCE_TTL:
            return cached[1], cached[2]

        def load(session: Session) -> tuple[Profile | None, str]:
            row = latest_reference(session, model, version)
            if row is None:
                return None, ""
            import json

            return Profile.from_dict(json.loads(row.body)), f"v{row.version} ({row.source})"

        reference, label = await asyncio.to_thread(self._in_session, load)
        if reference is None and self.settings.reference_events > 0:
            await self._grow_reference(key, model, version, current)
        self._references[key] = (time.monotonic(), reference, label)
        return reference, label

    async def _grow_reference(self, key: str, model: str, version: str,
                              current: Profile) -> None:
        pending = await self.store.pending_reference(key) or Profile()
        pending.merge(current)
        if pending.n < self.settings.reference_events:
            await self.store.set_pending_reference(key, pending)
            return

        def store(session: Session) -> None:
            save_reference(session, model, version, f"first {pending.n} events",
                           pending.n, pending.to_dict(), datetime.now(UTC))
            session.commit()

        await asyncio.to_thread(self._in_session, store)
        await self.store.set_pending_reference(key, None)
        log.warning("reference for %s %s: the first %d events", model, version, pending.n)
