-- Shared head of the PEL scripts: which of the given ids does this consumer still own?
-- Put in front of the scripts that call owned_split (ScriptRegistry.get, _scripts.py).
-- One XPENDING over this consumer's own entries answers for all the ids at once: an XPENDING
-- per id made the server's share of a large ack grow with every id, and the worker idles while
-- it runs (figures: benchmarks/README.md, "The Redis backend"). The answer never rests on the
-- range below being right: what it did not list is asked again (below).
-- The XPENDING covers only the ids' own range: a worker's ack names its oldest entries, so the
-- entries it holds beyond them are not listed (each listed row is a reply the script converts,
-- the bulk of this check's cost). The range is found by comparing the ids as strings (a Lua
-- operator: parsing each id cost more than the rest of the check). For ids of one length that
-- is their order (a stream's ids have 13 digits of milliseconds until the year 2286, but the
-- sequence numbers within one millisecond grow in length); for others it may be too narrow,
-- and a second XPENDING over all the consumer's entries asks again for the ids it left out.
-- The ids are ARGV[first] to ARGV[last] (default: to the end).
-- Returns the ids owned, the ids not owned, and whether every id was owned.

-- XPENDING's rows; none for a range of what are not stream ids (any other error is raised).
local function pending(...)
  local rows = redis.pcall('XPENDING', ...)
  if rows.err then
    if string.find(rows.err, 'Invalid stream ID', 1, true) then
      return {}
    end
    error(rows)
  end
  return rows
end

local function owned_split(key, group, consumer, first, last)
  local mine, lost = {}, {}
  last = last or #ARGV
  local n = last - first + 1
  if n <= 0 then
    return mine, lost, true
  end
  local low, high = ARGV[first], ARGV[first]
  for i = first + 1, last do
    local id = ARGV[i]
    if id < low then
      low = id
    elseif id > high then
      high = id
    end
  end
  local limit = n + 64
  local held = {}
  for _, row in ipairs(pending(key, group, low, high, limit, consumer)) do
    held[row[1]] = true
  end
  local missing = 0
  for i = first, last do
    if not held[ARGV[i]] then
      missing = missing + 1
    end
  end
  -- Some ids not listed (not owned, or the range was too narrow): one XPENDING over all this
  -- consumer's entries; when that lists all of them, an id not listed is not owned.
  local complete = true
  if missing > 0 then
    local rows = pending(key, group, '-', '+', limit, consumer)
    for _, row in ipairs(rows) do
      held[row[1]] = true
    end
    complete = #rows < limit
  end
  for i = first, last do
    local id = ARGV[i]
    local owned = held[id]
    if not owned and not complete then
      local p = pending(key, group, id, id, 1)
      owned = p[1] ~= nil and p[1][2] == consumer
    end
    if owned then
      mine[#mine + 1] = id
    else
      lost[#lost + 1] = id
    end
  end
  return mine, lost, #lost == 0
end
