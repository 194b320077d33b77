-- Move the due jobs of a schedule into its stream: at most ARGV[1], by the server's clock.
-- KEYS: scheduled, jobs. Each member is a tag, then the entry's fields and values, each one
-- "<length>:<bytes>" (see _schedule.py); the tag is dropped.
-- Returns how many moved. Atomic: two workers running it at once never move one job twice.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then
  return 0
end
for _, member in ipairs(due) do
  local fields, pos = {}, 1
  while pos <= #member do
    local colon = string.find(member, ':', pos, true)
    local n = tonumber(string.sub(member, pos, colon - 1))
    fields[#fields + 1] = string.sub(member, colon + 1, colon + n)
    pos = colon + n + 1
  end
  redis.call('XADD', KEYS[2], '*', unpack(fields, 2))
end
redis.call('ZREM', KEYS[1], unpack(due))
return #due
