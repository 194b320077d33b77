-- Recovery pass: XAUTOCLAIM entries idle at least min_idle, with their delivery counts.
-- KEYS: jobs. ARGV: group, consumer, min_idle_ms, cursor, count.
-- Returns {next_cursor, entries, deleted_ids, delivery_counts}.
-- Needs Redis >= 7.0 (or Valkey): the ids of deleted entries come in XAUTOCLAIM's third
-- element, which Redis 6.2 does not have (it leaves them in the PEL, so their dead references
-- would never be dropped).
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local entries, counts = {}, {}
for _, e in ipairs(r[2]) do
  -- Redis 7+ lists deleted entries in r[3]; skip a nil here all the same.
  if e and e[1] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    entries[#entries + 1] = e
    counts[#counts + 1] = p[1] and p[1][4] or 1
  end
end
return {r[1], entries, r[3] or {}, counts}
