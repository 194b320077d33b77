-- Record a multi-step job's progress, if this consumer still owns its entry: how many steps
-- are done, the name of the next one, the server's time, and (when given) the checkpoint. The
-- key expires ttl_ms from now; each record starts that again, so a job that vanished without
-- its end (ack.lua and dead.lua delete the key) leaves nothing behind for ever.
-- KEYS: jobs, progress. ARGV: group, consumer, entry_id, done, next_step, ttl_ms[, checkpoint].
-- A checkpoint of '' drops the stored one (stored empty: no checkpoint); none given leaves it
-- as it is. The commands are those the documented ACL user has (docs/security.md).
-- Returns 1, or 0 (and records nothing) if the consumer no longer owns the entry.
local id = ARGV[3]
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], 'done', ARGV[4], 'next', ARGV[5], 'at', string.format('%d', now))
if ARGV[7] ~= nil then
  redis.call('HSET', KEYS[2], 'checkpoint', ARGV[7])
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
