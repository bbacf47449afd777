-- Complete an owned job with its result.
-- KEYS[1] job hash, KEYS[2] active, KEYS[3] completed, KEYS[4] retention set (task, completed).
-- ARGV[1] clock offset ms, ARGV[2] token, ARGV[3] result JSON,
-- ARGV[4] retention member ('' when retention is unlimited: nothing to track), ARGV[5] job id.
-- Returns: 1 done, 0 the token is not current (nothing changed).
local job = redis.call('HMGET', KEYS[1], 'state', 'token')
if job[1] ~= 'active' or job[2] ~= ARGV[2] then return 0 end
local now, id = now_ms(ARGV[1]), ARGV[5]
redis.call('HSET', KEYS[1], 'state', 'completed', 'result', ARGV[3], 'finished_at', now)
redis.call('HDEL', KEYS[1], 'token', 'lease_expires_at', 'error', 'traceback')
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], now, id)
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], now, ARGV[4]) end
return 1
