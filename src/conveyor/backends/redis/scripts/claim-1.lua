-- Lease waiting jobs that the caller peeked; a candidate already taken is skipped.
-- KEYS[1] queues hash, KEYS[2] queue limits hash (queue -> max active at once),
-- then per candidate c (0-based), 4 keys at 3 + 4c: job hash, waiting, active, marker.
-- ARGV[1] clock offset ms, ARGV[2] lease ms, ARGV[3] worker id,
-- then per candidate c, 3 values at 4 + 3c: id, queue, fresh token.
-- A candidate past its TTL deadline ('expires_at') is not claimed but
-- returned as expired, for the caller to cancel (cancel-6.lua).
-- Returns: {claimed, expired}: per claimed job {token, lease expiry, job fields};
--   the expired candidates' ids.
local now = now_ms(ARGV[1])
local expires = now + tonumber(ARGV[2])
local claimed, expired, paused, taken, room = {}, {}, {}, {}, {}
local n = (#KEYS - 2) / 4
for c = 0, n - 1 do
  local k, a = 3 + 4 * c, 4 + 3 * c
  local id, queue, token = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if paused[queue] == nil then
    paused[queue] = redis.call('HGET', KEYS[1], queue) == '1'
    local limit = redis.call('HGET', KEYS[2], queue)
    room[queue] = limit and tonumber(limit) - redis.call('ZCARD', KEYS[k + 2]) or n
    if room[queue] <= 0 then paused[queue] = true end  -- full: as if paused, this time
  end
  local deadline = not paused[queue] and redis.call('HGET', KEYS[k], 'expires_at')
  if deadline and tonumber(deadline) <= now then
    if redis.call('ZSCORE', KEYS[k + 1], id) then expired[#expired + 1] = id end
  elseif not paused[queue] and redis.call('ZREM', KEYS[k + 1], id) == 1 then
    if deadline then redis.call('HDEL', KEYS[k], 'expires_at') end
    redis.call('HINCRBY', KEYS[k], 'attempts', 1)
    redis.call('HSET', KEYS[k], 'state', 'active', 'token', token, 'lease_expires_at', expires,
      'worker_id', ARGV[3], 'started_at', now)
    redis.call('ZADD', KEYS[k + 2], expires, id)
    claimed[#claimed + 1] = {token, expires, read_job(KEYS[k])}
    taken[queue] = k
    room[queue] = room[queue] - 1
    if room[queue] <= 0 then paused[queue] = true end
  end
end
-- More left in a queue we took from: wake another worker for it.
for queue, k in pairs(taken) do
  if room[queue] > 0 and redis.call('ZCARD', KEYS[k + 1]) > 0 then wake(KEYS[k + 3]) end
end
return {claimed, expired}
