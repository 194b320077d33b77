-- Put jobs in a schedule, due ARGV[1] ms from now by the server's clock, and count them.
-- KEYS: scheduled, stats. ARGV: delay in ms, then one encoded entry per job (see _schedule.py).
-- Returns the due time in ms since the epoch.
local t = redis.call('TIME')
local due = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  + tonumber(ARGV[1]))
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = due
  args[#args + 1] = ARGV[i]
  if #args >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then
  redis.call('ZADD', KEYS[1], unpack(args))
end
redis.call('HINCRBY', KEYS[2], 'enqueued', #ARGV - 1)
return tonumber(due)
