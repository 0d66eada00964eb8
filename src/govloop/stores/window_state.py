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
same event id, instead of losing it.  An acknowledged window's counters are
kept a little longer than a sliding window spans: every counter is a sum, so
a sliding window is the sum of the tumbling ones it covers.

Besides the overall window of its model version, an event counts in the
window of each *slice* its prediction names (A/B variant, segment values;
see :mod:`govloop.streams.records`).  A window takes at most
``segment_slices`` segment values; later ones are counted as
``<attribute>=__other__``, so memory stays bounded whatever the cardinality.

Join outcomes (a label right or wrong, a thumb up or down) wait in a sorted
set by event time until the watermark passes them and are then released
once, in time order, for the concept-drift detectors: a backlog read one
partition ahead of another does not look like a change of the error rate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError

from govloop.stats import sliding_counters

__all__ = ["Applied", "Claimed", "ClosedWindow", "Encoded", "Outcome", "WindowStore", "clear_state"]

#: A closed window's counters are kept this long beyond the sliding span, so a
#: worker restart within it still publishes complete sliding windows.
RECENT_SLACK_SECONDS = 3600.0

# Shared by both scripts: the watermark, and releasing join outcomes in event-time order.
_ORDER = """
-- the slowest active input partition's event time; nil when no partition is active
-- (idle); -inf while an input partition named from ARGV[first] on has not delivered in
-- the first `idle` seconds after input began (a backlog read partition by partition)
local function watermark(P, idle, now, first)
  local mark = nil
  local times = redis.call('HGETALL', P .. 'ptime')
  for i = 1, #times, 2 do
    local wall = tonumber(redis.call('HGET', P .. 'pwall', times[i]) or '0')
    if now - wall <= idle then
      local t = tonumber(times[i + 1])
      if mark == nil or t < mark then mark = t end
    end
  end
  local began = tonumber(redis.call('GET', P .. 'first_input') or '0')
  if mark ~= nil and now - began <= idle then
    for i = first, #ARGV do
      if redis.call('HEXISTS', P .. 'ptime', ARGV[i]) == 0 then return -math.huge end
    end
  end
  return mark
end

-- join outcomes wait in a sorted set by event time until every partition has passed
-- them, so the concept detectors see them in time order whichever worker read what;
-- released as one JSON array of them ('' when none), one reply for the client to read
local function release(P, upto)
  local key = P .. 'outcomes'
  local limit = '+inf'
  if upto ~= nil then limit = tostring(upto) end
  local out = redis.call('ZRANGEBYSCORE', key, '-inf', limit)
  if #out == 0 then return '' end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', limit)
  return '[' .. table.concat(out, ',') .. ']'
end
"""

