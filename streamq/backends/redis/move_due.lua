-- Move the due jobs of a schedule into its stream: at most ARGV[1], by the server's clock.
-- KEYS: scheduled, jobs[, later: flow control's rate queue, moved the same way, and the high
-- and the low level's jobs: a member of the rate queue goes to its level's stream (its
-- 'priority' field)]. Each member is a tag, then the entry's fields and values, each one
-- "<length>:<bytes>" (see _schedule.py); the tag is dropped.
-- Returns how many moved. Atomic: two workers running it at once never move one job twice.
local now = server_ms()
local moved = 0
for _, schedule in ipairs({KEYS[1], KEYS[3]}) do
  local due = redis.call('ZRANGEBYSCORE', schedule, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
  for _, member in ipairs(due) do
    local fields = unpacked(member)
    local to = KEYS[2]
    if schedule == KEYS[3] then
      for i = 2, #fields, 2 do
        if fields[i] == 'priority' then
          to = (fields[i + 1] == 'high' and KEYS[4]) or (fields[i + 1] == 'low' and KEYS[5]) or to
        end
      end
    end
    redis.call('XADD', to, '*', unpack(fields, 2))
  end
  if #due > 0 then
    redis.call('ZREM', schedule, unpack(due))
    moved = moved + #due
  end
end
return moved
