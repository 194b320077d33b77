-- Set the idle time of owned entries, so the recovery pass (which claims entries idle
-- claim_after) takes them after claim_after - idle: a retry backoff, or at once on shutdown.
-- KEYS: jobs, stats. ARGV: group, consumer, idle_ms, count_as_retry (0/1), id...
-- Returns how many it released.
local mine = owned_split(KEYS[1], ARGV[1], ARGV[2], 5)
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
  if ARGV[4] == '1' then
    redis.call('HINCRBY', KEYS[2], 'failed', #mine)
    redis.call('HINCRBY', KEYS[2], 'retried', #mine)
  end
end
return #mine
