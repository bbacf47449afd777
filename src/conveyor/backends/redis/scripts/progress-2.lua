-- Store progress, its detail and log lines of an owned job.
-- KEYS[1] job hash, KEYS[2] log list.
-- ARGV[1] clock offset ms, ARGV[2] token, ARGV[3] progress ('' to keep),
-- ARGV[4] detail JSON ('' to keep), ARGV[5..] log lines.
-- Returns: 1 stored, 0 the token is not current (nothing changed).
local job = redis.call('HMGET', KEYS[1], 'state', 'token')
if job[1] ~= 'active' or job[2] ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'progress_detail', ARGV[4]) end
if #ARGV > 4 then
  local now = now_ms(ARGV[1])
  for i = 5, #ARGV do redis.call('RPUSH', KEYS[2], now .. ':' .. ARGV[i]) end
end
return 1
