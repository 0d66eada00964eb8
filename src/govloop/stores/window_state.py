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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError

__all__ = ["ClosedWindow", "Encoded", "WindowStore", "clear_state"]

_APPLY = """
local P = ARGV[1]
local size = tonumber(ARGV[2])
local horizon = math.floor(tonumber(ARGV[3]))
local dedupe = math.floor(tonumber(ARGV[4]))
local records = cjson.decode(ARGV[5])
local now = tonumber(redis.call('TIME')[1])
local applied = 0
-- what a batch touches more than once is read once and written once, at the end:
-- offsets, event and wall times per partition, window counters, closed windows, late counts
local stored, offsets, ptimes, closed, counts, ends, late = {}, {}, {}, {}, {}, {}, {}

local members = {}  -- model -> version -> window start -> member (formatted once per batch)

-- add one to each field named (nil: none) in the window of (m, v, t), or count the event late
local function add(m, v, t, f1, f2, f3, f4, f5)
  local w = math.floor(t / size) * size
  local by_version = members[m]
  if by_version == nil then by_version = {}; members[m] = by_version end
  local by_start = by_version[v]
  if by_start == nil then by_start = {}; by_version[v] = by_start end
  local member = by_start[w]
  if member == nil then
    member = m .. '\\31' .. v .. '\\31' .. string.format('%.3f', w)
    by_start[w] = member
  end
  local c = counts[member]
  if c == nil then
    local shut = closed[member]
    if shut == nil then
      shut = redis.call('EXISTS', P .. 'closed:' .. member) == 1
      closed[member] = shut
    end
    if shut then
      local key = m .. '\\31' .. v
      late[key] = (late[key] or 0) + 1
      return
    end
    c = {}
    counts[member] = c
    ends[member] = w + size
  end
  c[f1] = (c[f1] or 0) + 1
  if f2 then c[f2] = (c[f2] or 0) + 1 end
  if f3 then c[f3] = (c[f3] or 0) + 1 end
  if f4 then c[f4] = (c[f4] or 0) + 1 end
  if f5 then c[f5] = (c[f5] or 0) + 1 end
end

local function join(m, v, plabel, flabel, pos, t)
  local labelled, correct, judged, positive = nil, nil, nil, nil
  if flabel ~= '' then
    labelled = 'labelled'
    if flabel == plabel then correct = 'correct' end
  end
  if pos ~= '' then
    judged = 'judged'
    if pos == '1' then positive = 'positive' end
  end
  add(m, v, t, 'feedback', labelled, correct, judged, positive)
end

for _, r in ipairs(records) do
  local kind, tp, offset, eid = r[1], r[2], tonumber(r[3]), r[4]
  local done = offsets[tp]
  if done == nil then
    done = stored[tp]
    if done == nil then
      done = tonumber(redis.call('HGET', P .. 'offsets', tp) or '-1')
      stored[tp] = done
      ptimes[tp] = tonumber(redis.call('HGET', P .. 'ptime', tp) or '-1')
    end
  end
  if offset > done then
    offsets[tp] = offset
    local t = tonumber(r[6])
    if t > ptimes[tp] then ptimes[tp] = t end
    if redis.call('SET', P .. 'seen:' .. eid, 1, 'NX', 'EX', dedupe) then
      applied = applied + 1
      local jkey = P .. 'join:' .. r[5]
      if kind == 'p' then
        local m, v, plabel, lat = r[7], r[8], r[9], r[10]
        if lat ~= '' then add(m, v, t, 'count', 'lat:' .. lat) else add(m, v, t, 'count') end
        -- the prediction waits for its feedback; feedback that came first is joined now
        local before = redis.call('SET', jkey, 'p' .. m .. '\\31' .. v .. '\\31' .. plabel,
                                  'EX', horizon, 'GET')
        if before and string.sub(before, 1, 1) == 'f' then
          for _, f in ipairs(cjson.decode(string.sub(before, 2))) do
            join(m, v, plabel, f[1], f[2], f[3])
          end
        end
      else
        local flabel, pos = r[7], r[8]
        local found = redis.call('GET', jkey)
        if found and string.sub(found, 1, 1) == 'p' then
          local a = string.find(found, '\\31', 2, true)
          local b = string.find(found, '\\31', a + 1, true)
          join(string.sub(found, 2, a - 1), string.sub(found, a + 1, b - 1),
               string.sub(found, b + 1), flabel, pos, t)
        else
          local waiting = {}
          if found then waiting = cjson.decode(string.sub(found, 2)) end
          table.insert(waiting, {flabel, pos, t})
          redis.call('SET', jkey, 'f' .. cjson.encode(waiting), 'EX', horizon)
        end
      end
    end
  end
end
for member, c in pairs(counts) do
  local key = P .. 'win:' .. member
  for field, n in pairs(c) do redis.call('HINCRBY', key, field, n) end
  redis.call('ZADD', P .. 'open', ends[member], member)
end
for key, n in pairs(late) do redis.call('HINCRBY', P .. 'late', key, n) end
for tp, offset in pairs(offsets) do
  redis.call('HSET', P .. 'offsets', tp, offset)
  redis.call('HSET', P .. 'ptime', tp, ptimes[tp])
  redis.call('HSET', P .. 'pwall', tp, now)
end
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


class Encoded(NamedTuple):
    """A batch of records ready to send: how many, and their JSON."""

    n: int
    json: str


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

    @staticmethod
    def encode(records: Sequence[Sequence[Any]]) -> Encoded:
        """A batch of records in the form :meth:`apply` sends (done ahead, off the I/O path)."""
        return Encoded(len(records), json.dumps(records, separators=(",", ":")))

    async def apply(self, records: Sequence[Sequence[Any]] | Encoded,
                    before: Callable[[Any], object] | None = None) -> int:
        """Apply a batch of records (:func:`~govloop.streams.records.record_of`), or its encoding.

        ``before(pipeline)`` may queue commands that must take effect in the
        same transaction, ahead of the counters (the drift profiles of the
        batch).  Returns how many records were new (not redelivered, not
        duplicates).
        """
        batch = records if isinstance(records, Encoded) else self.encode(records)
        if not batch.n and before is None:
            return 0
        args = [self.prefix, self.window_seconds, self.horizon_seconds, self.dedupe_seconds,
                batch.json]
        try:
            return await self._transaction(batch.n, args, before)
        except NoScriptError:  # a restarted or flushed Redis
            await self.redis.script_load(_APPLY)
            return await self._transaction(batch.n, args, before)

    async def _transaction(self, count: int, args: list[Any],
                           before: Callable[[Any], object] | None) -> int:
        pipe = self.redis.pipeline(transaction=True)
        if before is not None:
            before(pipe)
        if count:
            # EVALSHA, not the script object: one round trip, no SCRIPT EXISTS first
            pipe.evalsha(self._apply.sha, 0, *args)
        results = await pipe.execute()
        return int(results[-1]) if count else 0

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
