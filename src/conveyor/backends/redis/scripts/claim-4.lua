-- Lease the waiting jobs the caller picked (after a peek), in its order; a
-- candidate taken meanwhile, or whose queue or group has reached a limit, is skipped.
-- KEYS[1] queues hash, KEYS[2] limits hash (with the holds), KEYS[3] turns hash,
-- KEYS[4] seq counter (turns are numbered from it),
-- then per queue q (0-based), 8 keys at 5 + 8q: waiting, gwaiting, groups, gactive, active,
--   marker, rate, grate,
-- then per candidate c (0-based), its job hash at 5 + 8 * (number of queues) + c.
-- ARGV[1] clock offset ms, ARGV[2] lease ms, ARGV[3] worker id, ARGV[4] number of queues
-- (nq), ARGV[5 .. 4 + nq] their names,
-- then per candidate c, 3 values at 5 + nq + 3c: id, queue index (0-based), fresh token.
-- A candidate past its TTL deadline ('expires_at') is not claimed but returned as
-- expired, for the caller to cancel (cancel-11.lua).
-- Returns: {claimed, expired}: per claimed job {token, lease expiry, job fields, id};
--   the expired candidates' ids.
local now = now_ms(ARGV[1])
local expires = now + tonumber(ARGV[2])
local nq = tonumber(ARGV[4])
local first_job = 5 + 8 * nq
local queues, groups = {}, {}
local claimed, expired, served, taken = {}, {}, {}, {}

local function queue_state(q)
  local s = queues[q]
  if s then return s end
  local k, queue = 5 + 8 * q, ARGV[5 + q]
  s = {room = 1e15, rotated = redis.call('EXISTS', KEYS[k + 2]) == 1}
  local max_active, rate_max, rate_ms, hold = queue_limits(KEYS[2], queue, now)
  if hold or redis.call('HGET', KEYS[1], queue) == '1' then
    s.room = 0
  else
    if max_active then s.room = max_active - redis.call('ZCARD', KEYS[k + 4]) end
    if rate_max then
      s.rate_ms = rate_ms
      s.room = math.min(s.room, (queue_rate_room(KEYS[k + 6], now, rate_max, rate_ms)))
    end
  end
  queues[q] = s
  return s
end

local function group_state(q, group)
  local k, queue = 5 + 8 * q, ARGV[5 + q]
  local scope = limit_scope(queue, group)
  local s = groups[scope]
  if s then return s end
  s = {room = 1e15, q = q, group = group}
  local max_active, rate_max, rate_ms, hold = group_limits(KEYS[2], queue, group, now)
  if hold then
    s.room = 0
  else
    if max_active then
      s.room = max_active - tonumber(redis.call('HGET', KEYS[k + 3], group) or 0)
    end
    if rate_max then
      s.rate_ms = rate_ms
      s.room = math.min(s.room, (group_rate_room(KEYS[k + 7], group, now, rate_max, rate_ms)))
    end
  end
  groups[scope] = s
  return s
end

for c = 0, #KEYS - first_job do
  local job_key, a = KEYS[first_job + c], 5 + nq + 3 * c
  local id, q, token = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local k = 5 + 8 * q
  local qs = queue_state(q)
  local job = redis.call('HMGET', job_key, 'state', 'expires_at', 'group')
  local group = job[3]
  local gs = group and group_state(q, group)
  if job[1] ~= 'waiting' or qs.room <= 0 or (gs and gs.room <= 0) then
    -- taken meanwhile, or held back by a limit: left waiting
  elseif job[2] and tonumber(job[2]) <= now then
    expired[#expired + 1] = id
  elseif (not group and redis.call('ZREM', KEYS[k], id) == 1)
      or (group and from_waiting(job_key, id, KEYS[k], KEYS[k + 1], KEYS[k + 2]) == 1) then
    if job[2] then redis.call('HDEL', job_key, 'expires_at') end
    claimed[#claimed + 1] = lease(job_key, id, KEYS[k + 4], token, expires, ARGV[3], now)
    qs.room = qs.room - 1
    if qs.rate_ms then redis.call('ZADD', KEYS[k + 6], now, token) end
    if gs then
      gs.room = gs.room - 1
      redis.call('HINCRBY', KEYS[k + 3], group, 1)
      if gs.rate_ms then
        redis.call('ZADD', KEYS[k + 7], 0, group_mark(group, now) .. '\0' .. token)
      end
    end
    if qs.rotated or gs then served[#served + 1] = {q, group} end
    taken[q] = true
  end
end

-- Rate logs keep only what their windows still need.
for q, s in pairs(queues) do
  if s.rate_ms and taken[q] then
    local log = KEYS[5 + 8 * q + 6]
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - s.rate_ms)
    redis.call('PEXPIRE', log, s.rate_ms + 1000)
  end
end
for _, s in pairs(groups) do
  if s.rate_ms then
    local log = KEYS[5 + 8 * s.q + 7]
    local from = group_range(s.group)
    redis.call('ZREMRANGEBYLEX', log, from, '(' .. group_mark(s.group, now - s.rate_ms + 1))
    -- The set is every group's: it lives as long as the longest window needs.
    local ttl = redis.call('PTTL', log)
    if ttl == -1 or (ttl >= 0 and ttl < s.rate_ms + 1000) then
      redis.call('PEXPIRE', log, s.rate_ms + 1000)
    end
  end
end

-- The served move to the back of their rotation, in the order served.
if #served > 0 then
  local last = redis.call('INCRBY', KEYS[4], #served)
  for i, s in ipairs(served) do
    local turn = last - #served + i
    if s[2] then
      redis.call('ZADD', KEYS[5 + 8 * s[1] + 2], 'XX', turn, s[2])
    else
      redis.call('HSET', KEYS[3], ARGV[5 + s[1]], turn)
    end
  end
end

-- More left in a queue we took from: wake another worker for it.
for q in pairs(taken) do
  local k, s = 5 + 8 * q, queues[q]
  if s.room > 0 and (redis.call('ZCARD', KEYS[k]) > 0
      or s.rotated and redis.call('ZCARD', KEYS[k + 1]) > 0) then
    wake(KEYS[k + 5])
  end
end
return {claimed, expired}
