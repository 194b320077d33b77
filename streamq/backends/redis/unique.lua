-- Enqueue one unique job unless its key is held: the check, the key and the write in one step.
-- KEYS: jobs, scheduled, stats, unique key (all in the stream's slot).
-- ARGV: job id, ttl_ms (the key's bound), delay_ms (0: into the stream now), then the entry's
-- fields and values in turn.
-- Returns {1, job id} when it enqueued the job, {0, holder's job id} for a duplicate.
local held = redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[2])
if not held then
  return {0, redis.call('GET', KEYS[4])}
end
local delay = tonumber(ARGV[3])
if delay > 0 then
  -- Packed as schedule.lua's members are (member.lua): a tag, then fields and values. The
  -- tag is 'u' and the job id: one unique job of a key at a time.
  local parts = {packed('u' .. ARGV[1])}
  for i = 4, #ARGV do
    parts[#parts + 1] = packed(ARGV[i])
  end
  local due = server_ms() + delay
  redis.call('ZADD', KEYS[2], string.format('%d', due), table.concat(parts))
else
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
end
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
return {1, ARGV[1]}
