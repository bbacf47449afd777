-- Add jobs; a job whose id exists is left alone.
-- KEYS[1] seq counter, KEYS[2] queues hash,
-- then per queue q (0-based), 3 keys at 3 + 3q: waiting, delayed, marker,
-- then per job j (0-based), its job hash at 3 + 3 * (number of queues) + j.
-- ARGV[1] clock offset ms, ARGV[2] number of queues (nq), ARGV[3 .. 2 + nq] their names,
-- ARGV[3 + nq] a JSON array with per job [id, queue index (0-based), priority,
--   lifo (0/1), delay_ms, run_at_ms or null, ttl_ms or null],
-- then per job j (0-based), ARGV[4 + nq + j]: its 'data' field, stored as given.
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
  local id, q, priority = job[1], job[2], job[3]
  local job_key = KEYS[first_job_key + j - 1]
  if redis.call('EXISTS', job_key) == 1 then
    created[j] = 0
  else
    local seq = last - n + j
    local sub = 8796093022208 + seq
    if job[4] == 1 then sub = 8796093022208 - seq end
    local run_at = now + job[5]
    if job[6] ~= cjson.null then run_at = job[6] end
    local state = 'delayed'
    if run_at <= now then
      state = 'waiting'
      run_at = now
    end
    redis.call('HSET', job_key, 'data', ARGV[3 + nq + j], 'state', state,
      'priority', priority, 'seq', sub, 'run_at', run_at, 'created_at', now)
    if job[7] ~= cjson.null then redis.call('HSET', job_key, 'expires_at', now + job[7]) end
    if state == 'waiting' then
      redis.call('ZADD', KEYS[3 + 3 * q], (100 - priority) * 17592186044416 + sub, id)
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
