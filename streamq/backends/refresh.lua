-- Lease heartbeat: reset the idle time of the entries this consumer still owns.
-- JUSTID keeps the delivery count as it is. KEYS: jobs. ARGV: group, consumer, id...
-- Returns the ids it no longer owns.
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
if #mine > 0 then
  -- (unpack() expands to all values only as the last argument: build the list instead)
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(mine) do args[#args + 1] = id end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return lost
