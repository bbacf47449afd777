-- Take a task's trim lock for one finished state and pick the jobs beyond its
-- retention: those finished before the age cutoff, then the oldest beyond the
-- newest max count. Changes nothing but the lock; trim-2.lua deletes them.
-- KEYS[1] trim lock (task, state), KEYS[2] retention set (task, state).
-- ARGV[1] clock offset ms, ARGV[2] lock token, ARGV[3] lock ms (how long a trim
-- that died keeps others out), ARGV[4] max count ('' for none), ARGV[5] max age ms
-- ('' for none), ARGV[6] most jobs to pick.
-- Returns: 0 another trim holds the lock (nothing changed); else {age cutoff ms or -1,
--   {retention members picked, oldest first}}; with none picked the lock is let go.
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then return 0 end
local limit = tonumber(ARGV[6])
local cutoff, picked, seen = -1, {}, {}
if ARGV[5] ~= '' then
  cutoff = now_ms(ARGV[1]) - tonumber(ARGV[5])
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff,
      'LIMIT', 0, limit)) do
    picked[#picked + 1] = member
    seen[member] = true
  end
end
if ARGV[4] ~= '' and #picked < limit then
  local surplus = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
  if surplus > 0 then
    for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, math.min(surplus, limit) - 1)) do
      if not seen[member] and #picked < limit then picked[#picked + 1] = member end
    end
  end
end
if #picked == 0 then redis.call('DEL', KEYS[1]) end
return {cutoff, picked}
