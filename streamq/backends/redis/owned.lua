-- Shared head of the PEL scripts: which of the given ids does this consumer still own?
-- Put in front of the scripts that call owned_split (ScriptRegistry.get, _scripts.py).
-- One XPENDING over this consumer's own entries answers for all the ids at once: an XPENDING
-- per id made the server's share of a large ack grow with every id, and the worker idles while
-- it runs (figures: benchmarks/README.md, "The Redis backend"). If the consumer holds more
-- entries than that call returned, the ids it did not find are asked one by one.
-- The XPENDING covers only the ids' own range (lowest to highest): a worker's ack names its
-- oldest entries, so the entries it holds beyond them are not listed (each listed row is a
-- reply the script converts, the bulk of this check's cost).
-- The ids are ARGV[first] to ARGV[last] (default: to the end).

-- A stream id "MS-SEQ" as its two numbers (nil for anything else).
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  if not dash then
    return nil
  end
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

local function owned_split(key, group, consumer, first, last)
  local mine, lost = {}, {}
  last = last or #ARGV
  local n = last - first + 1
  if n <= 0 then
    return mine, lost
  end
  local low, high = ARGV[first], ARGV[first]
  local lms, lseq = id_parts(low)
  local hms, hseq = lms, lseq
  for i = first + 1, last do
    local ms, seq = id_parts(ARGV[i])
    if ms == nil or seq == nil or lms == nil or lseq == nil then
      low, high = '-', '+'
      break
    end
    if ms < lms or (ms == lms and seq < lseq) then
      low, lms, lseq = ARGV[i], ms, seq
    end
    if ms > hms or (ms == hms and seq > hseq) then
      high, hms, hseq = ARGV[i], ms, seq
    end
  end
  if lms == nil or lseq == nil then
    low, high = '-', '+'
  end
  local limit = n + 64
  local rows = redis.call('XPENDING', key, group, low, high, limit, consumer)
  local held = {}
  for _, row in ipairs(rows) do
    held[row[1]] = true
  end
  local complete = #rows < limit
  for i = first, last do
    local id = ARGV[i]
    local owned = held[id]
    if not owned and not complete then
      local p = redis.call('XPENDING', key, group, id, id, 1)
      owned = p[1] and p[1][2] == consumer
    end
    if owned then
      mine[#mine + 1] = id
    else
      lost[#lost + 1] = id
    end
  end
  return mine, lost
end
