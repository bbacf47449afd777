-- Shared helpers, prepended to every script when it is loaded (scripts.py).
-- No key name is built here or in any script: every key arrives in KEYS.

-- A job hash holds 'data' (JSON, never changed: id, task, queue, max attempts,
-- options, arguments) and the fields that change. A field left unset has its
-- default (attempts, stalls and progress 0); no script reads 'data'.
-- The fields returned to Python (transitions.FIELDS is the same list):
local FIELDS = {'data', 'state', 'priority', 'attempts', 'stalls', 'worker_id', 'progress',
  'progress_detail', 'result', 'error', 'traceback', 'created_at', 'run_at', 'started_at',
  'finished_at'}

-- "Now" is the server's clock (plus a test offset), never a worker's.
local function now_ms(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(offset)
end

-- Waiting order: higher priority first, then the job's sequence number
-- (FIFO jobs count up from 2^43, LIFO jobs down from it).
local function waiting_score(job_key)
  local p = redis.call('HMGET', job_key, 'priority', 'seq')
  return (100 - tonumber(p[1])) * 17592186044416 + tonumber(p[2])
end

-- One element in a queue's marker list wakes one blocked worker.
local function wake(marker)
  if redis.call('LLEN', marker) == 0 then
    redis.call('RPUSH', marker, '1')
  end
end

local function read_job(job_key)
  return redis.call('HMGET', job_key, unpack(FIELDS))
end
