-- Hand pending entries idle at least min_idle back for delivery now: copy each to a new entry
-- (any worker's next read gets it), then ack and delete the old one — per entry, atomically.
-- A worker still running the old one finds it gone at ack time and logs a lost lease.
-- KEYS: jobs. ARGV: group, min_idle_ms, id... Returns {{old_id, new_id}, ...}.
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], id, id, 1)
  if p[1] then
    local e = redis.call('XRANGE', KEYS[1], id, id)
    if e[1] then
      out[#out + 1] = {id, redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))}
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
  end
end
return out
