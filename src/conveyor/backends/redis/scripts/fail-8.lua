-- Record a failed attempt of an owned job: retry later, or fail for good.
-- KEYS[1] job hash, KEYS[2] active, KEYS[3] delayed, KEYS[4] failed,
-- KEYS[5] retention set (task, failed), KEYS[6] gactive, KEYS[7] outbox, KEYS[8] marker.
-- ARGV[1] clock offset ms, ARGV[2] token, ARGV[3] error, ARGV[4] traceback ('' for none),
-- ARGV[5] retry in ms ('' to fail for good), ARGV[6] retention member ('' when retention is unlimited), ARGV[7] job id.
-- Returns: 1 done, 0 the token is not current (nothing changed).
local job = redis.call('HMGET', KEYS[1], 'state', 'token', 'group', 'queue', 'task',
  'started_at', 'run_at')
if job[1] ~= 'active' or job[2] ~= ARGV[2] then return 0 end
local now, id = now_ms(ARGV[1]), ARGV[7]
redis.call('HSET', KEYS[1], 'error', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'traceback', ARGV[4]) end
redis.call('HDEL', KEYS[1], 'token', 'lease_expires_at')
redis.call('ZREM', KEYS[2], id)
left_active(job[3], KEYS[6])
if ARGV[5] ~= '' then
  local due = now + tonumber(ARGV[5])
  emit_read(now, 'retrying', id, job[4], job[5], job[6], job[7], 'delayed', 'r', due, 'e', ARGV[3])
  redis.call('HSET', KEYS[1], 'state', 'delayed', 'run_at', due,
    'seq', ready_again(KEYS[1], due))
  redis.call('ZADD', KEYS[3], due, id)
  -- Due before anything an idle worker waits for: wake one to look again.
  if redis.call('ZRANK', KEYS[3], id) == 0 then wake(KEYS[8]) end
else
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', now)
  emit_read(now, 'failed', id, job[4], job[5], job[6], job[7], 'failed', 'e', ARGV[3])
  redis.call('ZADD', KEYS[4], now, id)
  if ARGV[6] ~= '' then redis.call('ZADD', KEYS[5], now, ARGV[6]) end
  child_done(KEYS[1], id, 'failed', ARGV[3], nil, KEYS[7])
end
return 1
