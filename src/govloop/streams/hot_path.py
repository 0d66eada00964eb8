"""The worker's hot path: batches of raw records in, Redis state and result events out.

No per-event framework machinery: a batch is a list of raw Kafka records (as
``aiokafka``'s ``getmany`` returns them) and each step works on the whole
batch, so the cost per event is validation plus a few list appends.

* :meth:`InputBatches.apply`  predictions + feedback -> drift profiles, join and
  window counters (Redis), concept-drift detectors on the join outcomes,
  streaming data-drift detectors on the features (:mod:`govloop.streams.detectors`),
  dead letters for what fails its contract (:mod:`govloop.streams.ingest`)
* :meth:`InputBatches.judge`  metric snapshots -> every matching policy -> SQL, the
  audit ledger and a manifest per result; changes of a gate's state -> ``gates``
  (:mod:`govloop.streams.judge`)
* :meth:`InputBatches.close_windows`  due windows -> ``metrics``, SQL, drift alerts
  (:mod:`govloop.streams.close`)

:class:`InputBatches` owns what the steps share (the window store, the drift
and concept monitors, the chain of concept-drift observes,
:mod:`govloop.streams.observes`) and hands each step its part.  Nothing here
reads Kafka or owns a consumer: :mod:`govloop.streams.app` feeds
it, and the pipeline benchmark drives it in-process.  An error that is not
about the input (Redis or the database gone) propagates, so the worker stops
rather than dropping events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

import govloop.streams.close as close
import govloop.streams.ingest as ingest
from govloop.audit.records import save_policy
from govloop.config import Settings
from govloop.errors import EventError
from govloop.gates import Policy
from govloop.schemas import TOPICS, DeadLetter, DriftAlert, MetricSnapshot
from govloop.stores.redis.windows import Outcome, Progress, WindowStore
from govloop.stores.sql import create_engine_for, init_db
from govloop.stores.sql.retry import in_session
from govloop.streams.close import Publish
from govloop.streams.concept import ConceptMonitor
from govloop.streams.decode import Decoder, RawRecord, dead_letter, decode_one
from govloop.streams.detectors import FeatureDetectors, Row
from govloop.streams.ingest import Prepared
from govloop.streams.judge import judge_events, judged
from govloop.streams.monitor import DriftMonitor
from govloop.streams.observes import ObserveChain
from govloop.streams.state import StateGuard

__all__ = ["InputBatches", "Prepared", "Publish", "RawRecord", "dead_letter", "decode_one"]

log = logging.getLogger("govloop.streams")

#: :meth:`InputBatches.write` queues its concept-drift observe behind at most this many
#: earlier ones still running; with more, it waits for the oldest first.
OBSERVE_BEHIND = 2


#: Wait until every result event sent so far is acknowledged by the broker.
Delivered = Callable[[], Awaitable[None]]


async def _nothing_to_wait_for() -> None:
    """The default :data:`Delivered`, for a ``publish`` that delivers at once."""


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
        delivered: Delivered | None = None,
    ) -> None:
        self.settings = settings
        self.publish = publish
        #: waits until what ``publish`` sent is acknowledged (:mod:`govloop.streams.publish`)
        self.delivered: Delivered = delivered or _nothing_to_wait_for
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
            lateness_seconds=settings.allowed_lateness_seconds,
        )
        #: the window state's epoch, and its rebuild when Redis lost it (the worker's)
        self.guard = StateGuard(
            redis, settings.redis_prefix, self.engine, settings.join_horizon_seconds
        )
        self.drift = DriftMonitor(settings, redis, self.engine)
        self.concept = ConceptMonitor(settings, redis, self.engine)
        self.detectors = FeatureDetectors(settings, redis, self.engine, self.drift.window_so_far)
        self.drift.detectors = self.detectors
        self.short = {settings.topic(n): n for n in TOPICS}
        self.decode = Decoder(settings)
        #: The concept-drift observes, chained in the order their outcomes were released.
        self.observes = ObserveChain(self._observe)
        #: The streaming data-drift detectors' observes, chained in batch order.
        self.detects = ObserveChain(self._detect)

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
        """The CPU half of :meth:`apply` (:func:`govloop.streams.ingest.prepare`)."""
        return await ingest.prepare(records, self.decode, self.store, self.drift)

    async def write(self, prepared: Prepared) -> int:
        """The I/O half of :meth:`apply`: one Redis transaction, then the dead letters.

        The join outcomes the transaction released go to the concept-drift
        detectors on a background task, in order (:class:`ObserveChain`): the
        next batch's write does not wait for them (unless ``OBSERVE_BEHIND``
        are still running), and :meth:`flush` (before offsets are committed)
        waits for all of them.
        """
        applied = await ingest.write(prepared, self.store, self.drift)
        for chain in (self.observes, self.detects):
            if chain.idle_or_crowded(OBSERVE_BEHIND):
                # all done (an error is raised here, not later), or too many in flight
                await chain.wait(OBSERVE_BEHIND)
        self.observes.later(applied.outcomes)
        if prepared.rows:
            self.detects.later([prepared.rows])
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
                event = self.decode(r.topic, r.value)
            except EventError as exc:
                bad.append(dead_letter(r.topic, r.partition, r.offset, exc.reason, r.value))
                continue
            if judged(event):
                located.append((event, r))  # type: ignore[arg-type]
        if located and self.policies:
            changes, failed = await self._in_db(
                lambda session: judge_events(session, self.settings, self.policies, located)
            )
            bad.extend(failed)
            for change in changes:
                await self.publish("gates", change.model.encode(), change.to_json())
            # a change not delivered now is not redone: a second judging finds it recorded
            await self.delivered()
        await self._send_dead(bad)

    async def close_windows(self, progress: Progress = None) -> int:
        """Close due windows: snapshots to ``metrics`` and SQL, then drift; return how many.

        ``progress`` is the input's progress in Kafka, if known
        (:meth:`WindowStore.claim_closed`).  The join outcomes the claim
        released are observed first, after those released before them
        (:mod:`govloop.streams.close` does the rest).
        """
        windows, outcomes = await self.store.claim_closed(progress)
        self.observes.later(outcomes)
        await self.observed()
        if not windows:
            return 0
        return await close.close(
            windows,
            self.settings,
            self.store,
            self.drift,
            self.publish,
            self._in_db,
            self.delivered,
        )

    async def _observe(self, outcomes: Sequence[Outcome]) -> None:
        """Feed released join outcomes to the concept-drift detectors; publish their alerts."""
        for alert in await self.concept.observe(outcomes):
            await self.publish("drift", alert.model.encode(), alert.to_json())

    async def _detect(self, batches: Sequence[dict[tuple[str, str], list[Row]]]) -> None:
        """Feed a batch's features to the streaming detectors; publish their alerts."""
        for rows in batches:
            for alert in await self.detectors.observe(rows):
                await self.publish("drift", alert.model.encode(), alert.to_json())

    async def observed(self) -> None:
        """Wait until every queued observe is done; raise the error of one that failed."""
        await self.observes.wait()
        await self.detects.wait()

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
        """``fn`` in a committed session off the event loop, retried across locks and
        transient database errors (:mod:`govloop.stores.sql.retry`)."""
        return asyncio.to_thread(in_session, self.engine, fn)
