-- httpower: every limiter decision as one atomic call.
--
-- The algorithms are the ones documented in httpower_core::rate (gcra.rs, sliding.rs,
-- fixed.rs), ported to integer microseconds. The shared test vectors check that this
-- script and the in-memory store decide alike.
--
-- Calling convention
--   KEYS[i]   the state key of check i ("prefix:{limiter:identifier}")
--   ARGV[1]   the time in microseconds, or "" to read the server's TIME (production)
--   ARGV[2]   the operation:
--               "all"     admit iff every check admits; then charge all, else none
--               "any"     admit iff one check admits; charge only the first that does
--               "dry"     evaluate every check as "all" would, charge nothing
--               "refund"  give back the cost of each check (undo of a cross-slot charge)
--               "acquire" take a concurrency lease   (ARGV[3] max, ARGV[4] lease µs,
--                                                     ARGV[5] lease id)
--               "release" give a lease back          (ARGV[3] lease id)
--   ARGV[3..] for "all", "any" and "refund": four fields per check,
--               algorithm ("g" GCRA, "s" sliding window, "f" fixed window),
--               a (GCRA: emission interval µs; windows: window µs),
--               b (GCRA: burst; windows: limit),
--               cost (0 inspects: nothing is written)
--
-- Reply for "all", "any" and "dry": { admitted, then per check: allowed, remaining,
-- reset_after µs, retry_after µs }. "acquire" replies { admitted, remaining }.
--
-- Numbers are Lua doubles: exact below 2^53, which covers microsecond timestamps and
-- every product below as long as limit × window (µs) stays under 2^53 (a limit of
-- 100,000 per day does). Keys are written with string.format('%d') because Lua's own
-- number-to-string conversion keeps only 14 digits.

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function ms(us)
  -- TTLs in whole milliseconds, rounded up, never zero.
  local m = math.ceil(us / 1000)
  if m < 1 then m = 1 end
  return m
end

-- Splits `now` into the aligned window index and the time into it, exactly:
-- fmod is exact on doubles, and (now - e) is a multiple of w.
local function window_of(w)
  local e = math.fmod(now, w)
  return (now - e) / w, e
end

-- Each algorithm returns its decision and a function that stores the new state.

local function gcra(key, t, burst, cost)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  local cap = t * burst
  local base = math.max(tat, now)
  local new = base + cost * t
  local function remaining(x)
    local r = cap - (x - now)
    if r < 0 then r = 0 end
    return math.floor(r / t)
  end
  if new - now <= cap then
    return { 1, remaining(new), new - now, 0 }, function()
      redis.call('SET', key, string.format('%d', new), 'PX', ms(new - now))
    end
  end
  return { 0, remaining(base), base - now, new - now - cap }, nil
end

local function parse(raw, n)
  local out = {}
  if raw then
    for field in string.gmatch(raw, '[^:]+') do
      out[#out + 1] = tonumber(field) or 0
    end
  end
  for i = #out + 1, n do out[i] = 0 end
  return out
end

local function sliding(key, w, limit, cost)
  local s = parse(redis.call('GET', key), 3)
  local window, e = window_of(w)
  local prev, curr = s[2], s[3]
  if window == s[1] + 1 then
    prev, curr = curr, 0
  elseif window ~= s[1] then
    prev, curr = 0, 0
  end
  local cap = limit * w
  local decayed = prev * (w - e)
  local function remaining(c)
    local r = cap - decayed - c * w
    if r < 0 then r = 0 end
    return math.floor(r / w)
  end
  local function reset(c)
    if c > 0 then return 2 * w - e end
    if prev > 0 then return w - e end
    return 0
  end
  if decayed + (curr + cost) * w <= cap then
    local c = curr + cost
    return { 1, remaining(c), reset(c), 0 }, function()
      redis.call('SET', key, string.format('%d:%d:%d', window, prev, c), 'PX', ms(reset(c)))
    end
  end
  local retry
  if curr + cost <= limit then
    local room = (limit - curr - cost) * w
    local fit = w - math.min(math.floor(room / math.max(prev, 1)), w)
    retry = math.max(fit - e, 0)
  else
    local room = (limit - cost) * w
    local fit = w - math.min(math.floor(room / math.max(curr, 1)), w)
    retry = (w - e) + fit
  end
  return { 0, remaining(curr), reset(curr), retry }, nil
end

local function fixed(key, w, limit, cost)
  local s = parse(redis.call('GET', key), 2)
  local window, e = window_of(w)
  local count = s[2]
  if window ~= s[1] then count = 0 end
  local reset = w - e
  if count + cost <= limit then
    local c = count + cost
    return { 1, limit - c, reset, 0 }, function()
      redis.call('SET', key, string.format('%d:%d', window, c), 'PX', ms(reset))
    end
  end
  return { 0, limit - count, reset, reset }, nil
end

local algorithms = { g = gcra, s = sliding, f = fixed }

local function evaluate(i, cost)
  local base = 3 + (i - 1) * 4
  local run = algorithms[ARGV[base]]
  if not run then
    return redis.error_reply('httpower: unknown algorithm ' .. tostring(ARGV[base]))
  end
  return run(KEYS[i], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), cost)
