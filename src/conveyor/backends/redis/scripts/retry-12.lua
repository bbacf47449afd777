-- Send a finished job back to waiting with fresh attempts.
-- KEYS[1] job hash, KEYS[2] failed, KEYS[3] cancelled, KEYS[4] waiting, KEYS[5] marker,
-- KEYS[6] retention set (task, failed), KEYS[7] ... (task, cancelled),
-- KEYS[8] gwaiting, KEYS[9] groups, KEYS[10] waiting_children, KEYS[11] completed,
-- KEYS[12] retention set (task, completed).
-- A flow's parent with children still unfinished waits for them again.
-- ARGV[1] clock offset ms, ARGV[2] retention member, ARGV[3] the states it may be
-- in, each between commas (',failed,cancelled,'), ARGV[4] job id.
-- Returns: 1 moved, 0 in none of those states, or missing.
local state, id = redis.call('HGET', KEYS[1], 'state'), ARGV[4]
if not state or not string.find(ARGV[3], ',' .. state .. ',', 1, true) then return 0 end
local now = now_ms(ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'waiting', 'seq', ready_seq(now), 'run_at', now,
  'attempts', 0, 'stalls', 0, 'progress', 0)
redis.call('HDEL', KEYS[1], 'error', 'traceback', 'result', 'progress_detail', 'started_at',
  'finished_at', 'worker_id')
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[11], id)
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[7], ARGV[2])
redis.call('ZREM', KEYS[12], ARGV[2])
if tonumber(redis.call('HGET', KEYS[1], 'pending') or 0) > 0 then
  redis.call('HSET', KEYS[1], 'state', 'waiting_children')
  redis.call('ZADD', KEYS[10], now, id)
  emit(now, 'waiting_children', id, KEYS[1], 'waiting_children')
  return 1
end
to_waiting(KEYS[1], id, KEYS[4], KEYS[8], KEYS[9])
emit(now, 'waiting', id, KEYS[1], 'waiting')
wake(KEYS[5])
return 1