_APPLY = (
    _ORDER
    + """
local P = ARGV[1]
local size = tonumber(ARGV[2])
local horizon = math.floor(tonumber(ARGV[3]))
local dedupe = math.floor(tonumber(ARGV[4]))
local records = cjson.decode(ARGV[5])
local cap = tonumber(ARGV[6])
local idle = tonumber(ARGV[7])
local now = tonumber(redis.call('TIME')[1])
local applied = 0
-- what a batch touches more than once is read once and written once, at the end:
-- offsets, event and wall times per partition, window counters, closed windows, late counts
local stored, offsets, ptimes, closed, counts, ends, late = {}, {}, {}, {}, {}, {}, {}
local outcomes = {}  -- {model, version, stream, 0 or 1, time, event id} per label or thumb

local members = {}  -- model -> version -> slice -> window start -> member (formatted once)
local redirect = {}  -- member of a segment value over the cap -> its __other__ counters
local pvalues = {}  -- model -> version -> label -> a waiting prediction's join value (no slices)
local parsed = {}  -- a waiting prediction's join value -> its fields, decoded once per batch
local latency = {}  -- latency bucket -> its counter's field name

-- what the join key of a prediction holds while it waits for its feedback: the same bytes
-- for every prediction of (m, v) with label plabel and no slices, so encoded once per batch
local function waiting_value(m, v, plabel, slices)
  if #slices > 0 then return 'p' .. cjson.encode({m, v, plabel, slices}) end
  local by_version = pvalues[m]
  if by_version == nil then by_version = {}; pvalues[m] = by_version end
  local by_label = by_version[v]
  if by_label == nil then by_label = {}; by_version[v] = by_label end
  local value = by_label[plabel]
  if value == nil then
    value = 'p' .. cjson.encode({m, v, plabel, slices})
    by_label[plabel] = value
  end
  return value
end

-- the counters of slice `sl` of (m, v) in the window holding t; nil if that window
-- has closed (the event is counted late, once, for the overall slice)
local function slot(m, v, sl, t)
  local w = math.floor(t / size) * size
  local by_version = members[m]
  if by_version == nil then by_version = {}; members[m] = by_version end
  local by_slice = by_version[v]
  if by_slice == nil then by_slice = {}; by_version[v] = by_slice end
  local by_start = by_slice[sl]
  if by_start == nil then by_start = {}; by_slice[sl] = by_start end
  local member = by_start[w]
  if member == nil then
    member = m .. '\\31' .. v .. '\\31' .. string.format('%.3f', w)
    if sl ~= '' then member = member .. '\\31' .. sl end
    by_start[w] = member
  end
  local c = counts[member]
  if c == nil then
    if redirect[member] ~= nil then return redirect[member] end
    local shut = closed[member]
    if shut == nil then
      shut = redis.call('EXISTS', P .. 'closed:' .. member) == 1
      closed[member] = shut
    end
    if shut then
      if sl == '' then
        local key = m .. '\\31' .. v
        late[key] = (late[key] or 0) + 1
      end
      return nil
    end
    if string.sub(sl, 1, 1) == 's' and string.sub(sl, -10) ~= '\\30__other__' then
      -- a segment value gets its own snapshot while the window has fewer than `cap`
      local known = P .. 'slices:' .. m .. '\\31' .. v .. '\\31' .. string.format('%.3f', w)
      if redis.call('SISMEMBER', known, sl) == 0 then
        if redis.call('SCARD', known) >= cap then
          local name = string.sub(sl, 3, string.find(sl, '\\30', 3, true) - 1)
          local other = slot(m, v, 's\\30' .. name .. '\\30__other__', t)
          redirect[member] = other
          return other
        end
        redis.call('SADD', known, sl)
        redis.call('EXPIRE', known, horizon)
      end
    end
    c = {}
    counts[member] = c
    ends[member] = w + size
  end
  return c
end

local function inc(c, field, n)
  c[field] = (c[field] or 0) + (n or 1)
end

local function count_prediction(c, lat, conf)
  if c == nil then return end
  inc(c, 'count')
  if lat ~= '' then
    local field = latency[lat]
    if field == nil then field = 'lat:' .. lat; latency[lat] = field end
    inc(c, field)
  end
  if conf ~= '' then inc(c, 'conf_n'); inc(c, 'conf_sum', conf) end
end

local function count_feedback(c, wrong, negative)
  if c == nil then return end
  inc(c, 'feedback')
  if wrong ~= nil then
    inc(c, 'labelled')
    if wrong == 0 then inc(c, 'correct') end
  end
  if negative ~= nil then
    inc(c, 'judged')
    if negative == 0 then inc(c, 'positive') end
  end
end

-- feedback `eid` (label `flabel`, thumb `pos`, time t) joined to a prediction of (m, v)
local function join(m, v, plabel, slices, flabel, pos, t, eid)
  local wrong, negative = nil, nil
  if flabel ~= '' then
    if flabel == plabel then wrong = 0 else wrong = 1 end
    table.insert(outcomes, {m, v, 'error', wrong, t, eid})
  end
  if pos ~= '' then
    if pos == '1' then negative = 0 else negative = 1 end
    table.insert(outcomes, {m, v, 'negative', negative, t, eid})
  end
  count_feedback(slot(m, v, '', t), wrong, negative)
  for _, sl in ipairs(slices) do count_feedback(slot(m, v, sl, t), wrong, negative) end
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
        local m, v, plabel, lat, conf, slices = r[7], r[8], r[9], r[10], r[11], r[12]
        count_prediction(slot(m, v, '', t), lat, conf)
        for _, sl in ipairs(slices) do count_prediction(slot(m, v, sl, t), lat, conf) end
        -- the prediction waits for its feedback; feedback that came first is joined now
        local before = redis.call('SET', jkey, waiting_value(m, v, plabel, slices),
                                  'EX', horizon, 'GET')
        if before and string.sub(before, 1, 1) == 'f' then
          for _, f in ipairs(cjson.decode(string.sub(before, 2))) do
            join(m, v, plabel, slices, f[1], f[2], f[3], f[4])
          end
        end
      else
        local flabel, pos = r[7], r[8]
        local found = redis.call('GET', jkey)
        if found and string.sub(found, 1, 1) == 'p' then
          local p = parsed[found]  -- read only below
          if p == nil then
            p = cjson.decode(string.sub(found, 2))
            parsed[found] = p
          end
          join(p[1], p[2], p[3], p[4], flabel, pos, t, eid)
        else
          local waiting = {}
          if found then waiting = cjson.decode(string.sub(found, 2)) end
          table.insert(waiting, {flabel, pos, t, eid})
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
if #outcomes > 0 then
  -- one ZADD per chunk of outcomes (Lua's unpack takes a few thousand values at most)
  local args = {}
  for i, o in ipairs(outcomes) do
    table.insert(args, o[5])
    table.insert(args, cjson.encode(o))
    if #args >= 1000 or i == #outcomes then
      redis.call('ZADD', P .. 'outcomes', unpack(args))
      args = {}
    end
  end
  redis.call('EXPIRE', P .. 'outcomes', horizon)
elseif redis.call('EXISTS', P .. 'outcomes') == 0 then
  return {applied, ''}  -- nothing waits: no watermark needed
end
local mark = watermark(P, idle, now, 8)
if mark == nil then return {applied, ''} end
return {applied, release(P, mark)}
"""
)

