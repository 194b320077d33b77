-- One bounded step of looking for a job by its id in one stream's keys (see _find.py for the
-- order of the steps and why it cannot miss a job that moves meanwhile).
-- KEYS: jobs, scheduled, dead, stats. ARGV: what, job id, start, count, then per what:
--   'stream':   group. Walks the stream from start ('-' or '(<id>') over at most count entries.
--               Found: {'found', entry id, fields, PEL row or {}}. Else {'more', last id}, or at
--               the end {'end', last id or start, retried, dead} (the stats counters, read in
--               the same atomic step as the end of the walk).
--   'schedule': the MATCH pattern. One ZSCAN step from cursor start over about count members:
--               {cursor, now ms, member, score, ...} for the members matching (a match is
--               checked by the caller: the pattern can match inside a job's body).
--   'dead':     walks the dead stream like 'stream': {'found', dead id, fields}, {'more', last
--               id} or {'end', last id or start}.
local what, job_id, start, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local function has_id(f, name)
  -- streamq writes the id first; any order is looked at all the same.
  if f[1] == name then
    return f[2] == job_id
  end
  for i = 3, #f, 2 do
    if f[i] == name then
      return f[i + 1] == job_id
    end
  end
  return false
end

if what == 'schedule' then
  local r = redis.call('ZSCAN', KEYS[2], start, 'MATCH', ARGV[5], 'COUNT', count)
  local t = redis.call('TIME')
  local out = {r[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
  local rows = r[2]
  for i = 1, #rows do
    out[#out + 1] = rows[i]
  end
  return out
end

local key, name = KEYS[1], 'id'
if what == 'dead' then
  key, name = KEYS[3], 'f.id'
end
local rows = redis.call('XRANGE', key, start, '+', 'COUNT', count)
for _, row in ipairs(rows) do
  if has_id(row[2], name) then
    if what == 'dead' then
      return {'found', row[1], row[2]}
    end
    local p = redis.pcall('XPENDING', key, ARGV[5], row[1], row[1], 1)
    if type(p) ~= 'table' or p.err or not p[1] then
      p = {{}}  -- no group yet (NOGROUP), or not delivered
    end
    return {'found', row[1], row[2], p[1]}
  end
end
local last = start
if #rows > 0 then
  last = '(' .. rows[#rows][1]
end
if #rows == count then
  return {'more', last}
end
if what == 'dead' then
  return {'end', last}
end
local retried = redis.call('HGET', KEYS[4], 'retried') or '0'
return {'end', last, retried, redis.call('HGET', KEYS[4], 'dead') or '0'}
