-- A failed delivery's retry: move the owned entry from the stream into its schedule, due
-- ARGV[4] ms from now by the server's clock, with the deliveries so far and the last error in
-- its fields; ack and delete it from the stream (it holds no lease while it waits), count the
-- failure and the retry — all or nothing.
-- KEYS: jobs, scheduled, stats. ARGV: group, consumer, entry_id, delay_ms, deliveries, error.
-- The member is packed as schedule.lua's (member.lua's packed): a tag (here 'r' and the entry
-- id, unique in the stream), then every field and value as "<length>:<bytes>"; the fields
-- 'deliveries' and 'last_error' of an earlier retry are replaced; 'rated' (flow control's reserved
-- start) is dropped: a retry counts against its rate again.
-- Returns the due time in ms since the epoch, or 0 if the consumer no longer owns the entry
-- (or the entry is gone).
local id = ARGV[3]
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
local e = redis.call('XRANGE', KEYS[1], id, id)
if not e[1] then
  return 0
end
local parts = {packed('r' .. id)}
local f = e[1][2]
for i = 1, #f, 2 do
  if f[i] ~= 'deliveries' and f[i] ~= 'last_error' and f[i] ~= 'rated' then
    parts[#parts + 1] = packed(f[i])
    parts[#parts + 1] = packed(f[i + 1])
  end
end
parts[#parts + 1] = packed('deliveries')
parts[#parts + 1] = packed(ARGV[5])
parts[#parts + 1] = packed('last_error')
parts[#parts + 1] = packed(ARGV[6])
local due = server_ms() + tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], string.format('%d', due), table.concat(parts))
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('HINCRBY', KEYS[3], 'failed', 1)
redis.call('HINCRBY', KEYS[3], 'retried', 1)
return due
