-- Record a schedule's last fired tick, never moving it back.
-- KEYS[1] schedule ticks hash (schedule id -> tick ms).
-- ARGV[1] schedule id, ARGV[2] tick ms.
-- Returns: 1 recorded, 0 a later tick was already recorded.
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
