-- ack.lua with each acked job's finished-job record (done_record.lua), all in one: acknowledge
-- and delete the entries this consumer still owns, count them processed, write their records
-- as one entry of the `finished` stream, and delete the end-of-job keys of those acked.
-- KEYS: jobs, stats, finished, its marks[, end-of-job key...].
-- ARGV: group, consumer, keep_ms, most, refresh_ms (0: none this time), n, then n ids, the
-- records (one line per id, in the ids' order: done_record.lua)[, then for each end-of-job key,
-- in order, the id whose end deletes it].
-- Returns the ids it did not own.
local n = tonumber(ARGV[6])
local ends = #KEYS - 4
local mine, lost, all = owned_split(KEYS[1], ARGV[1], ARGV[2], 7, 6 + n)
if #mine == 0 then
  return lost
end
local records = ARGV[7 + n]
if not all then
  records = owned_records(records, 7, lost)
end
-- The records first: a script's writes before an error stay, so a write the
-- server refuses (out of memory) must fail the call before anything is acked (it goes again).
local keep_ms, most, refresh = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
record_done(KEYS[3], KEYS[4], KEYS[2], ARGV[2], keep_ms, most, refresh, records, #mine)
for i = 1, #mine, 1000 do
  local last = math.min(i + 999, #mine)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, last))
  redis.call('XDEL', KEYS[1], unpack(mine, i, last))
end
redis.call('HINCRBY', KEYS[2], 'processed', #mine)
if ends > 0 then
  local acked = {}
  for _, id in ipairs(mine) do
    acked[id] = true
  end
  local base = 7 + n
  for j = 1, ends do
    if acked[ARGV[base + j]] then
      redis.call('DEL', KEYS[4 + j])
    end
  end
end
return lost
