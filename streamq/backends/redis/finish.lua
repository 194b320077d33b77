-- The end of owned jobs that hold a unique key: ack, delete and count each, release its key
-- (or keep it unique_for ms more) if the key still names that job, and delete its end-of-job
-- key when it has one (a job's step progress) — all or nothing.
-- KEYS: jobs, stats, then one unique key per id (in the order of the ids), then either nothing
-- or one end-of-job key per id (in the same order).
-- ARGV: group, consumer, id...
-- Returns the ids the consumer no longer owns (nothing changed for those).
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
local owned = {}
for _, id in ipairs(mine) do
  owned[id] = true
end
local n = #ARGV - 2
local ends = #KEYS - 2 - n > 0
local acked = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if owned[id] then
    local e = redis.call('XRANGE', KEYS[1], id, id)
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    acked = acked + 1
    if e[1] then
      release_unique(KEYS[i], e[1][2])
    end
    if ends then
      redis.call('DEL', KEYS[i + n])
    end
  end
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[2], 'processed', acked)
end
return lost
