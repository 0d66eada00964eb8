"""The faust app: ``create_app(settings)`` builds it, no module-level state.

faust runs the process (start-up, signals, timers, the producer of result
events, crash handling).  The input does not go through faust's per-event
stream machinery, which costs more per event than all of govloop's own
work: one ``aiokafka`` consumer reads ``getmany`` batches and hands each one
to :class:`~govloop.streams.hot_path.InputBatches`.

* predictions + feedback -> drift profiles, join and window counters (Redis)
* timer                  -> due windows -> ``metrics`` topic, SQL, drift alerts
* metrics, drift         -> every matching policy -> SQL (with manifests), ``gates`` topic

The consumer group is ``<prefix>-worker``, one member per worker process, so
more processes split the partitions.  Offsets are committed only after the
batch's effects are in Redis (every ``COMMIT_SECONDS``, when partitions are
revoked, and on a clean stop): delivery is at-least-once, and the per-partition
offsets stored in Redis make the effects exactly-once.

Input that fails its contract goes to ``deadletter`` with the reason.  Redis
and the database are waited for (their errors retried with back-off), result
events re-sent until acknowledged; a window state that Redis lost, or that
belongs to another broker, is rebuilt by re-reading the input
(:mod:`govloop.streams.state`).  Windows close by event time and input
progress (Kafka's end offsets), never because the worker itself stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import ConsumerRebalanceListener
from faust.app.base import BootStrategy

from govloop.config import Settings
from govloop.gates import Policy, load_policies
from govloop.stores.redis.client import connect
from govloop.stores.redis.windows import UNKNOWN, Progress, StateLost, StateRebuilt
from govloop.streams.hot_path import InputBatches
from govloop.streams.publish import Results

__all__ = ["COMMIT_SECONDS", "InputConsumer", "create_app", "input_partitions", "tune_gc"]

log = logging.getLogger("govloop.streams")

#: How often the input consumer commits the offsets whose effects are in Redis.
COMMIT_SECONDS = 2.0
#: How long the window closer waits for the input's end offsets before it assumes nothing.
PROGRESS_TIMEOUT = 5.0
#: How often the window closer asks the broker for every input partition's end offset.
LIST_OFFSETS_SECONDS = 2.0
#: Allocations between two collections of the youngest generation (Python's default: 700).
GC_YOUNG = 10_000


def input_partitions(settings: Settings) -> list[str]:
    """Every ``topic:partition`` of the input topics, as the broker reports them."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka)
    try:
        return [
            f"{topic}:{p}"
            for topic in (settings.topic("predictions"), settings.topic("feedback"))
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
    finally:
        consumer.close()


def tune_gc() -> None:
    """Cheaper cyclic garbage collection for a worker that allocates per event but keeps little.

    What start-up built (modules, the app, the clients) is moved out of every
    collection, and young objects are collected in batches of ``GC_YOUNG``
    instead of 700 (10-20 % less CPU per event in the pipeline benchmark).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


def create_app(settings: Settings, policies: Sequence[Policy] | None = None) -> faust.App:
    """Build the stream worker's faust app for ``settings``."""
    if settings.kafka is None or settings.redis_url is None:
        raise ValueError("create_app needs resolved settings (kafka and redis_url set)")
    policies = list(policies) if policies is not None else load_policies(settings.policies)
    group = settings.worker_group
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)  # faust makes only the last
    app = faust.App(
        group,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_enabled=settings.worker_web_port is not None,
        web_port=settings.worker_web_port or 6066,
        datadir=settings.home / "faust" / group,  # not ./<group>-data in the working directory
    )
    # faust's own consumer stays off: the input consumer below is the group's only member
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    results = Results(
        {
            name: app.topic(settings.topic(name), value_serializer="raw", key_serializer="raw")
            for name in ("metrics", "gates", "drift", "deadletter")
        }
    )
    redis = connect(settings.redis_url.get_secret_value(), name=f"govloop-worker:{group}")
    partitions = input_partitions(settings)
    batches = InputBatches(
        settings,
        redis,
        results.send,
        partitions=partitions,
        policies=policies,
        delivered=results.delivered,
    )
    inputs = InputConsumer(settings, group, batches, app, partitions)

    @app.task
    async def consume() -> None:
        await batches.start()
        tune_gc()
        await inputs.run()

    @app.timer(interval=0.5)
    async def close_windows() -> None:
        await batches.close_windows(await inputs.progress())

    return app


