-- Store progress, its detail and log lines of an owned job.
-- KEYS[1] job hash, KEYS[2] log list.
-- ARGV[1] clock offset ms, ARGV[2] token, ARGV[3] progress ('' to keep),
-- ARGV[4] detail JSON ('' to keep), ARGV[5] job id, ARGV[6..] log lines.
-- Returns: 1 stored, 0 the token is not current (nothing changed).
local job = redis.call('HMGET', KEYS[1], 'state', 'token')
if job[1] ~= 'active' or job[2] ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'progress_detail', ARGV[4]) end
if ARGV[3] ~= '' or ARGV[4] ~= '' then
  local p = redis.call('HMGET', KEYS[1], 'progress', 'progress_detail')
  emit(now_ms(ARGV[1]), 'progress', ARGV[5], KEYS[1], 'active', 'p', p[1] or '0', 'd', p[2] or '')
end
if #ARGV > 5 then
  local now = now_ms(ARGV[1])
  for i = 6, #ARGV do redis.call('RPUSH', KEYS[2], now .. ':' .. ARGV[i]) end
end
return 1
