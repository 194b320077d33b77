-- Lease heartbeat: reset the idle time of the entries this consumer still owns.
-- JUSTID keeps the delivery count as it is. KEYS: jobs. ARGV: group, consumer, id...
-- Returns the ids it no longer owns.
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
-- 1000 ids to a call: unpack() fails above about 8000 values (Lua's C stack). And unpack()
-- expands to all values only as the last argument: build each call's list instead.
for i = 1, #mine, 1000 do
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for j = i, math.min(i + 999, #mine) do args[#args + 1] = mine[j] end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return lost
