"""Shared window and join state in Redis, updated atomically per batch.

Every worker of a consumer group adds to the same counters, so a window's
metrics do not depend on which worker read which partition.  One Lua call per
batch applies all of it atomically, which is what makes at-least-once
delivery count every event exactly once:

* per (topic, partition) the highest applied offset is kept beside the
  counters: a batch redelivered after a crash is skipped record by record;
* per ``event_id`` a "seen" key (expiring after ``dedupe_seconds``) drops a
  duplicate that a producer sent twice;
* a prediction waits ``join_horizon_seconds`` for its feedback (and feedback
  that arrives first waits for its prediction), so the join state is bounded
  by the horizon and survives a worker restart.

Windows close when the watermark (the slowest active partition's event time)
passes their end plus the grace period, or when no input has arrived for
``idle_close_seconds``.  In the first ``idle_close_seconds`` after input
begins, an input partition that has delivered nothing yet holds every window
open, so a worker that starts on a backlog does not close windows early.

Closing is two-step (claim, then acknowledge after the snapshot is
published), so a crash in between re-publishes the same snapshot, with the
same event id, instead of losing it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ClosedWindow", "WindowStore", "clear_state"]

_APPLY = """
local P = ARGV[1]
local size = tonumber(ARGV[2])
local horizon = math.floor(tonumber(ARGV[3]))
local dedupe = math.floor(tonumber(ARGV[4]))
local records = cjson.decode(ARGV[5])
local now = tonumber(redis.call('TIME')[1])
local applied = 0

local function window_key(m, v, t)
  local w = math.floor(t / size) * size
  return m .. '\\31' .. v .. '\\31' .. string.format('%.3f', w), w
end

local function add(m, v, t, fields)
  local member, w = window_key(m, v, t)
  if redis.call('EXISTS', P .. 'closed:' .. member) == 1 then
    redis.call('HINCRBY', P .. 'late', m .. '\\31' .. v, 1)
    return
  end
  local key = P .. 'win:' .. member
  for i = 1, #fields, 2 do
    redis.call('HINCRBY', key, fields[i], fields[i + 1])
  end
  redis.call('ZADD', P .. 'open', w + size, member)
end

local function join(m, v, plabel, flabel, pos, t)
  local fields = {'feedback', 1}
  if flabel ~= '' then
    table.insert(fields, 'labelled'); table.insert(fields, 1)
    if flabel == plabel then table.insert(fields, 'correct'); table.insert(fields, 1) end
  end
  if pos ~= '' then
    table.insert(fields, 'judged'); table.insert(fields, 1)
    if pos == '1' then table.insert(fields, 'positive'); table.insert(fields, 1) end
  end
  add(m, v, t, fields)
end

local offsets = {}
for _, r in ipairs(records) do
  local kind, tp, offset, eid = r[1], r[2], tonumber(r[3]), r[4]
  local done = offsets[tp] or tonumber(redis.call('HGET', P .. 'offsets', tp) or '-1')
  if offset > done then
    offsets[tp] = offset
    local t = tonumber(r[6])
    local prev = tonumber(redis.call('HGET', P .. 'ptime', tp) or '-1')
    if t > prev then redis.call('HSET', P .. 'ptime', tp, t) end
    redis.call('HSET', P .. 'pwall', tp, now)
    if redis.call('SET', P .. 'seen:' .. eid, 1, 'NX', 'EX', dedupe) then
      applied = applied + 1
      local rid = r[5]
      if kind == 'p' then
        local m, v, plabel, lat = r[7], r[8], r[9], r[10]
        local fields = {'count', 1}
        if lat ~= '' then table.insert(fields, 'lat:' .. lat); table.insert(fields, 1) end
        add(m, v, t, fields)
        local pkey = P .. 'pred:' .. rid
        redis.call('HSET', pkey, 'm', m, 'v', v, 'l', plabel)
        redis.call('EXPIRE', pkey, horizon)
        local fkey = P .. 'fb:' .. rid
        local waiting = redis.call('LRANGE', fkey, 0, -1)
        for _, raw in ipairs(waiting) do
          local f = cjson.decode(raw)
          join(m, v, plabel, f[1], f[2], f[3])
        end
        if #waiting > 0 then redis.call('DEL', fkey) end
      else
        local flabel, pos = r[7], r[8]
        local pred = redis.call('HMGET', P .. 'pred:' .. rid, 'm', 'v', 'l')
        if pred[1] then
          join(pred[1], pred[2], pred[3], flabel, pos, t)
        else
          local fkey = P .. 'fb:' .. rid
          redis.call('RPUSH', fkey, cjson.encode({flabel, pos, t}))
          redis.call('EXPIRE', fkey, horizon)
        end
      end
    end
  end