_CLOSE = (
    _ORDER
    + """
local P = ARGV[1]
local grace = tonumber(ARGV[2])
local idle = tonumber(ARGV[3])
local horizon = math.floor(tonumber(ARGV[4]))
local retry = tonumber(ARGV[5])
local now = tonumber(redis.call('TIME')[1])
local mark = watermark(P, idle, now, 6)
local limit = '+inf'  -- idle: close everything, release every waiting outcome
if mark ~= nil then limit = tostring(mark - grace) end
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
local out = {release(P, mark)}
for _, member in ipairs(claimed) do
  redis.call('ZADD', P .. 'closing', now, member)
  table.insert(out, member)
  table.insert(out, redis.call('HGETALL', P .. 'closing:' .. member))
end
return out
"""
)


class Encoded(NamedTuple):
    """A batch of records ready to send: how many, and their JSON."""

    n: int
    json: str


class Outcome(NamedTuple):
    """One joined label or thumb, in stream order: ``value`` 1 is an error / a thumb down."""

    model: str
    model_version: str
    stream: str  # "error" (label != served label) or "negative" (thumb down)
    value: float
    ts: float  # the feedback's event time


class Applied(NamedTuple):
    """What one batch changed: how many events were new, and the join outcomes released."""

    events: int
    outcomes: list[Outcome]


def _outcomes(released: bytes | str) -> list[Outcome]:
    """Outcomes as the scripts release them: a JSON array of ``[model, version, stream,
    value, ts, id]``, or ``""`` for none.

    >>> _outcomes(b'[["m","1","error",1,60.5,"e1"],["m","1","negative",0,61,"e2"]]')
    [Outcome(model='m', model_version='1', stream='error', value=1, ts=60.5), \
Outcome(model='m', model_version='1', stream='negative', value=0, ts=61)]
    >>> _outcomes(b"")
    []
    """
    if not released:
        return []
    return [Outcome(*o[:5]) for o in json.loads(released)]


class Claimed(NamedTuple):
    """What :meth:`WindowStore.claim_closed` returns."""

    windows: list[ClosedWindow]
    outcomes: list[Outcome]


