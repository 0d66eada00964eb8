-- Claim the windows that are due (the watermark, or no input for `idle` seconds, is past
-- their end plus `grace`), and the join outcomes the watermark releases. A claim that is
-- not acknowledged within `retry` seconds is claimed again (a crashed closer).
-- ARGV: prefix, grace, idle, join horizon, retry, input progress ('' not known to the
-- caller, '?' unknown, else a JSON object of end offsets by partition), then the input
-- partitions the watermark waits for.

local P = ARGV[1]
local grace = tonumber(ARGV[2])
local idle = tonumber(ARGV[3])
local horizon = math.floor(tonumber(ARGV[4]))
local retry = tonumber(ARGV[5])
local ends = nil
if ARGV[6] == '?' then ends = false elseif ARGV[6] ~= '' then ends = cjson.decode(ARGV[6]) end
local now = tonumber(redis.call('TIME')[1])
local mark = watermark(P, idle, now, 7, ends)
local limit = '+inf'  -- idle: close everything, release every waiting outcome
if mark ~= nil then limit = tostring(mark - grace) end
local claimed, listed = {}, {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'open', '-inf', limit)) do
  redis.call('ZREM', P .. 'open', member)
  redis.call('SET', P .. 'closed:' .. member, 1, 'EX', horizon)
  local src = P .. 'win:' .. member
  local dst = P .. 'closing:' .. member
  if redis.call('EXISTS', src) == 1 then
    if redis.call('EXISTS', dst) == 1 then
      -- an amendment of a window whose claim is not acknowledged yet: one claim of both
      local fields = redis.call('HGETALL', src)
      for i = 1, #fields, 2 do redis.call('HINCRBY', dst, fields[i], fields[i + 1]) end
      redis.call('DEL', src)
    else
      redis.call('RENAME', src, dst)
    end
    table.insert(claimed, member)
    listed[member] = true
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'closing', '-inf', now - retry)) do
  if not listed[member] then table.insert(claimed, member) end
end
local out = {release(P, mark)}
for _, member in ipairs(claimed) do
  redis.call('ZADD', P .. 'closing', now, member)
  table.insert(out, member)
  table.insert(out, redis.call('HGETALL', P .. 'closing:' .. member))
end
return out
