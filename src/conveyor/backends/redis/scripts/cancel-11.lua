-- Cancel a job that has not finished; an active job loses its lease.
-- KEYS[1] job hash, KEYS[2] waiting, KEYS[3] delayed, KEYS[4] active, KEYS[5] cancelled,
-- KEYS[6] retention set (task, cancelled), KEYS[7] gwaiting, KEYS[8] groups, KEYS[9] gactive,
-- KEYS[10] waiting_children, KEYS[11] outbox.
-- ARGV[1] clock offset ms, ARGV[2] retention member, ARGV[3] job id, ARGV[4] reason
-- (stored as the error), ARGV[5] '1' to cancel only a waiting job past its TTL
-- deadline ('expires_at'), else ''.
-- Returns: 1 cancelled, 0 finished, missing or (with ARGV[5]) not expired.
local job, id = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'group'), ARGV[3]
local state = job[1]
if not state or state == 'completed' or state == 'failed' or state == 'cancelled' then
  return 0
end
local now = now_ms(ARGV[1])
if ARGV[5] == '1' and (state ~= 'waiting' or not job[2] or tonumber(job[2]) > now) then
  return 0
end
if state == 'waiting' then from_waiting(KEYS[1], id, KEYS[2], KEYS[7], KEYS[8]) end
if state == 'active' then left_active(job[3], KEYS[9]) end
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZREM', KEYS[10], id)
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', now, 'error', ARGV[4])
redis.call('HDEL', KEYS[1], 'token', 'lease_expires_at', 'expires_at')
redis.call('ZADD', KEYS[5], now, id)
emit(now, 'cancelled', id, KEYS[1], 'cancelled', 'e', ARGV[4])
redis.call('ZADD', KEYS[6], now, ARGV[2])
child_done(KEYS[1], id, 'cancelled', ARGV[4], nil, KEYS[11])
return 1
