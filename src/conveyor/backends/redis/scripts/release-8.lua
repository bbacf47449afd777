-- Give an owned job back to waiting (shutdown, or the job was rate limited): no
-- attempt used, no stall counted; optionally hold its queue or group for a while.
-- KEYS[1] job hash, KEYS[2] active, KEYS[3] waiting, KEYS[4] marker, KEYS[5] gwaiting,
-- KEYS[6] groups, KEYS[7] gactive, KEYS[8] limits hash (a hold is the field 'h' of the
-- queue's or the group's scope: limit_field and limit_scope in lib.lua).
-- ARGV[1] clock offset ms, ARGV[2] token, ARGV[3] job id,
-- ARGV[4] hold ms ('' for none), ARGV[5] '1' to hold the job's group (if it has one)
-- instead of its queue, ARGV[6] the queue's name.
-- Returns: 1 done, 0 the token is not current (nothing changed).
local job = redis.call('HMGET', KEYS[1], 'state', 'token', 'attempts', 'group')
if job[1] ~= 'active' or job[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'waiting',
  'attempts', math.max(tonumber(job[3] or 0) - 1, 0))
redis.call('HDEL', KEYS[1], 'token', 'lease_expires_at', 'worker_id')
redis.call('ZREM', KEYS[2], ARGV[3])
left_active(job[4], KEYS[7])
to_waiting(KEYS[1], ARGV[3], KEYS[3], KEYS[5], KEYS[6])
emit(now_ms(ARGV[1]), 'waiting', ARGV[3], KEYS[1], 'waiting')
if ARGV[4] ~= '' then
  local held = ARGV[5] == '1' and job[4]  -- the group held, or false: the queue
  local field = limit_field(limit_scope(ARGV[6], held), 'h')
  local until_ms = now_ms(ARGV[1]) + tonumber(ARGV[4])
  if until_ms > tonumber(redis.call('HGET', KEYS[8], field) or 0) then
    redis.call('HSET', KEYS[8], field, until_ms)
  end
else
  wake(KEYS[4])
end
return 1
