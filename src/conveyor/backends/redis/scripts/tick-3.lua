-- Record a schedule's last fired tick, never moving it back, its count and its event.
-- KEYS[1] schedule ticks hash (schedule id -> tick ms), KEYS[2] schedule counts hash
-- (schedule id -> ticks fired), KEYS[3] the tick's job hash (any key when ARGV[3] is '').
-- ARGV[1] schedule id, ARGV[2] tick ms, ARGV[3] the tick's job id ('' for a tick
-- noted without firing, as a resume does: not counted), ARGV[4] clock offset ms.
-- Returns: 1 recorded, 0 a later tick was already recorded.
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  emit(now_ms(ARGV[4]), 'tick', ARGV[3], KEYS[3], nil, 'sch', ARGV[1])
end
return 1
