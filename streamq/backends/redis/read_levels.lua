-- One read of a type's level streams for a consumer (XREADGROUP '>', never blocking): the
-- levels owed a turn first, one entry each (see streamq/backends/_priority.py), then high,
-- default and low in order, each for what is left of COUNT.
-- KEYS: high, default, low jobs. ARGV: group, consumer, count, owe default (0/1), owe low (0/1).
-- Returns {asked (3 digits, high first: 1 when that level was asked), [stream, entries]...}:
-- after the first element, what one XREADGROUP over the three streams answers.
local group, consumer = ARGV[1], ARGV[2]
local left = tonumber(ARGV[3])
local asked = {0, 0, 0}
local got = {}
local function ask(i, n)
  if n <= 0 then
    return
  end
  asked[i] = 1
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n,
    'STREAMS', KEYS[i], '>')
  if reply then
    local entries = reply[1][2]
    left = left - #entries
    if #entries > 0 then
      if got[i] then
        for _, e in ipairs(entries) do
          table.insert(got[i], e)
        end
      else
        got[i] = entries
      end
    end
  end
end
if ARGV[5] == '1' then
  ask(3, math.min(1, left))
end
if ARGV[4] == '1' then
  ask(2, math.min(1, left))
end
for i = 1, 3 do
  ask(i, left)
end
local out = {asked[1] .. asked[2] .. asked[3]}
for i = 1, 3 do
  if got[i] then
    table.insert(out, {KEYS[i], got[i]})
  end
end
return out
