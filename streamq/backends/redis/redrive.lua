-- Put one dead job back on the job stream as a new entry: a fresh start, so the delivery count,
-- the last error and the deadline it carried (fields 'deliveries', 'last_error', 'expires')
-- are dropped.
-- KEYS: jobs, dead, stats. ARGV: dead_id. Returns the new entry id, or false if not found.
local e = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if not e[1] then
  return false
end
local f, args = e[1][2], {}
for i = 1, #f, 2 do
  local name = string.sub(f[i], 3)
  if string.sub(f[i], 1, 2) == 'f.' and name ~= 'deliveries' and name ~= 'last_error'
      and name ~= 'expires' then
    args[#args + 1] = name
    args[#args + 1] = f[i + 1]
  end
end
if #args == 0 then
  return false
end
local id = redis.call('XADD', KEYS[1], '*', unpack(args))
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
return id
