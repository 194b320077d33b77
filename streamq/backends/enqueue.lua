-- Append one job and count it. KEYS: jobs, stats. ARGV: field, value, ...
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
redis.call('HINCRBY', KEYS[2], 'enqueued', 1)
return id
