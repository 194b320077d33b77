-- ack.lua with each acked job's finished-job record (done_record.lua), all in one: acknowledge
-- and delete the entries this consumer still owns, count them processed, write their records
-- (and drop the records past keep_ms / most), and delete the end-of-job keys of those acked.
-- KEYS: jobs, stats, the records' index, then ARGV[6] record buckets[, end-of-job key...].
-- ARGV: group, consumer, keep_ms, most, n, ring, then n ids, n job ids, n "TOOK_MS DELIVERIES"
-- (in the ids' order; an empty job id: no record)[, then for each end-of-job key, in order, the id whose end deletes it].
-- Returns the ids it did not own.
local n = tonumber(ARGV[5])
local ring = tonumber(ARGV[6])
local ends = #KEYS - 3 - ring
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 7, 6 + n)
if #mine == 0 then
  return lost
end
-- Every id owned (the common case): no lookup table needed.
local acked = nil
if #lost > 0 or ends > 0 then
  acked = {}
  for _, id in ipairs(mine) do
    acked[id] = true
  end
end
local jobs, figures = {}, {}
for i = 1, n do
  if (acked == nil or acked[ARGV[6 + i]]) and ARGV[6 + n + i] ~= '' then
    jobs[#jobs + 1] = ARGV[6 + n + i]
    figures[#figures + 1] = ARGV[6 + 2 * n + i]
  end
end
-- The records first: a script's writes before an error stay, so a failing write here (an
-- out-of-memory server) must fail the call before anything is acked (the ack is sent again).
local buckets = {unpack(KEYS, 4, 3 + ring)}
record_done(KEYS[3], buckets, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[2], jobs, figures)
for i = 1, #mine, 1000 do
  local last = math.min(i + 999, #mine)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, last))
  redis.call('XDEL', KEYS[1], unpack(mine, i, last))
end
redis.call('HINCRBY', KEYS[2], 'processed', #mine)
local base = 6 + 3 * n
for j = 1, ends do
  if acked[ARGV[base + j]] then
    redis.call('DEL', KEYS[3 + ring + j])
  end
end
return lost
