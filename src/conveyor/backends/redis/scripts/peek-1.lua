-- Read-only look at queues before a claim or a wait: changes nothing.
-- KEYS[1] queues hash, then per queue q (0-based), 2 keys at 2 + 2q: waiting, delayed.
-- ARGV[1] clock offset ms, ARGV[2] how many waiting candidates per queue (0 for none),
-- then per queue q, ARGV[3 + q]: the queue's name.
-- Returns: {now, then per queue {paused 0/1, {id, score, id, score...}, next due or -1}}.
local now = now_ms(ARGV[1])
local limit = tonumber(ARGV[2])
local result = {now}
for q = 0, (#KEYS - 1) / 2 - 1 do
  local paused = 0
  if redis.call('HGET', KEYS[1], ARGV[3 + q]) == '1' then paused = 1 end
  local waiting = {}
  if limit > 0 and paused == 0 then
    waiting = redis.call('ZRANGE', KEYS[2 + 2 * q], 0, limit - 1, 'WITHSCORES')
  end
  local head = redis.call('ZRANGE', KEYS[3 + 2 * q], 0, 0, 'WITHSCORES')
  local due = -1
  if #head > 0 then due = tonumber(head[2]) end
  result[#result + 1] = {paused, waiting, due}
end
return result
