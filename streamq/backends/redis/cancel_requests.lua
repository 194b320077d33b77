-- The cancel requests waiting in one stream's keys (job ids), those older than ARGV[1] ms
-- dropped first (their job ended some other way before its worker saw the request).
-- KEYS: cancels. Returns the job ids.
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then
  return {}
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local out = {}
for i = 1, #all, 2 do
  if ms - (tonumber(all[i + 1]) or 0) > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
  end
end
return out
