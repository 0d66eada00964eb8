"""Drift state in Redis: partial window profiles per partition, and alert hysteresis.

The latest result per feature is the system of record's (SQL ``drift_status``);
what is here is working state that a restart of Redis would only delay.

Each worker adds the features of its batch to the profile of the window and
partition the events belong to.  A partition has one owner at a time and the
last applied offset is stored beside its partial profile, so a batch
redelivered after a crash is skipped: like the counters, profiles count every
event exactly once.  When a window closes, the partials of all partitions are
merged into the window's profile.

Hysteresis keeps one episode to one alert: a feature enters ``drift`` on the
first drifted window and leaves it (one ``recovered`` alert) only after
``recover_windows`` consecutive clean windows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from govloop.stats.profile import Profile, Row

__all__ = ["DriftStore", "Transition", "next_state"]


@dataclass(frozen=True)
class Transition:
    """A feature's hysteresis state after one window, and the alert it raises, if any."""

    state: dict[str, Any] | None  # None: not drifting
    alert: str | None  # "drift" | "recovered" | None


def next_state(state: Mapping[str, Any] | None, drifted: bool, window_start: float,
               recover_windows: int) -> Transition:
    """Pure hysteresis step for one feature.

    >>> t = next_state(None, True, 60.0, 2); t.alert, t.state
    ('drift', {'since': 60.0, 'clean': 0})
    >>> t = next_state(t.state, False, 120.0, 2); t.alert, t.state
    (None, {'since': 60.0, 'clean': 1})
    >>> next_state(t.state, False, 180.0, 2).alert
    'recovered'
    """
    if state is None:
        return Transition({"since": window_start, "clean": 0}, "drift") if drifted \
            else Transition(None, None)
    if drifted:
        return Transition({"since": state["since"], "clean": 0}, None)
    clean = int(state["clean"]) + 1
    if clean >= recover_windows:
        return Transition(None, "recovered")
    return Transition({"since": state["since"], "clean": clean}, None)


class DriftStore:
    """Partial profiles, live drift results and hysteresis state under ``prefix``."""

    def __init__(self, redis: Any, prefix: str, horizon_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = int(horizon_seconds)

    def _partial(self, member: str) -> str:
        return f"{self.prefix}dprof:{member}"

    async def add(self, groups: Mapping[tuple[str, str], list[tuple[int, Row]]]) -> int:
        """Add rows grouped by (window member, topic:partition); return rows applied.

        Rows at or below the partition's stored offset were applied before and
        are skipped.
        """
        if not groups:
            return 0
        keys = list(groups)
        pipe = self.redis.pipeline(transaction=False)
        for member, tp in keys:
            pipe.hmget(self._partial(member), f"{tp}#offset", tp)
        stored = await pipe.execute()
        applied = 0
        pipe = self.redis.pipeline(transaction=True)
        for (member, tp), (offset_raw, blob) in zip(keys, stored, strict=True):
            done = int(offset_raw) if offset_raw is not None else -1
            fresh = [row for offset, row in groups[(member, tp)] if offset > done]
            if not fresh:
                continue
            profile = Profile.from_dict(json.loads(blob)) if blob else Profile()
            profile.update_many(fresh)
            applied += len(fresh)
            last = max(offset for offset, _ in groups[(member, tp)])
            key = self._partial(member)
            pipe.hset(key, mapping={tp: json.dumps(profile.to_dict()), f"{tp}#offset": last})
            pipe.expire(key, self.ttl)
        await pipe.execute()
        return applied

    async def window_profile(self, member: str) -> Profile | None:
        """The merged profile of a window, or None when no partition saw features."""
        raw = await self.redis.hgetall(self._partial(member))
        profile: Profile | None = None
        for field, blob in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            if name.endswith("#offset"):
                continue
            part = Profile.from_dict(json.loads(blob))
            if profile is None:
                profile = part
            else:
                profile.merge(part)
        return profile

    async def forget(self, members: Iterable[str]) -> None:
        keys = [self._partial(m) for m in members]
        if keys:
            await self.redis.delete(*keys)

    async def states(self, model_key: str) -> dict[str, dict[str, Any]]:
        """Hysteresis state of every drifting feature of ``model\\x1fversion``."""
        raw = await self.redis.hgetall(f"{self.prefix}dstate:{model_key}")
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def save(self, model_key: str, states: Mapping[str, dict[str, Any] | None]) -> None:
        """Store new hysteresis states (None removes one)."""
        pipe = self.redis.pipeline(transaction=True)
        state_key = f"{self.prefix}dstate:{model_key}"
        for feature, state in states.items():
            if state is None:
                pipe.hdel(state_key, feature)
            else:
                pipe.hset(state_key, feature, json.dumps(state))
        await pipe.execute()

    async def pending_reference(self, model_key: str) -> Profile | None:
        raw = await self.redis.get(f"{self.prefix}autoref:{model_key}")
        return Profile.from_dict(json.loads(raw)) if raw else None

    async def set_pending_reference(self, model_key: str, profile: Profile | None) -> None:
        key = f"{self.prefix}autoref:{model_key}"
        if profile is None:
            await self.redis.delete(key)
        else:
            await self.redis.set(key, json.dumps(profile.to_dict()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
