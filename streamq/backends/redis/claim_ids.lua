-- Claim given entries by id when idle at least min_idle (a due retry of this worker's): what a
-- recovery pass would do, without scanning the PEL to find them. Without JUSTID, XCLAIM counts
-- the delivery. An entry deleted from the stream is dropped from the PEL by XCLAIM (Redis 7+)
-- and listed as deleted. KEYS: jobs. ARGV: group, consumer, min_idle_ms, id...
-- Returns {entries, deleted_ids, delivery_counts}.
local entries, deleted, counts = {}, {}, {}
local min_idle = tonumber(ARGV[3])
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and tonumber(p[1][3]) >= min_idle then
    local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
    if r[1] and r[1][1] then
      entries[#entries + 1] = r[1]
      counts[#counts + 1] = tonumber(p[1][4]) + 1
    else
      deleted[#deleted + 1] = id
    end
  end
end
return {entries, deleted, counts}
