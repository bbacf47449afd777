-- Put jobs of one queue whose lease expired back to waiting, or fail them as
-- stalled; each gets a 'stalled: ...' line in its log.
-- KEYS[1] active, KEYS[2] waiting, KEYS[3] failed, KEYS[4] marker, KEYS[5] gwaiting,
-- KEYS[6] groups, KEYS[7] gactive, KEYS[8] outbox,
-- then per candidate c (0-based), 3 keys at 9 + 3c: job hash, retention set (task, failed),
--   log list.
-- ARGV[1] clock offset ms, ARGV[2] max stalls,
-- then per candidate at 3 + 3c: id, retention member, the lease expiry seen
--   ('' for any: reclaim if expired; else only if the lease still has that expiry).
-- Returns: {requeued ids, failed ids}.
local now = now_ms(ARGV[1])
local max_stalls = tonumber(ARGV[2])
local requeued, dead = {}, {}
for c = 0, (#KEYS - 8) / 3 - 1 do
  local k, a = 9 + 3 * c, 3 + 3 * c
  local id, job_key = ARGV[a], KEYS[k]
  local expiry = redis.call('ZSCORE', KEYS[1], id)
  if expiry and tonumber(expiry) < now
      and (ARGV[a + 2] == '' or tonumber(expiry) == tonumber(ARGV[a + 2])) then
    local job = redis.call('HMGET', job_key, 'stalls', 'attempts', 'group')
    local stalls = tonumber(job[1] or 0) + 1
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', job_key, 'token', 'lease_expires_at')
    left_active(job[3], KEYS[7])
    local message
    if stalls <= max_stalls then
      redis.call('HSET', job_key, 'state', 'waiting', 'stalls', stalls,
        'attempts', math.max(tonumber(job[2] or 0) - 1, 0))
      redis.call('HDEL', job_key, 'worker_id')
      to_waiting(job_key, id, KEYS[2], KEYS[5], KEYS[6])
      emit(now, 'stalled', id, job_key, 'waiting')
      requeued[#requeued + 1] = id
      message = 'stalled: lease expired; back to waiting (stall ' .. stalls .. ' of '
        .. max_stalls .. ')'
    else
      redis.call('HSET', job_key, 'state', 'failed', 'stalls', stalls, 'finished_at', now,
        'error', 'stalled')
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('ZADD', KEYS[k + 1], now, ARGV[a + 1])
      emit(now, 'stalled', id, job_key, 'failed', 'e', 'stalled')
      dead[#dead + 1] = id
      child_done(job_key, id, 'failed', 'stalled', nil, KEYS[8])
      message = 'stalled: lease expired; failed after ' .. stalls .. ' stalls (max_stalls '
        .. max_stalls .. ')'
    end
    redis.call('RPUSH', KEYS[k + 2], now .. ':' .. message)
  end
end
if #requeued > 0 then wake(KEYS[4]) end
return {requeued, dead}
