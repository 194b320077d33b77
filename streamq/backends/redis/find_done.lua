-- One bounded step of looking for a job's finished-job record in a stream's `finished` entries
-- (done_record.lua): over at most ARGV[4] entries from ARGV[2] to ARGV[3] (XRANGE's bounds),
-- the last entry whose records hold ARGV[1] ("\n" .. the encoded job id .. " ").
-- KEYS: finished. Returns {more (1: entries left), last entry id read, server ms, the
-- stream's first entry id ('' for none: the caller need not look further back), then for a
-- find: its entry id, consumer, keep ms, its record line}.
local needle = ARGV[1]
local count = tonumber(ARGV[4])
local entries = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[3], 'COUNT', count)
local found = nil
for _, e in ipairs(entries) do
  local f = e[2]
  local records, consumer, keep = nil, '', '0'
  for i = 1, #f, 2 do
    if f[i] == 'r' then
      records = f[i + 1]
    elseif f[i] == 'c' then
      consumer = f[i + 1]
    elseif f[i] == 'k' then
      keep = f[i + 1]
    end
  end
  if records then
    local at = string.find(records, needle, 1, true)
    if at then
      local stop = string.find(records, '\n', at + 1, true)
      found = {e[1], consumer, keep, string.sub(records, at + 1, (stop or 0) - 1)}
    end
  end
end
local now = server_ms()
local last = ARGV[2]
if #entries > 0 then
  last = entries[#entries][1]
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local out = {#entries == count and 1 or 0, last, now, first[1] and first[1][1] or ''}
if found then
  for _, x in ipairs(found) do
    out[#out + 1] = x
  end
end
return out
