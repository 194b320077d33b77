-- Cancel one job (docs/control.md), in its stream's keys, all or nothing.
-- KEYS: jobs, scheduled, stats, cancels (hash: job id -> ms of the request), ended (the job's
-- record), progress (the job's step progress)[, unique key].
-- ARGV: how, what, group, consumer, job id, unique_for ms, ended keep ms, cancel keep ms.
--   how 'schedule': what is the schedule member. Gone: {'moved'}.
--   how 'stream':   what is the entry id, not delivered when looked at. Delivered meanwhile:
--                   a cancel request is left for its worker, {'running', consumer}; gone:
--                   {'moved'}.
--   how 'running':  what is the entry id, which consumer ARGV[4] owns (the worker ends the job
--                   it cancelled). Not owned: {'lost'}.
-- A job removed: unique key released (as unique_release.lua), progress deleted, request
-- cleared, counted 'cancelled', recorded 'cancelled <ms>' for keep ms: {'cancelled'}.
local how, what, group, job_id = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
if how == 'schedule' then
  if redis.call('ZREM', KEYS[2], what) == 0 then
    return {'moved'}
  end
else
  local p = redis.pcall('XPENDING', KEYS[1], group, what, what, 1)
  if type(p) ~= 'table' or p.err then
    p = {}
  end
  if how == 'running' then
    if not p[1] or p[1][2] ~= ARGV[4] then
      return {'lost'}
    end
    redis.call('XACK', KEYS[1], group, what)
  elseif p[1] then
    local now = redis.call('TIME')
    redis.call('HSET', KEYS[4], job_id, now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000)))
    redis.call('PEXPIRE', KEYS[4], ARGV[8])
    return {'running', p[1][2]}
  end
  if redis.call('XDEL', KEYS[1], what) == 0 and how == 'stream' then
    return {'moved'}
  end
end
if KEYS[7] then
  release_unique(KEYS[7], {'id', job_id, 'unique_for', ARGV[6]})
end
redis.call('DEL', KEYS[6])
redis.call('HDEL', KEYS[4], job_id)
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
local now = redis.call('TIME')
local ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
redis.call('SET', KEYS[5], 'cancelled ' .. ms, 'PX', ARGV[7])
return {'cancelled'}
