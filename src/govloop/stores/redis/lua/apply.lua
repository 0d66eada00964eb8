-- Apply one batch of prediction and feedback records (govloop/stores/redis/records.py
-- builds them; the slots read below are documented there). Skips records at or below a
-- partition's applied offset (a redelivered batch) and event ids seen within `dedupe`
-- seconds; joins predictions with feedback; adds to the window counters. An event whose
-- window has closed amends it (the window opens again, its `late` counter says by how
-- many events) while its partition's event time is at most `lateness` past the window's
-- end; later than that it is counted in the `late` hash, per window, and nowhere else.
-- ARGV: prefix, window size, join horizon, dedupe seconds, records (JSON), segment cap,
-- idle seconds, lateness, the state's epoch ('' to skip the check), then the input
-- partitions the watermark waits for.
-- Returns {new events, released outcomes (JSON), events too late to count}, or, applying
-- nothing, {-1, '', 0} when the state's marker is gone (Redis lost it) and {-2, the epoch
-- now, 0} when the state was rebuilt since the caller last looked.

local P = ARGV[1]
local size = tonumber(ARGV[2])
local horizon = math.floor(tonumber(ARGV[3]))
local dedupe = math.floor(tonumber(ARGV[4]))
local records = cjson.decode(ARGV[5])
local cap = tonumber(ARGV[6])
local idle = tonumber(ARGV[7])
local lateness = tonumber(ARGV[8])
local epoch = ARGV[9]
if epoch ~= '' then
  local current = redis.call('GET', P .. 'state')
  if not current then return {-1, '', 0} end
  if current ~= epoch then return {-2, current, 0} end
end
local now = tonumber(redis.call('TIME')[1])
local applied = 0
-- what a batch touches more than once is read once and written once, at the end:
-- offsets, event and wall times per partition, window counters, closed windows, late counts
local stored, offsets, ptimes, closed, counts, ends, late = {}, {}, {}, {}, {}, {}, {}
local outcomes = {}  -- {model, version, stream, 0 or 1, time, event id} per label or thumb
local reopened = {}  -- members of closed windows this batch amends
local dropped = 0  -- events too late to amend their window
local now_ptime = 0  -- the newest event time of the partition of the record being applied

local members = {}  -- model -> version -> slice -> window start -> member (formatted once)
local redirect = {}  -- member of a segment value over the cap -> its __other__ counters
local pvalues = {}  -- model -> version -> label -> a waiting prediction's join value (no slices)
local parsed = {}  -- a waiting prediction's join value -> its fields, decoded once per batch
local latency = {}  -- latency bucket -> its counter's field name

-- what the join key of a prediction holds while it waits for its feedback (its confidence
-- bin `cb` last; values written before bins existed have four slots): the same bytes for
-- every prediction of (m, v) with label plabel, bin cb and no slices, so encoded once per batch
local function waiting_value(m, v, plabel, slices, cb)
  if #slices > 0 then return 'p' .. cjson.encode({m, v, plabel, slices, cb}) end
  local by_version = pvalues[m]
  if by_version == nil then by_version = {}; pvalues[m] = by_version end
  local by_label = by_version[v]
  if by_label == nil then by_label = {}; by_version[v] = by_label end
  local lkey = plabel .. '\31' .. cb
  local value = by_label[lkey]
  if value == nil then
    value = 'p' .. cjson.encode({m, v, plabel, slices, cb})
    by_label[lkey] = value
  end
  return value
end

-- the counters of slice `sl` of (m, v) in the window holding t; nil if that window
-- closed more than `lateness` ago in event time (the event is counted late, once, for the
-- overall slice); a window closed more recently opens again, counting `late` events
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
    member = m .. '\31' .. v .. '\31' .. string.format('%.3f', w)
    if sl ~= '' then member = member .. '\31' .. sl end
    by_start[w] = member
  end
  local c = counts[member]
  if c == nil then
    if redirect[member] ~= nil then return redirect[member] end
    local shut = closed[member]
    if shut == nil then
      shut = redis.call('GET', P .. 'closed:' .. member)  -- '1', 'r' (rebuilt) or false
      closed[member] = shut
    end
    if shut == 'r' then
      return nil  -- its snapshot was stored before Redis lost the state: counted there
    elseif shut and now_ptime - (w + size) > lateness then
      if sl == '' then
        late[member] = (late[member] or 0) + 1
        dropped = dropped + 1
      end
      return nil
    elseif shut then
      reopened[member] = true
    elseif string.sub(sl, 1, 1) == 's' and string.sub(sl, -10) ~= '\30__other__' then
      -- a segment value gets its own snapshot while the window has fewer than `cap`
      local known = P .. 'slices:' .. m .. '\31' .. v .. '\31' .. string.format('%.3f', w)
      if redis.call('SISMEMBER', known, sl) == 0 then
        if redis.call('SCARD', known) >= cap then
          local name = string.sub(sl, 3, string.find(sl, '\30', 3, true) - 1)
          local other = slot(m, v, 's\30' .. name .. '\30__other__', t)
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
  if reopened[member] then c['late'] = (c['late'] or 0) + 1 end
  return c
