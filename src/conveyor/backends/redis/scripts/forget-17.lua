-- Forget an emptied queue: its entry, limits, turn and per-queue structures.
-- KEYS[1] queues hash, KEYS[2] limits hash, KEYS[3] turns hash; then its state sets,
-- which must all be empty: KEYS[4..11] waiting, delayed, active, completed, failed,
-- cancelled, waiting_children, gwaiting; then what goes with it: KEYS[12..17] groups,
-- gactive, rate, grate, marker, idle.
-- ARGV[1] queue.
-- Returns: 1 forgotten, 0 it has jobs again (an enqueue came first: remove those).
for i = 4, 11 do
  if redis.call('ZCARD', KEYS[i]) > 0 then return 0 end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local prefix = ARGV[1] .. '\0'
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', KEYS[2], field) end
end
for i = 12, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
