-- Lease heartbeat: reset the idle time of the entries this consumer still owns.
-- JUSTID keeps the delivery count as it is. KEYS: jobs. ARGV: group, consumer, id...
-- Returns the ids it no longer owns.
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
if #mine > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine), 'JUSTID')
end
return lost
