"""The worker's hot path: batches of raw records in, Redis state and result events out.

No per-event framework machinery: a batch is a list of raw Kafka records (as
``aiokafka``'s ``getmany`` returns them) and each step works on the whole
batch, so the cost per event is validation plus a few list appends.

* :meth:`InputBatches.apply`  predictions + feedback -> drift profiles, join and
  window counters (Redis), concept-drift detectors on the join outcomes, dead
  letters for what fails its contract
* :meth:`InputBatches.judge`  metric snapshots -> every matching policy -> SQL, the
  audit ledger and a manifest per result; changes of a gate's state -> ``gates``
* :meth:`InputBatches.close_windows`  due windows -> ``metrics``, SQL, drift alerts

Nothing here reads Kafka or owns a consumer: :mod:`govloop.streams.app` feeds
it, and the pipeline benchmark drives it in-process.  An error that is not
about the input (Redis or the database gone) propagates, so the worker stops
rather than dropping events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlmodel import Session

from govloop.audit.records import save_policy
from govloop.config import Settings
from govloop.errors import EventError
from govloop.gates import Policy
from govloop.schemas import (
    TOPICS,
    DeadLetter,
    DriftAlert,
    MetricSnapshot,
    Prediction,
)
from govloop.stores.drift_state import Saving
from govloop.stores.sql import create_engine_for, init_db, save_snapshot
from govloop.stores.window_state import Encoded, Outcome, WindowStore
from govloop.streams.concept import ConceptMonitor
from govloop.streams.decode import RawRecord, dead_letter, decode_one
from govloop.streams.judge import judge_events, judged
from govloop.streams.monitor import DriftMonitor, Located, Staged
from govloop.streams.records import feedback_record, prediction_record, snapshot_of

__all__ = ["InputBatches", "Prepared", "Publish", "RawRecord", "dead_letter", "decode_one"]

log = logging.getLogger("govloop.streams")

#: :meth:`InputBatches.prepare` lets other tasks run after this many records.
YIELD_EVERY = 100
#: :meth:`InputBatches.write` queues its concept-drift observe behind at most this many
#: earlier ones still running; with more, it waits for the oldest first.
OBSERVE_BEHIND = 2

#: ``publish(short topic name, key, value)``: send one result event.
Publish = Callable[[str, bytes | None, bytes], Awaitable[Any]]


class Prepared(NamedTuple):
    """A batch after :meth:`InputBatches.prepare`, ready for :meth:`InputBatches.write`."""

    records: Encoded  # for the window store, in batch order
    staged: Staged  # predictions of partials that are not cached yet, with their features
    dead: list[DeadLetter]


class InputBatches:
    """The stream worker's batch steps, bound to one deployment's Redis, SQL and result topics."""

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        publish: Publish,
        partitions: Sequence[str] = (),
        engine: Engine | None = None,
        policies: Sequence[Policy] = (),
    ) -> None:
        self.settings = settings
        self.publish = publish
        self.policies = list(policies)
        self.engine = engine if engine is not None else create_engine_for(settings)
        self.store = WindowStore(
            redis,
            prefix=settings.redis_prefix,
            window_seconds=settings.window_seconds,
            grace_seconds=settings.window_grace_seconds,
            idle_close_seconds=settings.idle_close_seconds,
            horizon_seconds=settings.join_horizon_seconds,
            dedupe_seconds=settings.dedupe_seconds,
            partitions=partitions,
            segment_slices=settings.segment_slices,
            sliding_windows=settings.sliding_windows,
        )
        self.drift = DriftMonitor(settings, redis, self.engine)
        self.concept = ConceptMonitor(settings, redis, self.engine)
        self.short = {settings.topic(n): n for n in TOPICS}
        #: The chained concept-drift observes (:meth:`_observe_later`), oldest first.
        self._observes: deque[asyncio.Task[bool]] = deque()

    async def start(self) -> None:
        """Create the tables if needed and record the policies in force."""

        def save(session: Session) -> None:
            for p in self.policies:
                save_policy(
                    session, p.name, p.content_hash, p.model_dump(mode="json"), datetime.now(UTC)
                )

        await asyncio.to_thread(init_db, self.engine)
        await self._in_db(save)

    async def apply(self, records: Iterable[Any]) -> int:
        """Apply a batch of prediction and feedback records; return how many events were new.

        Its join outcomes are observed (concept-drift state stored, alerts
        published) when this returns.
        """
        applied = await self.write(await self.prepare(records))
        await self.observed()
        return applied

    async def prepare(self, records: Iterable[Any]) -> Prepared:
        """The CPU half of :meth:`apply`: validate, build counter records, extract features.

        No I/O; it yields to the event loop every ``YIELD_EVERY`` records, so the
        previous batch's :meth:`write` gets its transaction to Redis (and the
        consumer its next fetch) while this batch is validated.
        """
        where: dict[tuple[str, int], str] = {}
        located: list[Located] = []
        rows: list[list[Any]] = []
        bad: list[DeadLetter] = []
        short = self.short
        for i, r in enumerate(records):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            try:
                event = decode_one(short[r.topic], r.value)
            except EventError as exc:
                bad.append(dead_letter(r.topic, r.partition, r.offset, exc.reason, r.value))
                continue
            tp = where.get((r.topic, r.partition))
            if tp is None:
                tp = where[(r.topic, r.partition)] = f"{r.topic}:{r.partition}"
            epoch = event.ts.timestamp()
            if isinstance(event, Prediction):
                label = event.predicted_label
                located.append((event, tp, r.offset, epoch, label))
                rows.append(prediction_record(event, tp, r.offset, epoch, label))
            else:
                rows.append(feedback_record(event, tp, r.offset, epoch))  # type: ignore[arg-type]
        # what can be done without I/O is done here, so the write is quick to send
        staged = self.drift.stage_cached(self.drift.group(located))
        return Prepared(self.store.encode(rows), staged, bad)

    async def write(self, prepared: Prepared) -> int:
        """The I/O half of :meth:`apply`: one Redis transaction, then the dead letters.

        The drift profiles that are due go first in the transaction, so a
        watermark moved by these counters finds them stored.  The join outcomes
        the transaction released go to the concept-drift detectors on a
        background task, in order (:meth:`_observe_later`): the next batch's
        write does not wait for them (unless ``OBSERVE_BEHIND`` are still
        running), and :meth:`flush` (before offsets are committed) waits for
        all of them.
        """
        if prepared.staged.groups:
            await self.drift.stage(prepared.staged)
        saving: Saving = []

        def profiles(pipe: Any) -> None:
            saving[:] = self.drift.queue_due(pipe)

        async with self.drift.writing:
            try:
                applied = await self.store.apply(prepared.records, before=profiles)
            except BaseException:
                self.drift.invalidate()  # what Redis holds is unknown now: read it again
                raise
            self.drift.saved(saving)
        observes = self._observes
        if observes and (observes[-1].done() or len(observes) > OBSERVE_BEHIND):
            # all done (an error is raised here, not later), or too many in flight
            await self._wait_observes(OBSERVE_BEHIND)
        self._observe_later(applied.outcomes)
        await self._send_dead(prepared.dead)
        return applied.events

    async def judge(self, records: Iterable[Any]) -> None:
        """Judge metric snapshots and drift alerts against every policy that applies.

        Each window's overall snapshot is judged by every policy for its model;
        a drift alert makes the policies with drift rules look again at the
        model version's latest snapshot, with the alert now active.  Every
        result is stored (SQL and the audit ledger) with its manifest: its
        inputs' exact place (topic, partition, offset) and digest, and the drift
        alerts and baseline it used.  The ``gates`` topic gets the results that
        change a gate's state (:mod:`govloop.gates.hysteresis`).
        """
        located: list[tuple[MetricSnapshot | DriftAlert, Any]] = []
        bad: list[DeadLetter] = []
        for r in records:
            try:
                event = decode_one(self.short[r.topic], r.value)
            except EventError as exc:
                bad.append(dead_letter(r.topic, r.partition, r.offset, exc.reason, r.value))
                continue
            if judged(event):
                located.append((event, r))  # type: ignore[arg-type]
        if located and self.policies:
            judge = partial(judge_events, settings=self.settings, policies=self.policies)
            for change in await self._in_db(lambda session: judge(session, located=located)):
                await self.publish("gates", change.model.encode(), change.to_json())
        await self._send_dead(bad)

    async def close_windows(self) -> int:
        """Close due windows: snapshots to ``metrics`` and SQL, then drift; return how many.

        Each closed tumbling window of each slice gives a snapshot, and, with
        ``sliding_windows > 1``, a sliding one ending with it.  Drift is judged
        on the overall windows.
        """
        windows, outcomes = await self.store.claim_closed()
        self._observe_later(outcomes)  # after the outcomes released before these
        await self.observed()
        if not windows:
            return 0
        prefix, size = self.settings.topic_prefix, self.settings.window_seconds
        snaps = [
            snapshot_of(prefix, w.model, w.model_version, w.start, size, w.counters, w.slice)
            for w in windows
        ]
        if self.store.sliding_windows > 1:
            span = self.store.sliding_span
            sliding = await self.store.sliding(windows)
            snaps += [
                snapshot_of(
                    prefix,
                    w.model,
                    w.model_version,
                    w.start + size - span,
                    span,
                    counters,
                    w.slice,
                    "sliding",
                )
                for w, counters in zip(windows, sliding, strict=True)
            ]
        for snap in snaps:
            await self.publish("metrics", snap.model.encode(), snap.to_json())
        await self._in_db(lambda session: sum(save_snapshot(session, s) for s in snaps))
        overall = [w for w in windows if not w.slice]
        await self.drift.close(
            overall, lambda alert: self.publish("drift", alert.model.encode(), alert.to_json())
        )
        await self.store.acknowledge(windows)
        await self.drift.forget(overall)
        return len(overall)

    async def _observe(self, outcomes: Sequence[Outcome]) -> None:
        """Feed released join outcomes to the concept-drift detectors; publish their alerts."""
        if outcomes:
            for alert in await self.concept.observe(outcomes):
                await self.publish("drift", alert.model.encode(), alert.to_json())

    def _observe_later(self, outcomes: Sequence[Outcome]) -> None:
        """Queue :meth:`_observe` of ``outcomes`` after every observe queued before.

        Outcomes reach the detectors in the order they were released.  An
        error stops the chain: no later observe runs, and whoever awaits
        :meth:`observed` (or the next :meth:`write`) gets the error.
        """
        if outcomes:
            previous = self._observes[-1] if self._observes else None
            self._observes.append(asyncio.create_task(self._observe_after(previous, outcomes)))

    async def _observe_after(
        self, previous: asyncio.Task[bool] | None, outcomes: Sequence[Outcome]
    ) -> bool:
        """:meth:`_observe` once ``previous`` is done; False (and nothing observed) if the
        chain stopped before: ``previous`` or one before it failed or was cancelled."""
        if previous is not None:
            await asyncio.wait((previous,))
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                return False  # the failed one raises its error to whoever waits
        await self._observe(outcomes)
        return True

    async def observed(self) -> None:
        """Wait until every queued observe is done; raise the error of one that failed."""
        await self._wait_observes(0)

    async def _wait_observes(self, keep: int) -> None:
        """Wait for the oldest observes until at most ``keep`` are left (none failed)."""
        observes = self._observes
        while observes:
            task = observes[0]
            if len(observes) <= keep and not observes[-1].done():
                return
            # asyncio.wait: a waiter that is cancelled does not cancel the observes; a
            # failed one stays first in the queue, so every later wait raises its error too
            if not task.done():
                await asyncio.wait((task,))
            task.result()
            if observes and observes[0] is task:
                observes.popleft()

    async def flush(self) -> None:
        """Store what is staged (concept-drift observes, drift profiles): before offsets are
        committed."""
        await self.observed()
        await self.drift.flush()

    def invalidate(self) -> None:
        """Partition ownership changed: forget cached state that another worker may change."""
        self.drift.invalidate()

    async def _send_dead(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            await self.publish("deadletter", None, letter.to_json())
        if letters:
            log.warning(
                "sent %d invalid events to %s", len(letters), self.settings.topic("deadletter")
            )

    def _in_db(self, fn: Callable[[Session], Any]) -> Awaitable[Any]:
        def run() -> Any:
            with Session(self.engine) as session:
                result = fn(session)
                session.commit()
                return result

        return asyncio.to_thread(run)
