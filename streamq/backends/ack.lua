-- Acknowledge and delete the entries this consumer still owns, count them processed.
-- KEYS: jobs, stats. ARGV: group, consumer, id... Returns the ids it did not own.
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
if #mine > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine))
  redis.call('XDEL', KEYS[1], unpack(mine))
  redis.call('HINCRBY', KEYS[2], 'processed', #mine)
end
return lost
