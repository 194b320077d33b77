-- Shared head of the scripts that write a schedule member themselves (retry.lua, unique.lua):
-- put in front of those that call packed (ScriptRegistry.get, _scripts.py). A member is a tag,
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
