-- Remove a consumer from the group (a worker leaving). KEYS: jobs. ARGV: group, consumer, heir.
-- With heir '' it must hold no pending entry. Otherwise what it holds first passes to the heir
-- (the hand-back consumer), each entry with its idle time and delivery count as they were, so
-- it stays claimable exactly when it would have been.
-- Returns 1 if removed, 0 if it still holds entries.
local key, group, consumer, heir = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if heir ~= '' then
  local from = '-'
  while true do
    local rows = redis.call('XPENDING', key, group, from, '+', 100, consumer)
    if not rows[1] then
      break
    end
    for _, row in ipairs(rows) do
      redis.call('XCLAIM', key, group, heir, 0, row[1],
        'IDLE', row[3], 'RETRYCOUNT', row[4], 'JUSTID')
    end
    -- Exclusive range: an entry the XCLAIM could not move is never looked at twice.
    from = '(' .. rows[#rows][1]
  end
end
-- DELCONSUMER drops whatever the consumer still holds from the PEL: never with entries left.
local p = redis.call('XPENDING', key, group, '-', '+', 1, consumer)
if p[1] then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', key, group, consumer)
return 1
