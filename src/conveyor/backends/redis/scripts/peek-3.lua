-- Look at queues before a claim or a wait: changes nothing, but for a wait
-- that registers to be handed jobs (enqueue-3.lua) in some of the queues.
-- KEYS[1] queues hash, KEYS[2] limits hash (with the holds),
-- KEYS[3] turns hash (queue -> turn of its jobs without a group),
-- then per queue q (0-based), 9 keys at 4 + 9q: waiting, delayed, gwaiting, groups,
--   gactive, active, rate, grate, idle.
-- ARGV[1] clock offset ms, ARGV[2] the registration of a wait ('' none): its
-- list, worker id and lease ms, NUL separated; ARGV[3] for how long (ms) it holds,
-- then per queue q, 3 values at 4 + 3q: the queue's name, the room wanted in it
-- (0: only due times and holds), 1 to register the wait in it (else 0).
-- A wait registers only in a queue it finds nothing ready in.
-- Returns: {now, then per queue {paused 0/1, {id, score, ...} of its first waiting jobs
--   without a group, next delayed due or -1, room (jobs the queue may start now, at most
--   the room wanted), until when the queue's own hold or full rate window lasts or -1, rotation}},
--   where rotation is {} for a queue without groups, else {turn of its jobs without a
--   group, {group, turn, waiting, room, ...} for the groups with room in turn order (as
--   many as the queue's room at most), when the first group held back frees or -1}.
local now = now_ms(ARGV[1])
local GROUPS_PAGE = 100

local function rotation(queue, k, room)
  local eligible, free_at, n, start = {}, -1, 0, 0
  local function note(at)
    if at and (free_at < 0 or at < free_at) then free_at = at end
  end
  while n < room do
    local page = redis.call('ZRANGE', KEYS[k + 3], start, start + GROUPS_PAGE - 1, 'WITHSCORES')
    if #page == 0 then break end
    for i = 1, #page, 2 do
      local group = page[i]
      local max_active, rate_max, rate_ms, hold = group_limits(KEYS[2], queue, group, now)
      local group_room = room
      if hold then
        note(hold)
        group_room = 0
      else
        if max_active then
          local active = tonumber(redis.call('HGET', KEYS[k + 4], group) or 0)
          group_room = math.min(group_room, max_active - active)
        end
        if rate_max and group_room > 0 then
          local free, at = group_rate_room(KEYS[k + 7], group, now, rate_max, rate_ms)
          group_room = math.min(group_room, free)
          note(at)
        end
      end
      if group_room > 0 then
        local from, to = group_range(group)
        local waiting = redis.call('ZLEXCOUNT', KEYS[k + 2], from, to)
        eligible[#eligible + 1] = group
        eligible[#eligible + 1] = tonumber(page[i + 1])
        eligible[#eligible + 1] = waiting
        eligible[#eligible + 1] = group_room
        n = n + 1
        if n >= room then break end
      end
    end
    start = start + GROUPS_PAGE
  end
  return {tonumber(redis.call('HGET', KEYS[3], queue) or 0), eligible, free_at}
end

local result = {now}
for q = 0, (#KEYS - 3) / 9 - 1 do
  local k, queue, want = 4 + 9 * q, ARGV[4 + 3 * q], tonumber(ARGV[5 + 3 * q])
  local paused = redis.call('HGET', KEYS[1], queue) == '1'
  local head = redis.call('ZRANGE', KEYS[k + 1], 0, 0, 'WITHSCORES')
  local due = -1
  if #head > 0 then due = tonumber(head[2]) end
  local room, held, waiting, groups = 0, -1, {}, {}
  if not paused then
    room = want
    local max_active, rate_max, rate_ms, hold = queue_limits(KEYS[2], queue, now)
    if hold then
      room, held = 0, hold
    else
      if max_active then room = math.min(room, max_active - redis.call('ZCARD', KEYS[k + 5])) end
      if rate_max then
        local free, at = queue_rate_room(KEYS[k + 6], now, rate_max, rate_ms)
        room = math.min(room, free)
        if at then held = at end
      end
    end
  end
  if room > 0 then
    waiting = redis.call('ZRANGE', KEYS[k], 0, room - 1, 'WITHSCORES')
    if redis.call('EXISTS', KEYS[k + 3]) == 1 then groups = rotation(queue, k, room) end
  end
  if ARGV[6 + 3 * q] == '1' and redis.call('ZCARD', KEYS[k]) == 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 8], '-inf', now)  -- waits that died
    redis.call('ZADD', KEYS[k + 8], now + tonumber(ARGV[3]), ARGV[2])
  end
  result[#result + 1] = {paused and 1 or 0, waiting, due, math.max(room, 0), held, groups}
end
return result