end

local function inc(c, field, n)
  c[field] = (c[field] or 0) + (n or 1)
end

local function count_prediction(c, lat, conf, cb)
  if c == nil then return end
  inc(c, 'count')
  if lat ~= '' then
    local field = latency[lat]
    if field == nil then field = 'lat:' .. lat; latency[lat] = field end
    inc(c, field)
  end
  if conf ~= '' then inc(c, 'conf_n'); inc(c, 'conf_sum', conf) end
  if cb ~= '' then inc(c, 'cb:' .. cb) end  -- predictions per confidence bin
end

local function count_feedback(c, wrong, negative, cb)
  if c == nil then return end
  inc(c, 'feedback')
  if wrong ~= nil then
    inc(c, 'labelled')
    if wrong == 0 then inc(c, 'correct') end
    if cb ~= '' then  -- labelled and correct per confidence bin of the prediction
      inc(c, 'cl:' .. cb)
      if wrong == 0 then inc(c, 'cc:' .. cb) end
    end
  end
  if negative ~= nil then
    inc(c, 'judged')
    if negative == 0 then inc(c, 'positive') end
  end
end

-- feedback `eid` (label `flabel`, thumb `pos`, time t) joined to a prediction of (m, v)
-- whose confidence fell in bin cb ('' without one)
local function join(m, v, plabel, slices, cb, flabel, pos, t, eid)
  local wrong, negative = nil, nil
  if flabel ~= '' then
    if flabel == plabel then wrong = 0 else wrong = 1 end
    table.insert(outcomes, {m, v, 'error', wrong, t, eid})
  end
  if pos ~= '' then
    if pos == '1' then negative = 0 else negative = 1 end
    table.insert(outcomes, {m, v, 'negative', negative, t, eid})
  end
  count_feedback(slot(m, v, '', t), wrong, negative, cb)
  for _, sl in ipairs(slices) do count_feedback(slot(m, v, sl, t), wrong, negative, cb) end
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
    -- kind 'x': a record that was dead-lettered; only its offset counts as applied
    if kind ~= 'x' then
      local t = tonumber(r[6])
      if t > ptimes[tp] then ptimes[tp] = t end
      now_ptime = ptimes[tp]
      if redis.call('SET', P .. 'seen:' .. eid, 1, 'NX', 'EX', dedupe) then
        applied = applied + 1
        local jkey = P .. 'join:' .. r[5]
        if kind == 'p' then
          local m, v, plabel, lat, conf, slices = r[7], r[8], r[9], r[10], r[11], r[12]
          local cb = tostring(r[13] or '')
          count_prediction(slot(m, v, '', t), lat, conf, cb)
          for _, sl in ipairs(slices) do count_prediction(slot(m, v, sl, t), lat, conf, cb) end
          -- the prediction waits for its feedback; feedback that came first is joined now
          local before = redis.call('SET', jkey, waiting_value(m, v, plabel, slices, cb),
                                    'EX', horizon, 'GET')
          if before and string.sub(before, 1, 1) == 'f' then
            for _, f in ipairs(cjson.decode(string.sub(before, 2))) do
              join(m, v, plabel, slices, cb, f[1], f[2], f[3], f[4])
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
            join(p[1], p[2], p[3], p[4], tostring(p[5] or ''), flabel, pos, t, eid)
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
end
for member, c in pairs(counts) do
  local key = P .. 'win:' .. member
  for field, n in pairs(c) do redis.call('HINCRBY', key, field, n) end
  redis.call('ZADD', P .. 'open', ends[member], member)
end
for key, n in pairs(late) do redis.call('HINCRBY', P .. 'late', key, n) end
for tp, offset in pairs(offsets) do
  redis.call('HSET', P .. 'offsets', tp, offset)
  -- a partition that delivered only dead letters has no event time to hold windows with
  if ptimes[tp] >= 0 then redis.call('HSET', P .. 'ptime', tp, ptimes[tp]) end
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
  return {applied, '', dropped}  -- nothing waits: no watermark needed
end
local mark = watermark(P, idle, now, 10)
if mark == nil then return {applied, '', dropped} end
return {applied, release(P, mark), dropped}
