-- Dead-letter one owned entry: copy its fields (prefixed 'f.') with the reason into the capped
-- dead stream, then ack, delete and count it, delete its end-of-job keys (a job's step
-- progress) and release a unique job's key — all or nothing.
-- KEYS: jobs, dead, stats, the n end-of-job keys, and for a unique job its key (released, see
-- unique_release.lua).
-- ARGV: group, consumer, entry_id, max_dead, failed (0/1), n, meta k/v...
-- Returns 1, or 0 if the consumer no longer owns the entry.
local id = ARGV[3]
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
local ends = tonumber(ARGV[6])
local args = {'MAXLEN', ARGV[4], '*'}
for i = 7, #ARGV do
  args[#args + 1] = ARGV[i]
end
local e = redis.call('XRANGE', KEYS[1], id, id)
if e[1] then
  local f = e[1][2]
  for i = 1, #f, 2 do
    args[#args + 1] = 'f.' .. f[i]
    args[#args + 1] = f[i + 1]
  end
  if KEYS[4 + ends] then
    release_unique(KEYS[4 + ends], f)
  end
end
redis.call('XADD', KEYS[2], unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('HINCRBY', KEYS[3], 'dead', 1)
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
end
for i = 4, 3 + ends do
  redis.call('DEL', KEYS[i])
end
return 1