class InputConsumer:
    """The group member that feeds every input batch to :class:`InputBatches`.

    While one batch's Redis transaction is in flight, the next batch is read
    and validated: the worker's CPU and Redis's work overlap.  Batches are
    still written one after another, in order.
    """

    def __init__(
        self,
        settings: Settings,
        group: str,
        batches: InputBatches,
        app: faust.App,
        partitions: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        #: every input ``topic:partition``, whose end offsets :meth:`progress` reads
        self.partitions = [tp.rpartition(":") for tp in partitions]
        self._highwaters: dict[Any, int] = {}  # TopicPartition -> last noted high watermark
        self._rereads = 0  # input re-reads from the beginning so far (:meth:`_reread`)
        self._listed: dict[str, int] | None = None
        self._listed_at = 0.0
        self.group = group
        self.batches = batches
        self.app = app
        self.judged = {settings.topic("metrics"), settings.topic("drift")}
        self.topics = [settings.topic(n) for n in ("predictions", "feedback", "metrics", "drift")]
        self.positions: dict[Any, int] = {}  # TopicPartition -> next offset, effects stored
        self.lock = asyncio.Lock()  # a batch, or a rebalance, at a time
        self.consumer: Any = None
        self._writing: asyncio.Task[int] | None = None
        self._written: dict[Any, int] = {}  # positions once the write in flight is done

    async def run(self, max_batches: int | None = None) -> None:
        """Consume until cancelled (or ``max_batches``); commit what is applied on the way out."""
        from aiokafka import AIOKafkaConsumer

        session_ms = int(self.settings.session_timeout_seconds * 1000)
        self.consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(1000, session_ms // 4),
        )
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        await consumer.start()
        await self.start_state()
        next_commit = time.monotonic() + COMMIT_SECONDS
        done = 0
        try:
            while max_batches is None or done < max_batches:
                rereads = self._rereads
                got = await consumer.getmany(timeout_ms=200, max_records=self.settings.batch_size)
                await self._note_highwaters()
                async with self.lock:
                    if rereads != self._rereads:
                        got = await self._unread(got)
                    await self._handle(got)
                    if time.monotonic() >= next_commit:
                        await self._commit()
                        next_commit = time.monotonic() + COMMIT_SECONDS
                done += 1
            async with self.lock:
                await self._commit()
        except asyncio.CancelledError:
            async with self.lock:
                await self._commit()
            raise
        finally:
            if self._writing is not None and not self._writing.done():
                self._writing.cancel()
            await consumer.stop()

    async def progress(self) -> Progress:
        """Each input partition's end offset in Kafka, as far as known, for the window closer.

        Two sources, the larger wins: the high watermark each partition's
        consumer saw in its last fetch (every worker notes its own in Redis:
        exact, but only once a worker has fetched), and the broker's answer to
        ListOffsets (for every partition; some brokers, Tansu among them,
        answer the last batch's first offset, a lower bound).  Also checks the
        state is this broker's (:meth:`StateGuard.check_foreign`).
        :data:`UNKNOWN` before the consumer runs or when the broker does not
        answer within ``PROGRESS_TIMEOUT``: windows then close by event time only.
        """
        from aiokafka.errors import KafkaError

        if self.consumer is None or not self.partitions:
            return UNKNOWN
        guard = self.batches.guard
        if await self._state_changed():
            return UNKNOWN
        applied = await guard.applied()  # before the high watermarks: never beyond them
        fetched = {
            f"{tp.topic}:{tp.partition}": hw
            for tp in self.consumer.assignment()
            if tp.topic not in self.judged and (hw := self.consumer.highwater(tp)) is not None
        }
        if await guard.check_foreign(applied, fetched):
            return UNKNOWN  # every worker re-reads its input under the new epoch first
        try:
            listed = await self._listed_ends()
        except (KafkaError, TimeoutError) as exc:
            log.info("input progress unknown (%r): windows close by event time only", exc)
            return UNKNOWN
        noted = await guard.highwaters()
        return {tp: max(end, noted.get(tp, 0)) for tp, end in listed.items()}

    async def _state_changed(self) -> bool:
        """Recover when the state's epoch is no longer the one this worker applies to (Redis
        lost it, or another worker rebuilt it) even if no batch has come to notice."""
        mine = self.batches.store.epoch
        if mine is None:
            return False  # not assigned yet
        current = await self.batches.guard.current()
        if current == mine:
            return False
        async with self.lock:
            if self.batches.store.epoch == mine:  # not recovered meanwhile by a batch
                lost = current is None
                await self._recover(
                    StateLost("its marker is gone") if lost else StateRebuilt(current or "")
                )
        return True

    async def _listed_ends(self) -> dict[str, int]:
        """The broker's ListOffsets answer per input partition, asked at most every
        ``LIST_OFFSETS_SECONDS``."""
        from aiokafka import TopicPartition

        now = time.monotonic()
        if self._listed is None or now - self._listed_at >= LIST_OFFSETS_SECONDS:
            tps = [TopicPartition(topic, int(p)) for topic, _, p in self.partitions]
            found = await asyncio.wait_for(self.consumer.end_offsets(tps), PROGRESS_TIMEOUT)
            self._listed = {f"{tp.topic}:{tp.partition}": int(end) for tp, end in found.items()}
            self._listed_at = now
        return self._listed

    async def _note_highwaters(self) -> None:
        """Note in Redis the high watermarks this worker's last fetches saw, where they moved."""
        moved = {}
        for tp in self.consumer.assignment():
            if tp.topic in self.judged:
                continue
            hw = self.consumer.highwater(tp)
            if hw is not None and self._highwaters.get(tp) != hw:
                moved[f"{tp.topic}:{tp.partition}"] = self._highwaters[tp] = hw
        if moved:
            await self.batches.guard.note_highwaters(moved)

    async def _handle(self, got: dict[Any, list[Any]]) -> None:
        assigned = self.consumer.assignment()
        inputs: list[Any] = []
        snapshots: list[Any] = []
        last_inputs: dict[Any, int] = {}
        last_snapshots: dict[Any, int] = {}
        for tp, records in got.items():
            if tp not in assigned or not records:  # revoked since it was fetched
                continue
            if tp.topic in self.judged:
                snapshots.extend(records)
                last_snapshots[tp] = records[-1].offset + 1
            else:
                inputs.extend(records)
                last_inputs[tp] = records[-1].offset + 1
        if inputs:
            prepared = await self.batches.prepare(inputs)  # the previous write is in flight
            if await self._settle():
                self._writing = asyncio.create_task(self.batches.write(prepared))
                self._written = last_inputs
            # else the input is re-read from the beginning: this batch comes again
        if snapshots:
            await self.batches.judge(snapshots)
            self.positions.update(last_snapshots)
        if not inputs and not snapshots:
            await self._settle()
            await self.batches.flush()  # input paused: store what is staged

    async def _settle(self) -> bool:
        """Wait for the write in flight; its offsets then count as applied.

        False when the write found the window state lost or rebuilt: the
        input is then re-read from the beginning (:meth:`_recover`), and a batch
        read before that must not be written.
        """
        if self._writing is not None:
            writing, self._writing = self._writing, None
            try:
                await writing
            except (StateLost, StateRebuilt) as exc:
                await self._recover(exc)
                return False
            self.positions.update(self._written)
        return True

    async def start_state(self) -> None:
        """Before the first batch: adopt the window state's epoch, or rebuild a lost state."""
        from aiokafka import TopicPartition

        inputs = [TopicPartition(topic, int(p)) for topic, _, p in self.partitions]
        committed = [await self.consumer.committed(tp) for tp in inputs]
        await self.batches.guard.start(consumed_before=any(c for c in committed))
        self.batches.store.epoch = self.batches.guard.epoch

    async def reread_unapplied(self, assigned: Any) -> None:
        """On an assignment: re-read from the beginning each input partition the group has
        consumed but the window state has never applied (the state was rebuilt)."""
        applied = await self.batches.guard.applied()
        fresh = [
            tp
            for tp in assigned
            if tp.topic not in self.judged
            and f"{tp.topic}:{tp.partition}" not in applied
            and await self.consumer.committed(tp)
        ]
        if fresh:
            log.warning("re-reading %d input partitions the window state lacks", len(fresh))
            await self._reread(fresh)

    async def _recover(self, exc: StateLost | StateRebuilt) -> None:
        """Rebuild a lost state (or adopt another worker's rebuild); re-read the input."""
        if self._writing is not None:  # under the old epoch: it must not land in the new one
            writing, self._writing = self._writing, None
            with contextlib.suppress(StateLost, StateRebuilt):
                await writing
        guard = self.batches.guard
        if isinstance(exc, StateLost):
            await guard.rebuild(str(exc))
        else:
            guard.epoch = exc.epoch
            log.warning("%s: re-reading this worker's input partitions", exc)
        self.batches.store.epoch = guard.epoch
        await self._reread([tp for tp in self.consumer.assignment() if tp.topic not in self.judged])

    async def _unread(self, got: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """A batch fetched while the input was being re-read: its input records are put back
        (each partition reads on from the earlier of its position and its first record)
        and only the judged records are kept."""
        for tp, records in got.items():
            if tp.topic not in self.judged and records and tp in self.consumer.assignment():
                position = await self.consumer.position(tp)
                self.consumer.seek(tp, min(position, records[0].offset))
        return {tp: r for tp, r in got.items() if tp.topic in self.judged}

    async def _reread(self, inputs: list[Any]) -> None:
        self._rereads += 1
        self._written = {}
        self._highwaters.clear()
        for tp in inputs:
            self.positions.pop(tp, None)
        if inputs:
            await self.consumer.seek_to_beginning(*inputs)
        self.batches.invalidate()

    async def _commit(self) -> None:
        """Commit the offsets whose effects are stored (drift profiles flushed first)."""
        from aiokafka.errors import CommitFailedError, IllegalStateError

        await self._settle()
        if not self.positions:
            return
        await self.batches.flush()
        await self.batches.delivered()  # dead letters and results acknowledged before offsets
        try:
            await self.consumer.commit(dict(self.positions))
        except (CommitFailedError, IllegalStateError) as exc:
            # the group is rebalancing: the next owner re-reads, Redis offsets skip the repeat
            log.info("offsets not committed (%s); they will be re-read and skipped", exc)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit before partitions move, and forget cached state of partitions that moved."""

    def __init__(self, owner: InputConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner.lock:
            await self.owner._commit()
            for tp in revoked:
                self.owner.positions.pop(tp, None)
            self.owner.batches.invalidate()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner.batches.invalidate()
        await self.owner.reread_unapplied(assigned)
