-- Acknowledge and delete the entries this consumer still owns, count them processed, and
-- delete the end-of-job keys of the entries it acked (a job's step progress), all in one.
-- KEYS: jobs, stats[, end-of-job key...]. ARGV: group, consumer, id...[, then for each
-- end-of-job key, in order, the id whose end deletes it]. A plain ack has no end-of-job keys:
-- its call is exactly what it was without them. Returns the ids it did not own.
-- The ids go 1000 to a call: unpack() fails above about 8000 values (Lua's C stack).
local ends = #KEYS - 2
local mine, lost = owned_split(KEYS[1], ARGV[1], ARGV[2], 3, #ARGV - ends)
for i = 1, #mine, 1000 do
  local last = math.min(i + 999, #mine)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, last))
  redis.call('XDEL', KEYS[1], unpack(mine, i, last))
end
if #mine > 0 then
  redis.call('HINCRBY', KEYS[2], 'processed', #mine)
  if ends > 0 then
    local acked = {}
    for _, id in ipairs(mine) do
      acked[id] = true
    end
    local base = #ARGV - ends
    for j = 1, ends do
      if acked[ARGV[base + j]] then
        redis.call('DEL', KEYS[2 + j])
      end
    end
  end
end
return lost
