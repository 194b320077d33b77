-- A failed delivery's retry: set the idle time of owned entries, so the recovery pass (which
-- claims entries idle claim_after) takes them after claim_after - idle, and count the failure
-- and the retry. (A hand-back at shutdown is handback.lua: it counts neither.)
-- KEYS: jobs, stats. ARGV: group, consumer, idle_ms, id...
-- Returns how many it released.
local mine = owned_split(KEYS[1], ARGV[1], ARGV[2], 4)
if #mine > 0 then
  -- 1000 ids to a call: unpack() fails above about 8000 values (Lua's C stack). And unpack()
  -- expands to all values only as the last argument: build each call's list instead.
  for i = 1, #mine, 1000 do
    local args = {KEYS[1], ARGV[1], ARGV[2], 0}
    for j = i, math.min(i + 999, #mine) do args[#args + 1] = mine[j] end
    args[#args + 1] = 'IDLE'
    args[#args + 1] = ARGV[3]
    args[#args + 1] = 'JUSTID'
    redis.call('XCLAIM', unpack(args))
  end
  redis.call('HINCRBY', KEYS[2], 'failed', #mine)
  redis.call('HINCRBY', KEYS[2], 'retried', #mine)
end
return #mine
