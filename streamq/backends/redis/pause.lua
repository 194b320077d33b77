-- Pause a job type: its workers stop taking its jobs (they read this key, docs/control.md).
-- KEYS: the type's paused hash. ARGV: the reason ("" for none).
-- Returns 1 when this call paused the type, 0 when it was paused already (its record kept).
-- (HGET, not EXISTS: the least-privilege user of docs/security.md has no EXISTS.)
if redis.call('HGET', KEYS[1], 'since_ms') then
  return 0
end
local now = redis.call('TIME')
local ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
redis.call('HSET', KEYS[1], 'since_ms', ms, 'reason', ARGV[1])
return 1
