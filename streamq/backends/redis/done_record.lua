-- Shared head of the scripts that ack finished jobs with their records (ack_done.lua,
-- finish.lua): put in front of those that call record_done (ScriptRegistry.get, _scripts.py).
--
-- The records live in a ring of RING hashes (job id -> "AT_MS TOOK_MS DELIVERIES CONSUMER"),
-- all in the stream's slot: `buckets` (their keys, in ring order) and `index` (a small hash:
-- `cur`, the bucket written now; `at`, when it was started; `b<i>`, "LAST_WRITE_MS COUNT" of
-- each bucket). Writing costs one HSET per call for all its records: no per-record index.
-- The current bucket is left for the next one (which is emptied first) once it is older than
-- keep_ms / (RING - 1) or holds most / (RING - 1) records. Then the oldest buckets are deleted
-- while the records kept number more than `most`. A bucket expires keep_ms after its last
-- write, so a record is kept at least keep_ms (unless the cap drops it), and a type no one
-- serves any more keeps nothing for longer than that.
-- `jobs` holds the job ids, `figures` the "TOOK_MS DELIVERIES" of each.
local function record_done(index, buckets, keep_ms, most, consumer, jobs, figures)
  local n = #jobs
  if n == 0 then
    return
  end
  local ring = #buckets
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local rows = redis.call('HGETALL', index)
  local meta = {}
  for i = 1, #rows, 2 do
    meta[rows[i]] = rows[i + 1]
  end
  local counts = {}
  for i = 1, ring do
    counts[i] = 0
    local b = meta['b' .. i]
    if b then
      local last, count = string.match(b, '^(%d+) (%d+)$')
      if last and tonumber(last) + keep_ms > now then
        counts[i] = tonumber(count)
      end
    end
  end
  local cur = tonumber(meta['cur'] or '1') or 1
  local at = tonumber(meta['at'] or '')
  local width = math.max(1, math.floor(keep_ms / (ring - 1)))
  local share = math.max(1, math.ceil(most / (ring - 1)))
  if at == nil then
    at = now
  elseif counts[cur] >= share or now - at >= width then
    cur = cur % ring + 1
    redis.call('DEL', buckets[cur])
    counts[cur] = 0
    at = now
  end
  local h = {}
  for i = 1, n do
    h[2 * i - 1] = jobs[i]
    h[2 * i] = now .. ' ' .. figures[i] .. ' ' .. consumer
  end
  -- unpack() fails above about 8000 values (Lua's C stack): 1000 records to a call.
  for i = 1, 2 * n, 2000 do
    redis.call('HSET', buckets[cur], unpack(h, i, math.min(i + 1999, 2 * n)))
  end
  redis.call('PEXPIRE', buckets[cur], keep_ms)
  counts[cur] = counts[cur] + n
  local total = 0
  for i = 1, ring do
    total = total + counts[i]
  end
  local j = cur % ring + 1
  while total > most and j ~= cur do
    if counts[j] > 0 then
      redis.call('DEL', buckets[j])
      total = total - counts[j]
      counts[j] = 0
    end
    j = j % ring + 1
  end
  local out = {'cur', cur, 'at', at}
  for i = 1, ring do
    local last = 0
    if i == cur then
      last = now
    elseif counts[i] > 0 then
      last = string.match(meta['b' .. i], '^(%d+)')
    end
    out[#out + 1] = 'b' .. i
    out[#out + 1] = last .. ' ' .. counts[i]
  end
  redis.call('HSET', index, unpack(out))
  redis.call('PEXPIRE', index, keep_ms)
end
