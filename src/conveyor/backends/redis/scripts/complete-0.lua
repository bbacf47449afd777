-- Complete owned jobs with their results; one call carries one job or many
-- (completions of one loop turn, merged by batch.py), each checked on its own.
-- KEYS: no fixed keys; per job, in order, 4 keys: job hash, active, completed,
--   retention set (task, completed); then, for a job in a group or a flow, 2
--   more: gactive, outbox.
-- ARGV[1] clock offset ms,
-- then per job j, 5 values at 2 + 5j: token, result JSON, retention member ('' when
--   retention is unlimited: nothing to track), job id, '1' if it has the 2 more keys.
-- Returns: per job, 1 done or 0 the token is not current (nothing changed for it).
local now = now_ms(ARGV[1])
local done = {}
local k = 1
for j = 0, (#ARGV - 1) / 5 - 1 do
  local a = 2 + 5 * j
  local more = ARGV[a + 4] == '1'
  local job
  if more then
    job = redis.call('HMGET', KEYS[k], 'state', 'token', 'queue', 'task', 'started_at', 'run_at',
      'group', 'parent')
  else
    job = redis.call('HMGET', KEYS[k], 'state', 'token', 'queue', 'task', 'started_at', 'run_at')
  end
  if job[1] ~= 'active' or job[2] ~= ARGV[a] then
    done[j + 1] = 0
  else
    local id = ARGV[a + 3]
    redis.call('HSET', KEYS[k], 'state', 'completed', 'result', ARGV[a + 1], 'finished_at', now)
    emit_read(now, 'completed', id, job[3], job[4], job[5], job[6], 'completed', 'res',
      ARGV[a + 1])
    redis.call('HDEL', KEYS[k], 'token', 'lease_expires_at', 'error', 'traceback')
    redis.call('ZREM', KEYS[k + 1], id)
    redis.call('ZADD', KEYS[k + 2], now, id)
    if ARGV[a + 2] ~= '' then redis.call('ZADD', KEYS[k + 3], now, ARGV[a + 2]) end
    if more then
      left_active(job[7], KEYS[k + 4])
      if job[8] then child_done(KEYS[k], id, 'completed', nil, ARGV[a + 1], KEYS[k + 5]) end
    end
    done[j + 1] = 1
  end
  if more then k = k + 6 else k = k + 4 end
end
return done