end

local function cost_of(i)
  return tonumber(ARGV[3 + (i - 1) * 4 + 3])
end

local op = ARGV[2]

if op == 'all' or op == 'any' or op == 'dry' then
  local n = #KEYS
  local decisions, writers = {}, {}
  local admitted_all, first = true, nil
  for i = 1, n do
    local d, write = evaluate(i, cost_of(i))
    if d.err then return d end
    decisions[i], writers[i] = d, write
    if d[1] == 1 then
      if not first then first = i end
    else
      admitted_all = false
    end
  end
  local admitted
  if op == 'any' then admitted = first ~= nil else admitted = admitted_all end
  local reply = { admitted and 1 or 0 }
  for i = 1, n do
    local charged
    if op == 'all' then
      charged = admitted
    elseif op == 'any' then
      charged = (i == first)
    else
      charged = false
    end
    local d = decisions[i]
    if charged then
      if cost_of(i) > 0 and writers[i] then writers[i]() end
    elseif d[1] == 1 then
      -- Admitted alone but not charged: report the unchanged state.
      d = evaluate(i, 0)
    end
    for j = 1, 4 do reply[#reply + 1] = d[j] end
  end
  return reply
end

if op == 'refund' then
  for i = 1, #KEYS do
    local base = 3 + (i - 1) * 4
    local kind, a, cost = ARGV[base], tonumber(ARGV[base + 1]), cost_of(i)
    local key = KEYS[i]
    local raw = redis.call('GET', key)
    if raw and cost > 0 then
      if kind == 'g' then
        local tat = (tonumber(raw) or 0) - cost * a
        if tat <= now then
          redis.call('DEL', key)
        else
          redis.call('SET', key, string.format('%d', tat), 'PX', ms(tat - now))
        end
      elseif kind == 's' then
        local s = parse(raw, 3)
        redis.call('SET', key, string.format('%d:%d:%d', s[1], s[2], math.max(s[3] - cost, 0)),
          'KEEPTTL')
      elseif kind == 'f' then
        local s = parse(raw, 2)
        redis.call('SET', key, string.format('%d:%d', s[1], math.max(s[2] - cost, 0)), 'KEEPTTL')
      end
    end
  end
  return { 1 }
end

if op == 'acquire' then
  local key, max, lease, id = KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
  -- Leases that ran out belong to holders that vanished: their slots are free again.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
  local held = redis.call('ZCARD', key)
  if held >= max then
    return { 0, 0 }
  end
  redis.call('ZADD', key, string.format('%d', now + lease), id)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, ms(tonumber(last[2]) - now))
  return { 1, max - held - 1 }
end

if op == 'release' then
  local key = KEYS[1]
  redis.call('ZREM', key, ARGV[3])
  if redis.call('ZCARD', key) == 0 then
    redis.call('DEL', key)
  end
  return { 1 }
end

return redis.error_reply('httpower: unknown operation ' .. tostring(op))
