-- Shared head of the scripts that ack finished jobs with their records (ack_done.lua,
-- finish.lua): put in front of those that call record_done (ScriptRegistry.get, _scripts.py),
-- with member.lua (server_ms) in front of it.
--
-- A stream's finished-job records are one more stream, `finished`, in its slot: one entry per
-- ack call, written by the ack itself. Its fields: `c` the consumer, `k` how long its records
-- are kept (ms), `r` the records, "\nJOB_ID TOOK_MS DELIVERIES" per acked job (the job id
-- percent-encoded where it holds a space, a line break or a percent sign). The entry's id is
-- when the jobs ended (the server's clock). The client builds `r` whole: the script copies it
-- as one value (building it here, or a hash field per job, cost the server two to ten times
-- what the ack itself costs: benchmarks/README.md, "Server cost per job").
--
-- The cap counts records with the stream's `processed` counter (every acked job, a record or
-- not): each time it passes a multiple of most / 8, the entry written is noted in the small
-- hash `marks` (fields 0 to 8, a ring), and the entries older than the mark noted seven steps
-- before are trimmed (XADD's MINID: the ACL line of docs/security.md has no XTRIM). So
-- between 7/8 of `most` and `most` records stay, give or take the jobs of one ack. The time:
-- with `refresh` (the client asks for it once per slack, an eighth of keep_ms / 8), the key
-- expires refresh ms later and the entries older than keep_ms go; a reader also takes a
-- record older than its own `k` for gone.
local function record_done(finished, marks, stats, consumer, keep_ms, most, refresh, records, m)
  -- The count after this ack (counted by the caller after the ack: a command refused there,
  -- an XACK an ACL forbids, must not leave the jobs counted twice when the ack goes again).
  local p = (tonumber(redis.call('HGET', stats, 'processed')) or 0) + m
  if not string.find(records, '[^\n]') then  -- no acked job has a record
    return
  end
  -- The cap in `ring` steps of `step` records (eight, fewer for a cap under eight).
  local ring = math.max(1, math.min(8, most))
  local step = math.max(1, math.floor(most / ring))
  local at = math.floor(p / step)
  local before = math.floor((p - m) / step)
  local minid = nil
  if at ~= before then
    -- Keep the entries from the one written as the count passed step at - (ring - 1) on.
    local from = at - (ring - 1)
    if from > before then  -- this ack alone passed it: keep only its own entry
      minid = server_ms()
    elseif from > 0 then
      minid = redis.call('HGET', marks, from % 9)
    end
  end
  if refresh > 0 then
    local old = server_ms() - keep_ms
    local mark = minid and tonumber(string.match(minid, '^(%d+)')) or nil
    if mark == nil or mark < old then
      minid = old
    end
  end
  -- The first write: a server out of memory refuses it, before anything is acked.
  local id
  if minid then
    id = redis.call('XADD', finished, 'MINID', minid, '*', 'c', consumer, 'k', keep_ms, 'r',
      records)
  else
    id = redis.call('XADD', finished, '*', 'c', consumer, 'k', keep_ms, 'r', records)
  end
  if at ~= before then
    -- Every step this ack passed begins at its entry (at most the ring's nine).
    local noted = {}
    for j = math.max(before + 1, at - 8), at do
      noted[#noted + 1] = j % 9
      noted[#noted + 1] = id
    end
    redis.call('HSET', marks, unpack(noted))
    redis.call('PEXPIRE', marks, keep_ms + math.floor(keep_ms / 64) + 1)
  end
  if refresh > 0 then
    redis.call('PEXPIRE', finished, refresh)
    redis.call('PEXPIRE', marks, refresh)
  end
end

-- The records of the ids from ARGV[first] on that are not in `lost` (one line
-- of `records` per id, in their order; an empty line: no record).
local function owned_records(records, first, lost)
  local gone = {}
  for _, id in ipairs(lost) do
    gone[id] = true
  end
  local kept, i = {}, first
  for line in string.gmatch(records, '\n([^\n]*)') do
    if line ~= '' and not gone[ARGV[i]] then
      kept[#kept + 1] = line
    end
    i = i + 1
  end
  if #kept == 0 then
    return ''
  end
  return '\n' .. table.concat(kept, '\n')
end
