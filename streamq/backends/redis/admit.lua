-- Flow control's admission of deliveries just read (or claimed), atomically for one stream.
-- KEYS: jobs, stats, index (key value -> jobs running + held), later (the rate queue), then per
-- delivery three: its key's slots (sorted set: entry id -> lease expiry ms), its key's held
-- jobs (list of packed members), its rate's state (the next start, GCRA's TAT, ms).
-- ARGV: group, lease_ms, concurrency, interval_ms, tolerance_ms, the same two for a type-wide
-- rate (shared out among a partitioned type's streams), then per delivery five:
-- entry id, the id callers see (the slot's member: a type's levels share the slots), key value, what applies ('c' the key's limit, 'r' the rate, 'ra' the type-wide
-- rate, 'cr'/'cra' both), the
-- deliveries before this one.
-- Per delivery, in order: 'run' (its slot taken, or held already; its start taken), 'wait'
-- (its key is full: moved to the key's list), a due time in ms (over the rate: moved to the
-- rate queue, its start reserved: the member carries 'rated'), or 'gone' (not pending).
local group, lease = ARGV[1], tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local now = server_ms()
local out = {}

-- Per call, each key's expired slots are swept once and each rate's state read and written
-- once (a batch is mostly of few keys): the rates' next starts, by key.
local swept, rates = {}, {}

-- Expired slots (a worker that died) go, and the index forgets them.
local function sweep(slots, kv)
  if swept[slots] then
    return
  end
  swept[slots] = true
  local gone = redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if gone > 0 then
    if tonumber(redis.call('ZINCRBY', KEYS[3], -gone, kv)) <= 0 then
      redis.call('ZREM', KEYS[3], kv)
    end
  end
end

-- The entry's fields packed as a held member (the tag first), deliveries set to before.
local function hold(id, before, extra)
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if not e[1] or redis.call('XACK', KEYS[1], group, id) == 0 then
    return nil
  end
  local parts = {packed('h' .. id)}
  local f = e[1][2]
  for i = 1, #f, 2 do
    if f[i] ~= 'deliveries' then
      parts[#parts + 1] = packed(f[i])
      parts[#parts + 1] = packed(f[i + 1])
    end
  end
  if before ~= '0' then
    parts[#parts + 1] = packed('deliveries')
    parts[#parts + 1] = packed(before)
  end
  if extra then
    parts[#parts + 1] = packed(extra)
    parts[#parts + 1] = packed('1')
  end
  redis.call('XDEL', KEYS[1], id)
  return table.concat(parts)
end

for i = 0, (#ARGV - 7) / 5 - 1 do
  local at = 8 + 5 * i
  local id, ref, kv, mode, before = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local slots, held, rate = KEYS[5 + 3 * i], KEYS[6 + 3 * i], KEYS[7 + 3 * i]
  local verdict = 'run'
  local limited = string.find(mode, 'c', 1, true)
  local has_slot = false
  if limited then
    sweep(slots, kv)
    has_slot = redis.call('ZSCORE', slots, ref) ~= false
    if not has_slot and redis.call('ZCARD', slots) >= limit then
      local member = hold(id, before, nil)
      if member then
        redis.call('RPUSH', held, member)
        redis.call('ZINCRBY', KEYS[3], 1, kv)
        redis.call('HINCRBY', KEYS[2], 'held', 1)
        verdict = 'wait'
      else
        verdict = 'gone'
      end
    end
  end
  if verdict == 'run' and string.find(mode, 'r', 1, true) then
    local interval, tolerance = tonumber(ARGV[4]), tonumber(ARGV[5])
    if string.find(mode, 'a', 1, true) then
      interval, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7])
    end
    local tat = rates[rate]
    if tat == nil then
      tat = tonumber(redis.call('GET', rate) or '0')
    end
    if tat < now then
      tat = now
    end
    local due = tat - tolerance
    -- Starts are timed to the millisecond (the clock of TIME here): one due within this
    -- millisecond starts now.
    if due >= now + 1 then
      local member = hold(id, before, 'rated')
      if member then
        redis.call('ZADD', KEYS[4], string.format('%d', due), member)
        verdict = string.format('%d', due)
      else
        verdict = 'gone'
      end
    end
    if verdict ~= 'gone' then
      rates[rate] = tat + interval
    end
  end
  if verdict == 'run' and limited and not has_slot then
    redis.call('ZADD', slots, now + lease, ref)
    redis.call('ZINCRBY', KEYS[3], 1, kv)
  elseif verdict == 'run' and has_slot then
    redis.call('ZADD', slots, 'XX', now + lease, ref)
  end
  out[#out + 1] = verdict
end
for rate, nxt in pairs(rates) do
  redis.call('SET', rate, string.format('%.3f', nxt), 'PX', math.max(1, math.ceil(nxt - now)))
end
return out
