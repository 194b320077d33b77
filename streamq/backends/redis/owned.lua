-- Shared head of the PEL scripts: which of the given ids does this consumer still own?
-- Put in front of the scripts that call owned_split (ScriptRegistry.get, _scripts.py).
-- One XPENDING over this consumer's own entries answers for all the ids at once: an XPENDING
-- per id made the server's share of a large ack grow with every id, and the worker idles while
-- it runs (figures: benchmarks/README.md, "The Redis backend"). If the consumer holds more
-- entries than that call returned, the ids it did not find are asked one by one.
-- The ids are ARGV[first] to ARGV[last] (default: to the end).
local function owned_split(key, group, consumer, first, last)
  local mine, lost = {}, {}
  last = last or #ARGV
  local n = last - first + 1
  if n <= 0 then
    return mine, lost
  end
  local limit = 2 * n + 64
  local rows = redis.call('XPENDING', key, group, '-', '+', limit, consumer)
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
