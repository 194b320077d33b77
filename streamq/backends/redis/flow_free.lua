-- Flow control: give back the slots of ended jobs and wake the held jobs of their keys,
-- atomically for one stream.
-- KEYS: jobs, stats, index, the high and the low level's jobs (jobs again for a type without
-- levels), then per key value two: its slots, its held jobs.
-- ARGV: lease_ms, concurrency, the suffix of the ids of each of the three streams ('', '@P',
-- '@high', '@low'), then per key value: the value, how many slots to give back, and those ids
-- (as callers see them: the slots' members).
-- For each key: its expired slots go (a worker that died), the ids' slots go, then held jobs
-- move back to the stream of their level (their 'priority' field) while the key has room, each
-- holding a slot already (its new id, a fresh lease): it runs when read, ahead of later jobs of its key. Returns how many moved.
local lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = server_ms()
local moved = 0
local streams = {[''] = {KEYS[1], ARGV[3]}, high = {KEYS[4], ARGV[4]}, low = {KEYS[5], ARGV[5]}}
local at = 6
local k = 0
while at <= #ARGV do
  local kv, n = ARGV[at], tonumber(ARGV[at + 1])
  local slots, held = KEYS[6 + 2 * k], KEYS[7 + 2 * k]
  local gone = redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  for j = 1, n do
    gone = gone + redis.call('ZREM', slots, ARGV[at + 1 + j])
  end
  local room = limit - redis.call('ZCARD', slots)
  local woke = 0
  while room > 0 do
    local member = redis.call('LPOP', held)
    if not member then
      break
    end
    local fields = unpacked(member)
    local level = ''
    for i = 2, #fields, 2 do
      if fields[i] == 'priority' then
        level = fields[i + 1]
      end
    end
    local to = streams[level] or streams['']
    local id = redis.call('XADD', to[1], '*', unpack(fields, 2))
    redis.call('ZADD', slots, now + lease, id .. to[2])
    woke = woke + 1
    room = room - 1
  end
  if woke > 0 then
    redis.call('HINCRBY', KEYS[2], 'held', -woke)
  end
  -- A woken job moves from held to running: its key's load changes only by what went.
  if gone > 0 then
    if tonumber(redis.call('ZINCRBY', KEYS[3], -gone, kv)) <= 0 then
      redis.call('ZREM', KEYS[3], kv)
    end
  end
  moved = moved + woke
  at = at + 2 + n
  k = k + 1
end
return moved