end
for tp, offset in pairs(offsets) do redis.call('HSET', P .. 'offsets', tp, offset) end
redis.call('SET', P .. 'last_input', now)
redis.call('SET', P .. 'first_input', now, 'NX')
return applied
"""

_CLOSE = """
local P = ARGV[1]
local grace = tonumber(ARGV[2])
local idle = tonumber(ARGV[3])
local horizon = math.floor(tonumber(ARGV[4]))
local retry = tonumber(ARGV[5])
local now = tonumber(redis.call('TIME')[1])
local watermark = nil
local times = redis.call('HGETALL', P .. 'ptime')
for i = 1, #times, 2 do
  local wall = tonumber(redis.call('HGET', P .. 'pwall', times[i]) or '0')
  if now - wall <= idle then
    local t = tonumber(times[i + 1])
    if watermark == nil or t < watermark then watermark = t end
  end
end
local limit = '+inf'
if watermark ~= nil then limit = tostring(watermark - grace) end
-- an input partition that has not delivered yet holds every window open for the
-- first `idle` seconds: a backlog read partition by partition closes nothing early
local first = tonumber(redis.call('GET', P .. 'first_input') or '0')
if watermark ~= nil and now - first <= idle then
  for i = 6, #ARGV do
    if redis.call('HEXISTS', P .. 'ptime', ARGV[i]) == 0 then limit = '-inf' end
  end
end
local claimed = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'open', '-inf', limit)) do
  redis.call('ZREM', P .. 'open', member)
  redis.call('SET', P .. 'closed:' .. member, 1, 'EX', horizon)
  local src = P .. 'win:' .. member
  if redis.call('EXISTS', src) == 1 then
    redis.call('RENAME', src, P .. 'closing:' .. member)
    table.insert(claimed, member)
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'closing', '-inf', now - retry)) do
  table.insert(claimed, member)
end
local out = {}
for _, member in ipairs(claimed) do
  redis.call('ZADD', P .. 'closing', now, member)
  table.insert(out, member)
  table.insert(out, redis.call('HGETALL', P .. 'closing:' .. member))
end
return out
"""


@dataclass(frozen=True)
class ClosedWindow:
    """A window claimed for publishing: its identity and raw counters."""

    member: str
    model: str
    model_version: str
    start: float
    counters: dict[str, int]


class WindowStore:
    """Window counters and join state under ``prefix`` in one Redis (asyncio client)."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        window_seconds: float,
        grace_seconds: float,
        idle_close_seconds: float,
        horizon_seconds: float,
        dedupe_seconds: float = 900.0,
        retry_seconds: float = 30.0,
        partitions: Sequence[str] = (),
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.window_seconds = window_seconds
        self.grace_seconds = grace_seconds
        self.idle_close_seconds = idle_close_seconds
        self.horizon_seconds = horizon_seconds
        self.dedupe_seconds = dedupe_seconds
        self.retry_seconds = retry_seconds
        self.partitions = list(partitions)  # every input "topic:partition" to wait for
        self._apply = redis.register_script(_APPLY)
        self._close = redis.register_script(_CLOSE)

    async def apply(self, records: Sequence[Sequence[Any]]) -> int:
        """Apply a batch of records (:func:`govloop.streams.records.record_of`).

        Returns how many of them were new (not redelivered, not duplicates).
        """
        if not records:
            return 0
        args = [
            self.prefix,
            self.window_seconds,
            self.horizon_seconds,
            self.dedupe_seconds,
            json.dumps(records, separators=(",", ":")),
        ]
        return int(await self._apply(keys=[], args=args))

    async def claim_closed(self) -> list[ClosedWindow]:
        """Close every due window and claim it (and any claim left over by a crash)."""
        args = [
            self.prefix,
            self.grace_seconds,
            self.idle_close_seconds,
            self.horizon_seconds,
            self.retry_seconds,
            *self.partitions,
        ]
        flat = await self._close(keys=[], args=args)
        windows = []
        for i in range(0, len(flat), 2):
            member = _text(flat[i])
            model, version, start = member.split("\x1f")
            raw = flat[i + 1]
            counters = {_text(raw[j]): int(raw[j + 1]) for j in range(0, len(raw), 2)}
            windows.append(ClosedWindow(member, model, version, float(start), counters))
        return windows

    async def acknowledge(self, windows: Sequence[ClosedWindow]) -> None:
        """Forget windows whose snapshots were published."""
        if not windows:
            return
        pipe = self.redis.pipeline(transaction=True)
        for w in windows:
            pipe.delete(f"{self.prefix}closing:{w.member}")
            pipe.zrem(f"{self.prefix}closing", w.member)
        await pipe.execute()

    async def late_events(self) -> dict[str, int]:
        """Events that arrived after their window closed, per ``model\\x1fversion``."""
        raw = await self.redis.hgetall(f"{self.prefix}late")
        return {_text(k): int(v) for k, v in raw.items()}


def clear_state(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (synchronously); return how many were deleted."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
