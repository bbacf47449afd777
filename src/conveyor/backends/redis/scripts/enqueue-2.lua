-- Add jobs; a job whose id exists is left alone.
-- KEYS[1] seq counter, KEYS[2] queues hash,
-- then per job j (0-based), 4 keys at 3 + 4j: job hash, waiting, delayed, marker.
-- ARGV[1] clock offset ms,
-- then per job j, 10 values at 2 + 10j: id, task, queue, payload, options,
--   priority, lifo (0/1), delay_ms, run_at_ms ('' for none), max_attempts.
-- Returns: an array with 1 (added) or 0 (id existed) per job.
local now = now_ms(ARGV[1])
local n = (#KEYS - 2) / 4
local last = redis.call('INCRBY', KEYS[1], n)
local created = {}
for j = 0, n - 1 do
  local k, a = 3 + 4 * j, 2 + 10 * j
  local job_key = KEYS[k]
  if redis.call('EXISTS', job_key) == 1 then
    created[j + 1] = 0
  else
    local seq = last - n + 1 + j
    local sub = 8796093022208 + seq
    if ARGV[a + 6] == '1' then sub = 8796093022208 - seq end
    local run_at = now + tonumber(ARGV[a + 7])
    if ARGV[a + 8] ~= '' then run_at = tonumber(ARGV[a + 8]) end
    local state = 'delayed'
    if run_at <= now then
      state = 'waiting'
      run_at = now
    end
    redis.call('HSET', job_key, 'id', ARGV[a], 'task', ARGV[a + 1], 'queue', ARGV[a + 2],
      'payload', ARGV[a + 3], 'options', ARGV[a + 4], 'priority', ARGV[a + 5], 'seq', sub,
      'run_at', run_at, 'state', state, 'attempts', 0, 'max_attempts', ARGV[a + 9],
      'stalls', 0, 'progress', 0, 'created_at', now)
    if state == 'waiting' then
      redis.call('ZADD', KEYS[k + 1], waiting_score(job_key), ARGV[a])
      wake(KEYS[k + 3])
    else
      redis.call('ZADD', KEYS[k + 2], run_at, ARGV[a])
    end
    redis.call('HSETNX', KEYS[2], ARGV[a + 2], '0')
    created[j + 1] = 1
  end
end
return created
