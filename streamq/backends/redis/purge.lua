-- Drop a dead stream and say how many entries it held.
-- KEYS: dead. Returns the count.
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
