"""The drift side of the stream worker: profiles per window in, drift alerts out.

An adapter: it feeds :class:`~govloop.stores.redis.drift.DriftStore` with the
features of each batch, and at window close gathers the window profiles and
references and hands them to the pure :func:`~govloop.judging.drift.decide_round`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlmodel import Session

from govloop.config import Settings
from govloop.judging.drift import ClosingWindow, decide_round
from govloop.judging.features import observed_columns
from govloop.schemas import DriftAlert, Prediction, Scalar
from govloop.stats.fleet import FleetBudget
from govloop.stats.profile import Columns, Profile
from govloop.stores.redis.drift import DriftStore, Saving
from govloop.stores.redis.windows import ClosedWindow
from govloop.stores.sql import (
    DriftStatusRow,
    latest_reference,
    save_drift_alert,
    save_reference,
)
from govloop.stores.sql.retry import in_session

__all__ = ["DriftMonitor", "Group", "Located", "Staged", "window_member"]

log = logging.getLogger("govloop.streams.drift")

#: Seconds a reference profile read from SQL is reused before it is read again.
REFERENCE_TTL = 30.0


def window_member(model: str, version: str, epoch: float, size: float) -> str:
    """The window's identity, formatted exactly as the counters' Lua script does."""
    start = math.floor(epoch / size) * size
    return f"{model}\x1f{version}\x1f{start:.3f}"


#: A prediction of a batch with where it was read and what :meth:`DriftMonitor.group` needs
#: of it, computed once: (prediction, ``topic:partition``, offset, ``epoch``,
#: ``predicted_label``).
Located = tuple[Prediction, str, int, float, Scalar | None]


class Group(NamedTuple):
    """The predictions of one batch for one window partial, and their features."""

    offsets: list[int]  # ascending, as read from the partition
    predictions: list[Prediction]
    columns: Columns


class Staged(NamedTuple):
    """A batch's predictions grouped by (window member, topic:partition)."""

    groups: dict[tuple[str, str], Group]
    newest: dict[str, float]  # newest event time per topic:partition


