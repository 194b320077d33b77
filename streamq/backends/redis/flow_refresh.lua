-- Flow control: renew the leases of the slots a worker's running jobs hold (only those still
-- there: XX), atomically for one stream.
-- KEYS: per slot, its key's slots. ARGV: lease_ms, then per slot its entry id.
local until_ms = server_ms() + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', until_ms, ARGV[i + 1])
end
return #KEYS
