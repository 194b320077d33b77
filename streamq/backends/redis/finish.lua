-- The end of owned jobs that hold a unique key: ack, delete and count each, and release its key
-- (or keep it unique_for ms more) if the key still names that job — all or nothing.
-- KEYS: jobs, stats, then one unique key per id (in the order of the ids).
-- ARGV: group, consumer, id...
-- Returns the ids the consumer no longer owns (nothing changed for those).
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3)
local owned = {}
for _, id in ipairs(mine) do
  owned[id] = true
end
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
  end
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[2], 'processed', acked)
end
return lost
