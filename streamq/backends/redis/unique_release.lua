-- Shared head of the scripts that end a unique job (finish.lua, dead.lua): release its key, or
-- keep it unique_for ms more, if it still names this job (a key whose bound ran out may have
-- been taken by a newer job: that one's is left alone). `f` is the entry's field/value list.
local function release_unique(key, f)
  local job_id, keep = nil, 0
  for i = 1, #f, 2 do
    if f[i] == 'id' then
      job_id = f[i + 1]
    elseif f[i] == 'unique_for' then
      keep = tonumber(f[i + 1]) or 0
    end
  end
  if job_id == nil or redis.call('GET', key) ~= job_id then
    return
  end
  if keep > 0 then
    redis.call('PEXPIRE', key, keep)
  else
    redis.call('DEL', key)
  end
end
