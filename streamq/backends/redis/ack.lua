-- Acknowledge and delete the entries this consumer still owns, count them processed.
-- KEYS: jobs, stats. ARGV: group, consumer, id... Returns the ids it did not own.
-- The ids go 1000 to a call: unpack() fails above about 8000 values (Lua's C stack).
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
for i = 1, #mine, 1000 do
  local last = math.min(i + 999, #mine)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, last))
  redis.call('XDEL', KEYS[1], unpack(mine, i, last))
end
if #mine > 0 then
  redis.call('HINCRBY', KEYS[2], 'processed', #mine)
end
return lost
