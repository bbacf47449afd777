-- Complete owned jobs with their results; one call carries one job or many
-- (completions of one loop turn, merged by batch.py), each checked on its own.
-- KEYS: no fixed keys; per job j (0-based), 6 keys at 1 + 6j: job hash, active,
--   completed, retention set (task, completed), gactive, outbox.
-- ARGV[1] clock offset ms,
-- then per job j, 4 values at 2 + 4j: token, result JSON,
--   retention member ('' when retention is unlimited: nothing to track), job id.
-- Returns: per job, 1 done or 0 the token is not current (nothing changed for it).
local now = now_ms(ARGV[1])
local done = {}
for j = 0, #KEYS / 6 - 1 do
  local k, a = 1 + 6 * j, 2 + 4 * j
  local job = redis.call('HMGET', KEYS[k], 'state', 'token', 'group', 'parent')
  if job[1] ~= 'active' or job[2] ~= ARGV[a] then
    done[j + 1] = 0
  else
    local id = ARGV[a + 3]
    redis.call('HSET', KEYS[k], 'state', 'completed', 'result', ARGV[a + 1], 'finished_at', now)
    redis.call('HDEL', KEYS[k], 'token', 'lease_expires_at', 'error', 'traceback')
    redis.call('ZREM', KEYS[k + 1], id)
    left_active(job[3], KEYS[k + 4])
    redis.call('ZADD', KEYS[k + 2], now, id)
    if ARGV[a + 2] ~= '' then redis.call('ZADD', KEYS[k + 3], now, ARGV[a + 2]) end
    if job[4] then child_done(KEYS[k], id, 'completed', nil, ARGV[a + 1], KEYS[k + 5]) end
    done[j + 1] = 1
  end
end
return done
