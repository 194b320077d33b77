-- The end of one owned job that holds a unique key: ack, delete and count it, and release its
-- key (or keep it unique_for ms more) if the key still names this job — all or nothing.
-- KEYS: jobs, stats, unique key. ARGV: group, consumer, entry_id.
-- Returns 1, or 0 if the consumer no longer owns the entry (nothing changed).
local id = ARGV[3]
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
local e = redis.call('XRANGE', KEYS[1], id, id)
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('HINCRBY', KEYS[2], 'processed', 1)
if e[1] then
  release_unique(KEYS[3], e[1][2])
end
return 1
