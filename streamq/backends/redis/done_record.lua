-- Shared head of the scripts that ack finished jobs with their records (ack_done.lua,
-- finish.lua): put in front of those that call record_done (ScriptRegistry.get, _scripts.py).
--
-- The records live in a ring of hashes (job id -> "AT_MS TOOK_MS DELIVERIES CONSUMER"), all in
-- the stream's slot: `buckets` (their keys, in ring order) and `index` (a small hash: `cur`,
-- the bucket written now; `at`, when it was started; `n<i>`, how many records bucket i got;
-- `total`, their sum). A call reads the index once (HGETALL), writes all its records with one
-- HSET and the index with another, and refreshes two expiries: no per-record index.
-- The current bucket is left for the next one (which is emptied first) once it is older than
-- keep_ms / (RING - 1) or holds most / (RING - 1) records. Once the total passes `most`, the
-- oldest buckets are deleted until it does not. A bucket expires keep_ms after its last write
-- (the total may then count records already gone: the deletion walks past those buckets, which
-- corrects it), so a record is kept at least keep_ms unless the cap drops it, and a type no
-- one serves any more keeps nothing for much longer than that.
-- The expiries are not set on every call: the bucket and the index get keep_ms + slack (slack:
-- an eighth of a bucket's span), noted as `x` in the index, and again only once that is slack
-- old (or the bucket changed). A record written at most slack after `x` therefore still has at
-- least keep_ms to live, and most calls make two commands fewer.
-- `jobs` holds the job ids, `figures` the "TOOK_MS DELIVERIES" of each.
local function record_done(index, buckets, keep_ms, most, consumer, jobs, figures)
  local n = #jobs
  if n == 0 then
    return
  end
  local ring = #buckets
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- HGETALL, not HMGET: the ACL line of docs/security.md allows it (a dozen small fields).
  local rows = redis.call('HGETALL', index)
  local m = {}
  for i = 1, #rows, 2 do
    m[rows[i]] = rows[i + 1]
  end
  local cur = tonumber(m['cur']) or 1
  local at = tonumber(m['at'])
  local total = tonumber(m['total']) or 0
  local counts = {}
  for i = 1, ring do
    counts[i] = tonumber(m['n' .. i]) or 0
  end
  local out = {}
  local span = math.max(1, math.floor(keep_ms / (ring - 1)))
  local slack = math.max(1, math.floor(span / 8))
  local expiry_set = tonumber(m['x'])
  if at == nil or now - at >= span
      or counts[cur] >= math.max(1, math.ceil(most / (ring - 1))) then
    if at ~= nil then
      cur = cur % ring + 1
      redis.call('DEL', buckets[cur])
      total = total - counts[cur]
      counts[cur] = 0
    end
    at = now
    out = {'cur', cur, 'at', at}
    expiry_set = nil
  end
  local h = {}
  local head, tail = now .. ' ', ' ' .. consumer
  for i = 1, n do
    h[2 * i - 1] = jobs[i]
    h[2 * i] = head .. figures[i] .. tail
  end
  -- unpack() fails above about 8000 values (Lua's C stack): 1000 records to a call.
  for i = 1, 2 * n, 2000 do
    redis.call('HSET', buckets[cur], unpack(h, i, math.min(i + 1999, 2 * n)))
  end
  local refresh = expiry_set == nil or now - expiry_set >= slack
  if refresh then
    redis.call('PEXPIRE', buckets[cur], keep_ms + slack)
    out[#out + 1] = 'x'
    out[#out + 1] = now
  end
  counts[cur] = counts[cur] + n
  total = total + n
  out[#out + 1] = 'n' .. cur
  out[#out + 1] = counts[cur]
  if total > most then
    local j = cur % ring + 1
    while total > most and j ~= cur do
      if counts[j] > 0 then
        redis.call('DEL', buckets[j])
        out[#out + 1] = 'n' .. j
        out[#out + 1] = 0
        total = total - counts[j]
        counts[j] = 0
      end
      j = j % ring + 1
    end
  end
  out[#out + 1] = 'total'
  out[#out + 1] = math.max(0, total)
  redis.call('HSET', index, unpack(out))
  if refresh then
    redis.call('PEXPIRE', index, keep_ms + slack)
  end
end
