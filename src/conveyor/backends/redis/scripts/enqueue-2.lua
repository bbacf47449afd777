-- Add jobs; a job whose id exists is left alone.
-- KEYS[1] seq counter, KEYS[2] queues hash,
-- then per queue q (0-based), 3 keys at 3 + 3q: waiting, delayed, marker,
-- then per job j (0-based), its job hash at 3 + 3 * (number of queues) + j.
-- ARGV[1] clock offset ms, ARGV[2] number of queues, ARGV[3..] the queues' names,
-- then last: a JSON array with per job
--   [id, task, queue index (0-based), payload, options, priority, lifo (0/1),
--    delay_ms, run_at_ms or null, max_attempts].
-- Returns: an array with 1 (added) or 0 (id existed) per job.
local now = now_ms(ARGV[1])
local nq = tonumber(ARGV[2])
local jobs = cjson.decode(ARGV[3 + nq])
local n = #jobs
local first_job_key = 3 + 3 * nq
local last = redis.call('INCRBY', KEYS[1], n)
local created, woken = {}, {}
for j = 1, n do
  local job = jobs[j]
  local id, q = job[1], job[3]
  local job_key = KEYS[first_job_key + j - 1]
  if redis.call('EXISTS', job_key) == 1 then
    created[j] = 0
  else
    local seq = last - n + j
    local sub = 8796093022208 + seq
    if job[7] == 1 then sub = 8796093022208 - seq end
    local run_at = now + job[8]
    if job[9] ~= cjson.null then run_at = job[9] end
    local state = 'delayed'
    if run_at <= now then
      state = 'waiting'
      run_at = now
    end
    redis.call('HSET', job_key, 'id', id, 'task', job[2], 'queue', ARGV[3 + q],
      'payload', job[4], 'options', job[5], 'priority', job[6], 'seq', sub,
      'run_at', run_at, 'state', state, 'attempts', 0, 'max_attempts', job[10],
      'stalls', 0, 'progress', 0, 'created_at', now)
    if state == 'waiting' then
      redis.call('ZADD', KEYS[3 + 3 * q], (100 - job[6]) * 17592186044416 + sub, id)
      woken[q] = true
    else
      redis.call('ZADD', KEYS[4 + 3 * q], run_at, id)
    end
    created[j] = 1
  end
end
for q = 0, nq - 1 do
  redis.call('HSETNX', KEYS[2], ARGV[3 + q], '0')
  if woken[q] then wake(KEYS[5 + 3 * q]) end
end
return created