class DriftMonitor:
    """Per-window feature profiles, references and drift decisions for one worker."""

    def __init__(self, settings: Settings, redis: Any, engine: Engine) -> None:
        self.settings = settings
        self.store = DriftStore(redis, settings.redis_prefix, settings.join_horizon_seconds)
        self.engine = engine
        self.budget = FleetBudget(alpha=settings.drift_alpha, method=settings.drift_budget)
        self._references: dict[str, tuple[float, Profile | None, str]] = {}
        self._event_time: dict[str, float] = {}  # newest event time staged per partition
        #: Longest a staged profile row waits to be stored (well inside the idle close).
        self.flush_seconds = min(0.5, settings.idle_close_seconds / 4)
        #: The streaming detectors: features they watch raise their alerts there, and the
        #: windowed round only explains them (status rows); None: the windowed round alerts.
        self.detectors: Any = None

    async def window_so_far(self, model: str, version: str, ts: float) -> Profile | None:
        """The stored profile of the window holding event time ``ts`` (what is saved so far)."""
        return await self.store.window_profile(
            window_member(model, version, ts, self.settings.window_seconds)
        )

    def group(self, located: Sequence[Located]) -> Staged:
        """Sort a batch's predictions into window partials and extract their features (no I/O)."""
        size = self.settings.window_seconds
        floor = math.floor
        members: dict[tuple[str, str, float], str] = {}
        parts: dict[tuple[str, str], tuple[list[int], list[Prediction], list[Scalar | None]]] = {}
        newest: dict[str, float] = {}
        for p, tp, offset, epoch, label in located:
            start = floor(epoch / size) * size
            window = (p.model, p.model_version, start)
            member = members.get(window)
            if member is None:
                member = members[window] = window_member(p.model, p.model_version, epoch, size)
            part = parts.get((member, tp))
            if part is None:
                part = parts[(member, tp)] = ([], [], [])
            part[0].append(offset)
            part[1].append(p)
            part[2].append(label)
            if epoch > newest.get(tp, -math.inf):
                newest[tp] = epoch
        groups = {
            key: Group(offsets, preds, observed_columns(preds, labels))
            for key, (offsets, preds, labels) in parts.items()
        }
        return Staged(groups, newest)

    async def stage(self, staged: Staged) -> int:
        """Add grouped predictions to the partials (rows applied before are skipped)."""
        await self.store.load(staged.groups)
        applied = sum(self._put(key, g) for key, g in staged.groups.items())
        self._advance(staged.newest)
        return applied

    def stage_cached(self, staged: Staged) -> Staged:
        """Stage groups whose partials are cached (no I/O); return the others, for :meth:`stage`."""
        rest = {}
        for key, g in staged.groups.items():
            if self.store.applied_offset(key) is None:
                rest[key] = g
            else:
                self._put(key, g)
        self._advance(staged.newest)
        return Staged(rest, staged.newest)

    def _put(self, key: tuple[str, str], g: Group) -> int:
        done = self.store.applied_offset(key)
        if done is None:  # forgotten meanwhile: its window has closed
            return 0
        columns = g.columns
        if min(g.offsets) <= done:  # redelivered after a crash: keep only the new rows
            fresh = [p for offset, p in zip(g.offsets, g.predictions, strict=True) if offset > done]
            if not fresh:
                return 0
            columns = observed_columns(fresh)
        self.store.put(key, max(g.offsets), columns)
        return columns.n

    def _advance(self, newest: dict[str, float]) -> None:
        for tp, epoch in newest.items():
            if epoch > self._event_time.get(tp, -math.inf):
                self._event_time[tp] = epoch

    def due(self) -> list[tuple[str, str]]:
        """Unsaved partials a window close may read soon.

        Those whose partition's event time has reached the window's end (the
        watermark cannot pass the window before they are stored), and any
        older than ``flush_seconds`` (well inside the idle close).
        """
        size = self.settings.window_seconds
        stale = time.monotonic() - self.flush_seconds
        newest = self._event_time
        return [
            (member, tp)
            for (member, tp), since in self.store.unsaved().items()
            if since <= stale
            or newest.get(tp, -math.inf) >= float(member.rsplit("\x1f", 1)[1]) + size
        ]

    def queue_due(self, pipe: Any) -> Saving:
        """Add the writes of the :meth:`due` partials to a transaction (hold :attr:`writing`)."""
        return self.store.queue_flush(pipe, self.due())

    def saved(self, saving: Saving) -> None:
        """The transaction of :meth:`queue_due` succeeded."""
        self.store.saved(saving)

    @property
    def writing(self) -> asyncio.Lock:
        """Held while profiles are being written: one write at a time, in order."""
        return self.store.writing

    async def flush(self) -> None:
        """Store every staged profile (before committing offsets, when input pauses)."""
        await self.store.flush()

    def invalidate(self) -> None:
        """Partition ownership changed: drop cached profiles (flush first to keep them)."""
        self.store.invalidate()
        self._event_time.clear()

    async def close(
        self, windows: Sequence[ClosedWindow], publish: Callable[[DriftAlert], Awaitable[Any]]
    ) -> list[DriftAlert]:
        """Decide drift for closing windows, publish and store the alerts, then the states.

        Alerts go out before the hysteresis states are saved: a crash in between
        re-decides the round and re-publishes the same alerts (same ids), never
        loses one.
        """
        closing: list[ClosingWindow] = []
        size = self.settings.window_seconds
        await self.store.flush()  # this worker's staged rows of the closing windows
        for w in windows:
            current = await self.store.window_profile(w.member)
            if current is None:
                continue
            reference, version = await self._reference(w.model, w.model_version, current)
            if reference is not None:
                closing.append(
                    ClosingWindow(
                        w.model,
                        w.model_version,
                        w.start,
                        w.start + size,
                        current,
                        reference,
                        version,
                    )
                )
        if not closing:
            return []
        keys = {f"{w.model}\x1f{w.model_version}" for w in closing}
        states = {key: await self.store.states(key) for key in keys}
        outcome = decide_round(
            self.settings.topic_prefix,
            closing,
            states,
            self.budget,
            self.settings.drift_recover_windows,
            self.settings.drift_min_count,
        )
        # features the streaming detectors watch: their episodes are the detectors', the
        # windowed test only explains (status rows); embeddings alert here
        episodes: dict[str, dict[str, dict[str, Any]]] = {}
        if self.detectors is not None:
            for key in keys:
                episodes[key] = await self.detectors.episodes(*key.split("\x1f"))
        if self.detectors is not None:  # they alert for every numeric and categorical one
            outcome.alerts = [a for a in outcome.alerts if a.feature == "embedding"]

        def record(session: Session) -> None:
            for alert in outcome.alerts:
                save_drift_alert(session, alert)
            for key, features in outcome.latest.items():
                model, version = key.split("\x1f")
                model_states = {**states[key], **outcome.states.get(key, {})}
                watched = episodes.get(key, {})
                for feature, r in features.items():
                    state = model_states.get(feature)
                    if feature in watched:
                        episode = watched[feature]
                        state = episode if episode["state"] == "drift" else None
                    session.merge(
                        DriftStatusRow(
                            model=model,
                            model_version=version,
                            feature=feature,
                            test=r["test"],
                            statistic=r["statistic"],
                            threshold=r["threshold"],
                            p_value=r["p_value"],
                            drifted=r["drifted"] if feature not in watched else state is not None,
                            state="ok" if state is None else "drift",
                            since=None
                            if state is None
                            else datetime.fromtimestamp(state["since"], UTC),
                            window_end=datetime.fromtimestamp(r["window_end"], UTC),
                            reference_version=r["reference_version"],
                            n_current=r["n_current"],
                        )
                    )
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
        return in_session(self.engine, fn, "drift write")

    async def _reference(
        self, model: str, version: str, current: Profile
    ) -> tuple[Profile | None, str]:
        """The version's reference; without one, the first events become it."""
        key = f"{model}\x1f{version}"
        cached = self._references.get(key)
        if (
            cached is not None
            and cached[1] is not None
            and time.monotonic() - cached[0] < REFERENCE_TTL
        ):
            return cached[1], cached[2]

        def load(session: Session) -> tuple[Profile | None, str]:
            row = latest_reference(session, model, version)
            if row is None:
                return None, ""
            return Profile.from_dict(json.loads(row.body)), f"v{row.version} ({row.source})"

        reference, label = await asyncio.to_thread(self._in_session, load)
        if reference is None and self.settings.reference_events > 0:
            await self._grow_reference(key, model, version, current)
        self._references[key] = (time.monotonic(), reference, label)
        return reference, label

    async def _grow_reference(self, key: str, model: str, version: str, current: Profile) -> None:
        pending = await self.store.pending_reference(key) or Profile()
        pending.merge(current)
        if pending.n < self.settings.reference_events:
            await self.store.set_pending_reference(key, pending)
            return

        def store(session: Session) -> None:
            save_reference(
                session,
                model,
                version,
                f"first {pending.n} events",
                pending.n,
                pending.to_dict(),
                datetime.now(UTC),
            )
            session.commit()

        await asyncio.to_thread(self._in_session, store)
        await self.store.set_pending_reference(key, None)
        log.warning("reference for %s %s: the first %d events", model, version, pending.n)
        if self.detectors is not None:  # calibrate now, not at the next batch
            await self.detectors.prepare(model, version)
