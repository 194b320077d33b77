-- The partition count recorded for a type, raised to the wanted count when that is larger, and
-- whether the type has level streams (priorities), recorded when asked to.
-- KEYS: meta. ARGV: wanted count (0: only read), 1 to record level streams (0: only read).
-- Returns {count (1 when none is recorded), 1 when the type has level streams else 0}.
local n = tonumber(redis.call('HGET', KEYS[1], 'partitions') or '1')
local want = tonumber(ARGV[1])
if want > n then
  redis.call('HSET', KEYS[1], 'partitions', want)
  n = want
end
local levels = redis.call('HGET', KEYS[1], 'levels')
if ARGV[2] == '1' and not levels then
  redis.call('HSET', KEYS[1], 'levels', 1)
  levels = '1'
end
return {n, levels and 1 or 0}
