-- One read of a type's level streams for a consumer (XREADGROUP '>', never blocking): what the
-- lower levels are owed first (low, then default; see streamq/backends/_priority.py), then
-- high, default and low in order, each for what is left of COUNT.
-- KEYS: high, default, low jobs. ARGV: group, consumer, count, owed to default, owed to low.
-- Returns {"RRR:D:L", [stream, entries]...}: per level (high first) 1 when it ran out or was
-- reached with room to spare, then what default and low gave to their owed asks; after it,
-- what one XREADGROUP over the three streams answers.
local group, consumer = ARGV[1], ARGV[2]
local left = tonumber(ARGV[3])
local owed = {0, tonumber(ARGV[4]), tonumber(ARGV[5])}
local reset, owed_taken = {0, 0, 0}, {0, 0, 0}
local got = {}
local function ask(i, n)
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n,
    'STREAMS', KEYS[i], '>')
  if not reply then
    return 0
  end
  local entries = reply[1][2]
  left = left - #entries
  if got[i] then
    for _, e in ipairs(entries) do
      table.insert(got[i], e)
    end
  elseif #entries > 0 then
    got[i] = entries
  end
  return #entries
end
for _, i in ipairs({3, 2}) do
  local n = math.min(owed[i], left)
  if n > 0 then
    owed_taken[i] = ask(i, n)
    if owed_taken[i] < n then
      reset[i] = 1
    end
  end
end
for i = 1, 3 do
  if left > 0 then
    reset[i] = 1
    ask(i, left)
  end
end
local out = {reset[1] .. reset[2] .. reset[3] .. ':' .. owed_taken[2] .. ':' .. owed_taken[3]}
for i = 1, 3 do
  if got[i] then
    table.insert(out, {KEYS[i], got[i]})
  end
end
return out
