-- Claim the windows that are due (the watermark, or no input for `idle` seconds, is past
-- their end plus `grace`), and the join outcomes the watermark releases. A claim that is
-- not acknowledged within `retry` seconds is claimed again (a crashed closer).

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
