"""Drift state in Redis: partial window profiles per partition, and hysteresis states.

The latest result per feature is the system of record's (SQL ``drift_status``);
what is here is working state that a restart of Redis would only delay.

Each worker adds the features of its batch to the profile of the window and
partition the events belong to.  A partition has one owner at a time and the
last applied offset is stored beside its partial profile, so a batch
redelivered after a crash is skipped: like the counters, profiles count every
event exactly once.  When a window closes, the partials of all partitions are
merged into the window's profile.

The hysteresis states of drifting features are kept here too; the step that
advances them is :func:`govloop.judging.drift.next_state`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from govloop.stats.profile import Columns, Profile
from govloop.stores.redis import keys

__all__ = ["DriftStore"]


#: Staged rows a partial collects before they go into its sketches (fewer, larger updates).
FOLD_ROWS = 2048


@dataclass
class _Partial:
    """One (window member, partition) partial profile as this worker holds it."""

    profile: Profile
    offset: int  # highest offset whose row is in ``profile`` or ``pending``
    saved: int  # highest offset whose row is in Redis
    since: float  # monotonic time of the oldest unsaved row (0.0: none)
    pending: list[Columns] = field(default_factory=list)  # staged, not yet in the sketches
    pending_n: int = 0

    def add(self, columns: Columns) -> None:
        self.pending.append(columns)
        self.pending_n += columns.n
        if self.pending_n >= FOLD_ROWS:
            self.fold()

    def fold(self) -> Profile:
        """The profile, with every staged row in it."""
        if self.pending:
            self.profile.update_columns(Columns.concat(self.pending))
            self.pending, self.pending_n = [], 0
        return self.profile


Key = tuple[str, str]  # (window member, topic:partition)
Saving = list[tuple[_Partial, int]]  # partials being written, each with the offset written


class DriftStore:
    """Partial profiles, live drift results and hysteresis state under ``prefix``.

    Partials are cached by the worker that owns their partition and written
    back (:meth:`flush`) rather than read and rewritten for every batch.  The
    stored offset travels with each stored partial, so rows that were staged
    but not yet stored when a worker died are applied again by the next owner
    (Kafka redelivers them: the worker commits only offsets it has flushed).
    The cache keeps at most ``cache_size`` clean partials; call
    :meth:`invalidate` when partition ownership changes.  Writes of partials
    take :attr:`writing`, so a later write never lands before an earlier one.
    """

    def __init__(
        self, redis: Any, prefix: str, horizon_seconds: float, cache_size: int = 256
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = int(horizon_seconds)
        self.cache_size = cache_size
        self.writing = asyncio.Lock()
        self._cache: OrderedDict[Key, _Partial] = OrderedDict()

    def _partial(self, member: str) -> str:
        return keys.drift_partial(self.prefix, member)

    async def load(self, wanted: Iterable[Key]) -> None:
        """Read the partials of ``wanted`` that are not cached yet."""
        missing = [key for key in wanted if key not in self._cache]
        if not missing:
            return
        pipe = self.redis.pipeline(transaction=False)
        for member, tp in missing:
            pipe.hmget(self._partial(member), f"{tp}#offset", tp)
        for key, (offset_raw, blob) in zip(missing, await pipe.execute(), strict=True):
            done = int(offset_raw) if offset_raw is not None else -1
            profile = Profile.from_dict(json.loads(blob)) if blob else Profile()
            self._cache.setdefault(key, _Partial(profile, done, done, 0.0))

    def applied_offset(self, key: Key) -> int | None:
        """The highest offset in a cached partial (None: not cached, or forgotten)."""
        partial = self._cache.get(key)
        return None if partial is None else partial.offset

    def put(self, key: Key, offset: int, columns: Columns) -> None:
        """Stage rows (all above the partial's offset, up to ``offset``) into a cached partial."""
        partial = self._cache.get(key)
        if partial is None:  # forgotten since it was loaded: its window has closed
            return
        partial.add(columns)
        self._staged(key, offset)

    def _staged(self, key: Key, offset: int) -> None:
        partial = self._cache[key]
        self._cache.move_to_end(key)
        partial.offset = max(partial.offset, offset)
        if not partial.since:
            partial.since = time.monotonic()

    def unsaved(self) -> dict[Key, float]:
        """Every (member, topic:partition) with unsaved rows, and since when (monotonic)."""
        return {key: p.since for key, p in self._cache.items() if p.offset > p.saved}

    def queue_flush(self, pipe: Any, keys: Iterable[Key] | None = None) -> Saving:
        """Add the writes of unsaved partials (all, or of ``keys``) to a transaction.

        Hold :attr:`writing` from here until :meth:`saved` (or an error).
        """
        chosen = self.unsaved() if keys is None else keys
        saving = []
        for member, tp in chosen:
            partial = self._cache.get((member, tp))
            if partial is None or partial.offset <= partial.saved:
                continue
            key = self._partial(member)
            pipe.hset(
                key,
                mapping={tp: json.dumps(partial.fold().to_dict()), f"{tp}#offset": partial.offset},
            )
            pipe.expire(key, self.ttl)
            saving.append((partial, partial.offset))
        return saving

    def saved(self, saving: Saving) -> None:
        """The transaction of :meth:`queue_flush` succeeded."""
        for partial, offset in saving:
            partial.saved = max(partial.saved, offset)
            if partial.offset == partial.saved:
                partial.since = 0.0
        self._trim()

    async def flush(self, keys: Iterable[Key] | None = None) -> int:
        """Store cached partials with unsaved rows (all, or those of ``keys``); return how many."""
        async with self.writing:
            pipe = self.redis.pipeline(transaction=True)
            saving = self.queue_flush(pipe, keys)
            if saving:
                try:
                    await pipe.execute()
                except BaseException:
                    self.invalidate()  # what Redis holds is unknown now: read it again
                    raise
            self.saved(saving)
            return len(saving)

    def invalidate(self) -> None:
        """Forget every cached partial (partition ownership changed); unsaved rows are dropped.

        Flush first to keep them: a new owner re-applies what was not stored.
        """
        self._cache.clear()

    def _trim(self) -> None:
        """Drop the least recently used clean partials beyond ``cache_size``."""
        excess = len(self._cache) - self.cache_size
        if excess <= 0:
            return
        for key in [k for k, p in self._cache.items() if p.offset == p.saved][:excess]:
            del self._cache[key]

    async def window_profile(self, member: str) -> Profile | None:
        """The merged profile of a window, or None when no partition saw features."""
        raw = await self.redis.hgetall(self._partial(member))
        profile: Profile | None = None
        for raw_name, blob in raw.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            if name.endswith("#offset"):
                continue
            part = Profile.from_dict(json.loads(blob))
            if profile is None:
                profile = part
            else:
                profile.merge(part)
        return profile

    async def forget(self, members: Iterable[str]) -> None:
        """Delete the partials of closed windows, here and in Redis."""
        gone = set(members)
        for key in [k for k in self._cache if k[0] in gone]:
            del self._cache[key]
        keys = [self._partial(m) for m in gone]
        if keys:
            await self.redis.delete(*keys)

    async def states(self, model_key: str) -> dict[str, dict[str, Any]]:
        """Hysteresis state of every drifting feature of ``model\\x1fversion``."""
        raw = await self.redis.hgetall(keys.drift_state(self.prefix, model_key))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def save(self, model_key: str, states: Mapping[str, dict[str, Any] | None]) -> None:
        """Store new hysteresis states (None removes one)."""
        pipe = self.redis.pipeline(transaction=True)
        state_key = keys.drift_state(self.prefix, model_key)
        for feature, state in states.items():
            if state is None:
                pipe.hdel(state_key, feature)
            else:
                pipe.hset(state_key, feature, json.dumps(state))
        await pipe.execute()

    async def pending_reference(self, model_key: str) -> Profile | None:
        raw = await self.redis.get(keys.autoref(self.prefix, model_key))
        return Profile.from_dict(json.loads(raw)) if raw else None

    async def set_pending_reference(self, model_key: str, profile: Profile | None) -> None:
        key = keys.autoref(self.prefix, model_key)
        if profile is None:
            await self.redis.delete(key)
        else:
            await self.redis.set(key, json.dumps(profile.to_dict()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
