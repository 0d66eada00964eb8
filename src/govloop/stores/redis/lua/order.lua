-- Shared by apply.lua and close.lua (prepended to each): the watermark, and releasing
-- join outcomes in event-time order. Keys are built from the prefix P = ARGV[1]; every
-- family is listed in govloop/stores/redis/keys.py.

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
