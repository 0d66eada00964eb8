-- Shared by apply.lua and close.lua (prepended to each): the watermark, and releasing
-- join outcomes in event-time order. Keys are built from the prefix P = ARGV[1]; every
-- family is listed in govloop/stores/redis/keys.py.

-- the slowest active input partition's event time; nil when no partition is active
-- (idle); -inf while an input partition named from ARGV[first] on has not delivered in
-- the first `idle` seconds after input began (a backlog read partition by partition).
-- `ends` is what the caller knows of input progress: nil, nothing (a partition is active
-- while it delivered within `idle` seconds of wall time); false, progress unknown (the
-- broker does not answer: every partition is active, so only event time closes); or a
-- table of each partition's end offset in Kafka (a partition with records not yet
-- applied is active however long ago it delivered, so a stalled worker, a broker outage
-- or a backlog never looks like idle input). Unknown progress also holds every window
-- while a partition named from ARGV[first] on has not delivered (a rebuilt state).
local function watermark(P, idle, now, first, ends)
  local mark = nil
  local times = redis.call('HGETALL', P .. 'ptime')
  local done = {}
  if ends then
    local applied = redis.call('HGETALL', P .. 'offsets')
    for i = 1, #applied, 2 do done[applied[i]] = tonumber(applied[i + 1]) end
    for tp, e in pairs(ends) do
      -- records waiting in Kafka on a partition that never delivered: hold every window
      if e > (done[tp] or -1) + 1 and redis.call('HEXISTS', P .. 'ptime', tp) == 0 then
        return -math.huge
      end
    end
  end
  for i = 1, #times, 2 do
    local tp = times[i]
    local active = ends == false
    if not active then
      local wall = tonumber(redis.call('HGET', P .. 'pwall', tp) or '0')
      active = now - wall <= idle
      if not active and ends then
        local e = ends[tp]
        active = e ~= nil and e > (done[tp] or -1) + 1
      end
    end
    if active then
      local t = tonumber(times[i + 1])
      if mark == nil or t < mark then mark = t end
    end
  end
  local began = tonumber(redis.call('GET', P .. 'first_input') or '0')
  -- progress unknown: a partition that has not delivered may hold anything, as it does
  -- in the first `idle` seconds after input began
  if ends == false and mark == nil then return -math.huge end
  if mark ~= nil and (ends == false or now - began <= idle) then
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
