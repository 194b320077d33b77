-- Shutdown hand-back: the owned entries become claimable at once (idle idle_ms), and the
-- delivery that was interrupted does not count (RETRYCOUNT n - 1, XCLAIM sets the count): a
-- rolling restart is not a failed delivery, so it never dead-letters a long job.
-- One XCLAIM per id (each keeps its own count), so no id list is unpacked whole.
-- KEYS: jobs. ARGV: group, consumer, idle_ms, id... Returns how many it handed back.
local mine = owned_split(KEYS[1], ARGV[1], ARGV[2], 4)
for _, id in ipairs(mine) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local n = p[1] and tonumber(p[1][4]) or 1
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id,
    'IDLE', ARGV[3], 'RETRYCOUNT', math.max(n - 1, 0), 'JUSTID')
end
return #mine
