-- Fire one tick of a periodic job: the marker and the append are one step.
-- KEYS: ticks (the type's last-tick hash), then jobs and stats of the stream the job goes to
-- (absent on a cluster when that stream is in another slot: the caller enqueues it next).
-- ARGV: schedule name, tick time (epoch ms), field/value pairs of the job.
-- Returns the entry id (or 1 without a stream) when this call fired the tick, 0 when it (or a
-- later tick) already fired.
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if #KEYS == 1 then
  return 1
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
return id
