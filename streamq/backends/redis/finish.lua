-- The end of owned jobs that hold a unique key: ack, delete and count each, release its key
-- (or keep it unique_for ms more) if the key still names that job, delete its end-of-job key
-- when it has one (a job's step progress), and with keep_ms > 0 write its finished-job record
-- (done_record.lua) — all or nothing.
-- ARGV: group, consumer, keep_ms (0: no records), most, ring, n ids[, then with keep_ms > 0, n
-- job ids and n "TOOK_MS DELIVERIES", in the ids' order].
-- KEYS: jobs, stats[, the records' index and `ring` record buckets: with keep_ms > 0], then one
-- unique key per id (in the order of the ids), then either nothing or one end-of-job key per id
-- (in the same order).
-- Returns the ids the consumer no longer owns (nothing changed for those).
local keep_ms = tonumber(ARGV[3])
local ring = tonumber(ARGV[5])
local n = #ARGV - 5
local k = 2
if keep_ms > 0 then
  n = n / 3
  k = 3 + ring
end
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 6, 5 + n)
local owned = {}
for _, id in ipairs(mine) do
  owned[id] = true
end
local ends = #KEYS - k - n > 0
if keep_ms > 0 and #mine > 0 then
  -- The records first: a script's writes before an error stay, so a failing write here must
  -- fail the call before anything is acked (the ack is sent again).
  local jobs, figures = {}, {}
  for i = 1, n do
    if owned[ARGV[5 + i]] and ARGV[5 + n + i] ~= '' then
      jobs[#jobs + 1] = ARGV[5 + n + i]
      figures[#figures + 1] = ARGV[5 + 2 * n + i]
    end
  end
  local buckets = {unpack(KEYS, 4, 3 + ring)}
  record_done(KEYS[3], buckets, keep_ms, tonumber(ARGV[4]), ARGV[2], jobs, figures)
end
local acked = 0
for i = 1, n do
  local id = ARGV[5 + i]
  if owned[id] then
    local e = redis.call('XRANGE', KEYS[1], id, id)
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    acked = acked + 1
    if e[1] then
      release_unique(KEYS[k + i], e[1][2])
    end
    if ends then
      redis.call('DEL', KEYS[k + n + i])
    end
  end
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[2], 'processed', acked)
end
return lost
