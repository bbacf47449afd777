-- Change a job that has not started: its due time, priority, order, arguments.
-- KEYS[1] job hash, KEYS[2] waiting, KEYS[3] delayed, KEYS[4] marker, KEYS[5] gwaiting,
-- KEYS[6] groups, KEYS[7] seq counter (LIFO order).
-- ARGV[1] clock offset ms, ARGV[2] job id, ARGV[3] the new due time (ms) or '',
-- ARGV[4] priority or '', ARGV[5] '1' LIFO, '0' FIFO or '' as it is, ARGV[6] the
-- new 'data' (the same job with other arguments) or ''.
-- Returns: 1 changed, 0 not changeable (started, finished, or waiting for its
-- children, for a due time), -1 no such job.
local id, job_key = ARGV[2], KEYS[1]
local state = redis.call('HGET', job_key, 'state')
if not state then return -1 end
if state ~= 'waiting' and state ~= 'delayed' and state ~= 'waiting_children' then return 0 end
if ARGV[3] ~= '' and state == 'waiting_children' then return 0 end
local now = now_ms(ARGV[1])
-- Out of the waiting order while its place changes (not for new arguments
-- alone); back in below, its group keeping its turn.
local reorder = ARGV[3] ~= '' or ARGV[4] ~= '' or ARGV[5] ~= ''
local group = redis.call('HGET', job_key, 'group')
local turn = group and redis.call('ZSCORE', KEYS[6], group)
if state == 'waiting' and reorder then from_waiting(job_key, id, KEYS[2], KEYS[5], KEYS[6]) end
local moved, run_at = state, tonumber(redis.call('HGET', job_key, 'run_at'))
if ARGV[3] ~= '' then
  run_at = math.max(tonumber(ARGV[3]), now)
  moved = 'delayed'
  if run_at <= now then moved = 'waiting' end
  if moved ~= state then redis.call('HSET', job_key, 'seq', ready_again(job_key, run_at)) end
  redis.call('HSET', job_key, 'state', moved, 'run_at', run_at)
end
if ARGV[5] == '1' then
  redis.call('HSET', job_key, 'seq', lifo_seq(redis.call('INCR', KEYS[7])))
elseif ARGV[5] == '0' then
  redis.call('HSET', job_key, 'seq', ready_seq(run_at))
end
if ARGV[4] ~= '' then redis.call('HSET', job_key, 'priority', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('HSET', job_key, 'data', ARGV[6]) end
if moved == 'delayed' then
  redis.call('ZADD', KEYS[3], run_at, id)
  -- Due before anything an idle worker waits for: wake one to look again.
  if redis.call('ZRANK', KEYS[3], id) == 0 then wake(KEYS[4]) end
elseif state == 'delayed' then
  redis.call('ZREM', KEYS[3], id)
end
if moved == 'waiting' and (state ~= 'waiting' or reorder) then
  to_waiting(job_key, id, KEYS[2], KEYS[5], KEYS[6])
  if state == 'waiting' and turn then redis.call('ZADD', KEYS[6], turn, group) end
  wake(KEYS[4])
end
local kind = moved
if moved == state then kind = 'changed' end
emit(now, kind, id, job_key, moved, 'r', run_at)
return 1
