-- Move delayed jobs of one queue to waiting: the due ones, or all named (force).
-- KEYS[1] delayed, KEYS[2] waiting, KEYS[3] marker, KEYS[4] gwaiting, KEYS[5] groups,
-- KEYS[6..] job hash per candidate.
-- ARGV[1] clock offset ms, ARGV[2] '1' to promote even if not due yet,
-- ARGV[3..] candidate ids (candidate i is ARGV[2 + i], its job hash KEYS[5 + i]).
-- Returns: {promoted count, due time of the next delayed job or -1}.
local now = now_ms(ARGV[1])
local force = ARGV[2] == '1'
local promoted = 0
for i = 3, #ARGV do
  local id, job_key = ARGV[i], KEYS[i + 3]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and (force or tonumber(due) <= now) then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', job_key, 'state', 'waiting')
    if force then
      redis.call('HSET', job_key, 'run_at', now, 'seq', ready_again(job_key, now))
    end
    to_waiting(job_key, id, KEYS[2], KEYS[4], KEYS[5])
    emit(now, 'waiting', id, job_key, 'waiting')
    promoted = promoted + 1
  end
end
if promoted > 0 then wake(KEYS[3]) end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next_due == 0 then return {promoted, -1} end
return {promoted, tonumber(next_due[2])}