@dataclass(frozen=True)
class ClosedWindow:
    """A window claimed for publishing: its identity, slice (``""``: overall) and raw counters."""

    member: str
    model: str
    model_version: str
    start: float
    counters: dict[str, int]
    slice: str = ""

    @property
    def group(self) -> str:
        """The (model, version, slice) the window belongs to: its sliding windows' key."""
        return f"{self.model}\x1f{self.model_version}\x1f{self.slice}"


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
        segment_slices: int = 64,
        sliding_windows: int = 1,
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
        self.segment_slices = segment_slices
        self.sliding_windows = sliding_windows
        self._apply = redis.register_script(_APPLY)
        self._close = redis.register_script(_CLOSE)

    @staticmethod
    def encode(records: Sequence[Sequence[Any]]) -> Encoded:
        """A batch of records in the form :meth:`apply` sends (done ahead, off the I/O path)."""
        return Encoded(
            len(records), json.dumps(records, separators=(",", ":"), check_circular=False)
        )

    async def apply(
        self,
        records: Sequence[Sequence[Any]] | Encoded,
        before: Callable[[Any], object] | None = None,
    ) -> Applied:
        """Apply a batch of records (:func:`~govloop.streams.records.record_of`), or its encoding.

        ``before(pipeline)`` may queue commands that must take effect in the
        same transaction, ahead of the counters (the drift profiles of the
        batch).  Returns how many records were new (not redelivered, not
        duplicates) and the join outcomes that every input partition has now
        passed in event time (of this batch and earlier ones), each released
        once, in event-time order.
        """
        batch = records if isinstance(records, Encoded) else self.encode(records)
        if not batch.n and before is None:
            return Applied(0, [])
        args = [
            self.prefix,
            self.window_seconds,
            self.horizon_seconds,
            self.dedupe_seconds,
            batch.json,
            self.segment_slices,
            self.idle_close_seconds,
            *self.partitions,
        ]
        try:
            return await self._transaction(batch.n, args, before)
        except NoScriptError:  # a restarted or flushed Redis
            await self.redis.script_load(_APPLY)
            return await self._transaction(batch.n, args, before)

    async def _transaction(
        self, count: int, args: list[Any], before: Callable[[Any], object] | None
    ) -> Applied:
        pipe = self.redis.pipeline(transaction=True)
        if before is not None:
            before(pipe)
        if count:
            # EVALSHA, not the script object: one round trip, no SCRIPT EXISTS first
            pipe.evalsha(self._apply.sha, 0, *args)
        results = await pipe.execute()
        if not count:
            return Applied(0, [])
        applied, released = results[-1]
        return Applied(int(applied), _outcomes(released))

    async def claim_closed(self) -> Claimed:
        """Close every due window and claim it (and any claim left over by a crash).

        Also releases the join outcomes every input partition has passed (all
        of them when input is idle).
        """
        args = [
            self.prefix,
            self.grace_seconds,
            self.idle_close_seconds,
            self.horizon_seconds,
            self.retry_seconds,
            *self.partitions,
        ]
        released, *flat = await self._close(keys=[], args=args)
        windows = []
        for i in range(0, len(flat), 2):
            member = _text(flat[i])
            model, version, start, *slice_ = member.split("\x1f")
            raw = flat[i + 1]
            counters = {_text(raw[j]): int(raw[j + 1]) for j in range(0, len(raw), 2)}
            windows.append(
                ClosedWindow(
                    member, model, version, float(start), counters, slice_[0] if slice_ else ""
                )
            )
        return Claimed(windows, _outcomes(released))

    @property
    def sliding_span(self) -> float:
        """Length in seconds of a sliding window (``sliding_windows`` tumbling windows)."""
        return self.sliding_windows * self.window_seconds

    async def sliding(self, windows: Sequence[ClosedWindow]) -> list[dict[str, int]]:
        """Per window, the counters of the sliding window that ends where it ends.

        That is the window's own counters plus those of the ``sliding_windows - 1``
        tumbling windows of its group before it: from this claim when they are in
        it (a backlog closes several at once), else as :meth:`acknowledge` kept them.
        """
        size, k = self.window_seconds, self.sliding_windows
        claimed = {(w.group, w.start): w.counters for w in windows}
        wanted = sorted(
            {(w.group, w.start - i * size) for w in windows for i in range(1, k)} - claimed.keys()
        )
        stored: dict[tuple[str, float], dict[str, int]] = {}
        if wanted:
            raw = await self.redis.mget([self._recent(g, start) for g, start in wanted])
            stored = {key: json.loads(v) for key, v in zip(wanted, raw, strict=True) if v}
        out = []
        for w in windows:
            recent = {}
            for i in range(k):
                start = w.start - i * size
                counters = claimed.get((w.group, start)) or stored.get((w.group, start))
                if counters:
                    recent[start] = counters
            out.append(sliding_counters(recent, w.start + size, self.sliding_span))
        return out

    async def acknowledge(self, windows: Sequence[ClosedWindow]) -> None:
        """Forget windows whose snapshots were published (keeping what sliding windows need)."""
        if not windows:
            return
        keep = round(self.sliding_span + RECENT_SLACK_SECONDS)
        pipe = self.redis.pipeline(transaction=True)
        for w in windows:
            if self.sliding_windows > 1:
                pipe.set(self._recent(w.group, w.start), json.dumps(w.counters), ex=keep)
            pipe.delete(f"{self.prefix}closing:{w.member}")
            pipe.zrem(f"{self.prefix}closing", w.member)
        await pipe.execute()

    def _recent(self, group: str, start: float) -> str:
        return f"{self.prefix}recent:{group}\x1f{start:.3f}"

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
