"""Whether Redis still holds the window state, and rebuilding it from Kafka when not.

Redis holds what open windows have counted so far, the joins waiting for
feedback and the offsets applied; SQL holds every window already closed.
Redis can lose its part (a restart without persistence, ``FLUSHALL``, a
failover to an empty replica) or hold another broker's (a new, empty broker
on the same address).  Either would make the worker under-count without a
word, so the state carries a marker, its *epoch*, which every batch's script
checks (:class:`~govloop.stores.redis.windows.WindowStore`):

* no marker, but the consumer group has consumed input before, or a batch
  finds the marker gone: the state was **lost**;
* applied offsets beyond a partition's end in Kafka: the state is
  **foreign** (the broker is not the one it was counted from).

Either way the worker rebuilds: it clears what is left under the prefix,
marks every window SQL already holds as closed (``'r'``: its events are
skipped, they are counted there), begins a new epoch and re-reads its input
partitions from the beginning.  The joins, the dedupe keys and the open
windows come back exactly; other workers see the new epoch on their next
batch and re-read theirs, and until every partition has caught up again the
window closer holds (its input progress shows records not yet applied).
What cannot come back is said in the log: the sliding windows that span
the rebuild, and, for a foreign state, the open windows of the old broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from govloop.schemas import MetricSnapshot
from govloop.stores.redis import keys
from govloop.stores.redis.records import US, label_key, snapshot_id
from govloop.stores.sql import MetricSnapshotRow
from govloop.stores.sql.retry import in_session

__all__ = ["StateGuard", "foreign", "window_member"]

log = logging.getLogger("govloop.streams")

#: How long one worker may hold the rebuild lock (seconds); others wait for its epoch.
REBUILD_LOCK_SECONDS = 120


def window_member(prefix: str, snap: MetricSnapshot) -> str | None:
    """The window store's member for a stored tumbling snapshot, or None if the snapshot
    is not this deployment's (its event id was made with another prefix).

    >>> from govloop.stores.redis.records import snapshot_of
    >>> snap = snapshot_of("g.", "m", "1", 120.0, 60.0, {"count": 1}, "x\\x1eexp\\x1eb")
    >>> window_member("g.", snap).split("\\x1f")
    ['m', '1', '120.000', 'x\\x1eexp\\x1eb']
    >>> window_member("other.", snap) is None
    True
    """
    slice_ = ""
    if snap.variant is not None:
        slice_ = f"x{US}{snap.experiment}{US}{snap.variant}"
    elif snap.segment:
        [(name, value)] = snap.segment.items()
        slice_ = f"s{US}{name}{US}{label_key(value)}"
    start = snap.window_start.timestamp()
    ids = {
        snapshot_id(prefix, snap.model, snap.model_version, start, slice_, "tumbling", r)
        for r in (0, snap.revision)
    }
    if snap.event_id not in ids:
        return None
    member = f"{snap.model}{keys.SEP}{snap.model_version}{keys.SEP}{start:.3f}"
    return member + (f"{keys.SEP}{slice_}" if slice_ else "")


def foreign(applied: Mapping[str, int], ends: Mapping[str, int]) -> list[str]:
    """Partitions whose applied offset is at or beyond their end offset in Kafka.

    >>> foreign({"t.predictions:0": 41, "t.feedback:0": 3}, {"t.predictions:0": 5,
    ...         "t.feedback:0": 4})
    ['t.predictions:0']
    """
    return sorted(tp for tp, done in applied.items() if tp in ends and done >= ends[tp])


class StateGuard:
    """The worker's check of the window state's epoch, and its rebuild."""

    def __init__(self, redis: Any, prefix: str, engine: Engine, horizon_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.engine = engine
        self.horizon = max(1, round(horizon_seconds))
        self.epoch: str | None = None

    async def start(self, consumed_before: bool) -> bool:
        """Adopt the state's epoch, or begin one; True when the state was lost and rebuilt
        (the worker then re-reads, from the beginning, each input partition the group has
        consumed: the state has applied none of them)."""
        found = await self.redis.get(keys.state(self.prefix))
        if found is not None:
            self.epoch = _text(found)
            return False
        if await self.redis.exists(keys.offsets(self.prefix)) or not consumed_before:
            # state kept before epochs existed, or a new deployment: begin here
            await self._begin()
            return False
        await self.rebuild("Redis holds no window state, but this worker group consumed before")
        return True

    async def applied(self) -> dict[str, int]:
        """The highest applied offset per input partition."""
        raw = await self.redis.hgetall(keys.offsets(self.prefix))
        return {_text(k): int(v) for k, v in raw.items()}

    async def current(self) -> str | None:
        """The state's epoch in Redis now (None: the marker is gone)."""
        found = await self.redis.get(keys.state(self.prefix))
        return None if found is None else _text(found)

    async def highwaters(self) -> dict[str, int]:
        """The high watermark per input partition, as its consumer last saw it."""
        raw = await self.redis.hgetall(keys.highwaters(self.prefix))
        return {_text(k): int(v) for k, v in raw.items()}

    async def note_highwaters(self, moved: Mapping[str, int]) -> None:
        await self.redis.hset(keys.highwaters(self.prefix), mapping=dict(moved))

    async def check_foreign(self, applied: Mapping[str, int], ends: Mapping[str, int]) -> bool:
        """Rebuild when offsets applied (read first) are at or beyond the high watermarks
        this worker's consumer sees (read after); True if it did."""
        beyond = foreign(applied, ends)
        if not beyond:
            return False
        await self.rebuild(
            f"Redis's state was counted from another broker (applied offsets beyond the end "
            f"of {', '.join(beyond)}); its open windows are gone with that broker"
        )
        return True

    async def rebuild(self, why: str) -> None:
        """Clear the state, mark SQL's windows closed, begin a new epoch (one worker does it)."""
        lock = keys.rebuilding(self.prefix)
        if not await self.redis.set(lock, os.getpid(), nx=True, ex=REBUILD_LOCK_SECONDS):
            await self._wait_for_epoch()  # another worker is rebuilding
            return
        try:
            open_windows = await self.redis.zcard(keys.open_windows(self.prefix))
            log.warning(
                "window state lost: %s. Rebuilding it: %d open windows dropped from Redis are "
                "recounted by re-reading the input from the beginning; sliding windows that "
                "span the rebuild lack the windows before it",
                why,
                open_windows,
            )
            await self._clear(keep=lock)
            members = await asyncio.to_thread(in_session, self.engine, self._stored_windows)
            pipe = self.redis.pipeline(transaction=False)
            for member in members:
                pipe.set(keys.closed(self.prefix, member), "r", ex=self.horizon)
            await pipe.execute()
            await self._begin()
            log.warning("window state rebuilt: %d stored windows marked closed", len(members))
        finally:
            await self.redis.delete(lock)

    async def _begin(self) -> None:
        await self.redis.set(keys.state(self.prefix), os.urandom(8).hex(), nx=True)
        self.epoch = _text(await self.redis.get(keys.state(self.prefix)))

    async def _wait_for_epoch(self) -> None:
        for _ in range(REBUILD_LOCK_SECONDS * 10):
            found = await self.redis.get(keys.state(self.prefix))
            if found is not None:
                self.epoch = _text(found)
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("another worker started rebuilding the window state and never ended")

    async def _clear(self, keep: str) -> None:
        batch: list[Any] = []
        async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            if _text(key) != keep:
                batch.append(key)
            if len(batch) >= 500:
                await self.redis.delete(*batch)
                batch = []
        if batch:
            await self.redis.delete(*batch)

    def _stored_windows(self, session: Session) -> list[str]:
        query = select(MetricSnapshotRow.body).where(MetricSnapshotRow.window_kind == "tumbling")
        members = (
            window_member(self.prefix, MetricSnapshot.model_validate_json(body))
            for body in session.exec(query)
        )
        return sorted({m for m in members if m is not None})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
