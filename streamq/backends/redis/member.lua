-- Shared head of the scripts that write or read a schedule member themselves (retry.lua,
-- unique.lua, admit.lua, flow_free.lua, move_due.lua; done_record.lua and find_done.lua for the
-- server's clock): put in front of those that call packed,
-- unpacked or server_ms (ScriptRegistry.get, _scripts.py). A member is a tag,
-- then the entry's fields and values in turn, each packed as "<length>:<bytes>" (see
-- _schedule.py, whose pack_fields writes the same for schedule.lua).
local function packed(s)
  return string.len(s) .. ':' .. s
end

-- The server's clock in ms since the epoch.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A member's parts in turn (the tag first, then every field and value).
local function unpacked(member)
  local parts, pos = {}, 1
  while pos <= #member do
    local colon = string.find(member, ':', pos, true)
    local n = tonumber(string.sub(member, pos, colon - 1))
    parts[#parts + 1] = string.sub(member, colon + 1, colon + n)
    pos = colon + n + 1
  end
  return parts
end
