-- The partition count recorded for a type, raised to the wanted count when that is larger.
-- KEYS: meta. ARGV: wanted count (0: only read). Returns the count (1 when none is recorded).
local n = tonumber(redis.call('HGET', KEYS[1], 'partitions') or '1')
local want = tonumber(ARGV[1])
if want > n then
  redis.call('HSET', KEYS[1], 'partitions', want)
  n = want
end
return n
