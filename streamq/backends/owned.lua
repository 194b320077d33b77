-- Shared head of the PEL scripts: which of the given ids does this consumer still own?
-- Included textually by the scripts below (see RedisBackend._script).
local function owned_split(key, group, consumer, first)
  local mine, lost = {}, {}
  for i = first, #ARGV do
    local id = ARGV[i]
    local p = redis.call('XPENDING', key, group, id, id, 1)
    if p[1] and p[1][2] == consumer then
      mine[#mine + 1] = id
    else
      lost[#lost + 1] = id
    end
  end
  return mine, lost
end
