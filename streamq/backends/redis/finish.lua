-- The end of owned jobs that hold a unique key: ack, delete and count each, release its key
-- (or keep it unique_for ms more) if the key still names that job, delete its end-of-job key
-- when it has one (a job's step progress), and with keep_ms > 0 write their finished-job
-- records (done_record.lua) — all or nothing.
-- ARGV: group, consumer, keep_ms (0: no records), most, refresh_ms, n, then n ids[, then with
-- keep_ms > 0 the records: one line per id, in the ids' order].
-- KEYS: jobs, stats[, the `finished` stream and its marks: with keep_ms > 0], then one unique
-- key per id (in the order of the ids), then either nothing or one end-of-job key per id (in
-- the same order).
-- Returns the ids the consumer no longer owns (nothing changed for those).
local keep_ms = tonumber(ARGV[3])
local n = tonumber(ARGV[6])
local k = 2
if keep_ms > 0 then
  k = 4
end
local mine, lost, all = owned_split(KEYS[1], ARGV[1], ARGV[2], 7, 6 + n)
if #mine == 0 then
  return lost
end
local owned = {}
for _, id in ipairs(mine) do
  owned[id] = true
end
local ends = #KEYS - k - n > 0
if keep_ms > 0 then
  -- The records first: a script's writes before an error stay, so a write
  -- the server refuses must fail the call before anything is acked (the ack is sent again).
  local records = ARGV[7 + n]
  if not all then
    records = owned_records(records, 7, lost)
  end
  record_done(KEYS[3], KEYS[4], KEYS[2], ARGV[2], keep_ms, tonumber(ARGV[4]), tonumber(ARGV[5]),
    records, #mine)
end
for i = 1, n do
  local id = ARGV[6 + i]
  if owned[id] then
    local e = redis.call('XRANGE', KEYS[1], id, id)
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    if e[1] then
      release_unique(KEYS[k + i], e[1][2])
    end
    if ends then
      redis.call('DEL', KEYS[k + n + i])
    end
  end
end
redis.call('HINCRBY', KEYS[2], 'processed', #mine)
return lost
