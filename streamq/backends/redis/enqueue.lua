-- Append jobs and count them. KEYS: jobs, stats.
-- ARGV: field/value pairs per job, then the fields and values of each job in turn.
-- Returns the entry ids, in order.
local per = tonumber(ARGV[1]) * 2
local ids = {}
for i = 2, #ARGV, per do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + per - 1))
end
redis.call('HINCRBY', KEYS[2], 'enqueued', #ids)
return ids
