-- Give an owned job back to waiting (shutdown): no attempt used, no stall counted.
-- KEYS[1] job hash, KEYS[2] active, KEYS[3] waiting, KEYS[4] marker.
-- ARGV[1] token, ARGV[2] job id.
-- Returns: 1 done, 0 the token is not current (nothing changed).
local job = redis.call('HMGET', KEYS[1], 'state', 'token', 'attempts')
if job[1] ~= 'active' or job[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'waiting',
  'attempts', math.max(tonumber(job[3] or 0) - 1, 0))
redis.call('HDEL', KEYS[1], 'token', 'lease_expires_at', 'worker_id')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], waiting_score(KEYS[1]), ARGV[2])
wake(KEYS[4])
return 1
