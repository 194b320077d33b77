-- Record the progress of jobs with several steps, each only if this consumer still owns its
-- entry: how many steps are done, the name of the next one, the server's time, and (when
-- given) the checkpoint. Each key expires ttl_ms from now; each record starts that again, so
-- a job that vanished without its end (ack.lua and dead.lua delete the key) leaves nothing
-- behind for ever. One call records what one worker's lanes finished meanwhile, in one stream.
-- KEYS: jobs, then one progress key per record.
-- ARGV: group, consumer, ttl_ms, the n entry ids (n = #KEYS - 1), then per record in the same
-- order: done, next_step, 's' (store the checkpoint that follows) or 'k' (keep the stored
-- one; then an empty string follows), checkpoint. A checkpoint stored empty is none.
-- Returns one 1 (recorded), 0 (not owned: nothing recorded) or -1 (its key could not be
-- written, e.g. not a hash: the others of the call are recorded all the same) per record.
-- The commands are those the documented ACL user has (docs/security.md).
local n = #KEYS - 1
local mine = owned_split(KEYS[1], ARGV[1], ARGV[2], 4, 3 + n)
local owned = {}
for _, id in ipairs(mine) do
  owned[id] = true
end
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local out = {}
for i = 1, n do
  local key, at = KEYS[1 + i], 4 + n + (i - 1) * 4
  if owned[ARGV[3 + i]] then
    local wrote = redis.pcall('HSET', key, 'done', ARGV[at], 'next', ARGV[at + 1], 'at', now)
    if type(wrote) == 'table' and wrote.err then
      out[i] = -1
    else
      if ARGV[at + 2] == 's' then
        redis.call('HSET', key, 'checkpoint', ARGV[at + 3])
      end
      redis.call('PEXPIRE', key, ARGV[3])
      out[i] = 1
    end
  else
    out[i] = 0
  end
end
return out
