-- Put jobs of one queue whose lease expired back to waiting, or fail them as stalled.
-- KEYS[1] active, KEYS[2] waiting, KEYS[3] failed, KEYS[4] marker,
-- then per candidate c (0-based), 2 keys at 5 + 2c: job hash, retention set (task, failed).
-- ARGV[1] clock offset ms, ARGV[2] max stalls, then per candidate at 3 + 2c: id, member.
-- Returns: {requeued ids, failed ids}.
local now = now_ms(ARGV[1])
local max_stalls = tonumber(ARGV[2])
local requeued, dead = {}, {}
for c = 0, (#KEYS - 4) / 2 - 1 do
  local k, a = 5 + 2 * c, 3 + 2 * c
  local id, job_key = ARGV[a], KEYS[k]
  local expiry = redis.call('ZSCORE', KEYS[1], id)
  if expiry and tonumber(expiry) < now then
    local job = redis.call('HMGET', job_key, 'stalls', 'attempts')
    local stalls = tonumber(job[1] or 0)
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', job_key, 'token', 'lease_expires_at')
    if stalls < max_stalls then
      redis.call('HSET', job_key, 'state', 'waiting', 'stalls', stalls + 1,
        'attempts', math.max(tonumber(job[2] or 0) - 1, 0))
      redis.call('HDEL', job_key, 'worker_id')
      redis.call('ZADD', KEYS[2], waiting_score(job_key), id)
      requeued[#requeued + 1] = id
    else
      redis.call('HSET', job_key, 'state', 'failed', 'stalls', stalls + 1, 'finished_at', now,
        'error', 'stalled')
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('ZADD', KEYS[k + 1], now, ARGV[a + 1])
      dead[#dead + 1] = id
    end
  end
end
if #requeued > 0 then wake(KEYS[4]) end
return {requeued, dead}
