-- Remove a consumer from the group if it holds no pending entry (a clean worker exit).
-- KEYS: jobs. ARGV: group, consumer. Returns 1 if removed, 0 if it still holds entries.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if p[1] then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
