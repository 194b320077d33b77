-- The soonest ARGV[1] jobs of a schedule, and the server's clock. KEYS: scheduled.
-- Returns {now ms, member, due ms, member, due ms, ...}.
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
local rows = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #rows do
  out[#out + 1] = rows[i]
end
return out
