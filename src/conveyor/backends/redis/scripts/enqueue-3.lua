-- Add jobs in order; a job whose id exists is left alone; dedup keys throttle or debounce.
-- KEYS[1] seq counter (LIFO order), KEYS[2] queues hash, KEYS[3] limits hash,
-- then per queue q (0-based), 8 keys at 4 + 8q: waiting, delayed, marker, gwaiting, groups,
--   waiting_children, idle, active,
-- then per job j (0-based), its job hash at 4 + 8 * (number of queues) + j,
-- then per dedup key of the batch: its hash and, if ARGV names a job peeked in
--   it, that job's hash, log list, waiting, delayed, gwaiting and groups (6 keys, at
--   the index given).
-- ARGV[1] clock offset ms, ARGV[2] number of queues (nq), ARGV[3 .. 2 + nq] their names,
-- ARGV[3 + nq] a JSON array with per job [id, queue index (0-based), priority,
--   lifo (0/1), delay_ms, run_at_ms or null, ttl_ms or null, group or null,
--   parent id or null, its policy, children, task, flow id or null] and, for
--   a job with a dedup key, 3 more: [dedup key index (0-based), throttle
--   window ms or null, debounce (0/1)],
-- then per job j (0-based), ARGV[4 + nq + j]: its 'data' field, stored as given,
-- then, only if a job has a dedup key, ARGV[4 + nq + n]: a JSON array with per
--   dedup key [index of its hash in KEYS, id peeked in it ('' none, null not
--   peeked), index in KEYS of the peeked job's 4 keys (0 none)].
-- A batch with flow jobs (a parent or children) is added whole or not at all:
-- if any of its jobs exists, nothing is written and every answer is 0.
-- A parent starts in 'waiting_children' with 'pending' = its children.
-- A queue whose one waiting job is one made ready here gets it handed to an
-- idle wait registered in its 'idle' set (peek-3.lua), if it has no limits
-- and is not paused: leased as a claim would, and pushed, with the claim's
-- reply and its queue, to the wait's own list, so its worker starts it without a claim.
-- Else the queue's marker gets a wake (naming that job, or '1').
-- Returns: -1 (Code.PEEK_CHANGED: nothing written) if a peeked dedup key names another job now
-- (a lone job instead counts as replaced at once: {that job's id}), else an
-- array with per job 1 (added), 0 (id existed) or the id of the job whose
-- throttle window is open (not added).
local now = now_ms(ARGV[1])
local nq = tonumber(ARGV[2])
local jobs = cjson.decode(ARGV[3 + nq])
local n = #jobs
local first_job_key = 4 + 8 * nq
local dedup = {}
if ARGV[4 + nq + n] then dedup = cjson.decode(ARGV[4 + nq + n]) end
for d = 1, #dedup do  -- every peek must still hold before anything is written
  local peeked = dedup[d][2]
  local current = redis.call('HGET', KEYS[dedup[d][1]], 'job') or ''
  if peeked ~= cjson.null and current ~= peeked then
    -- A debounce of the key ran since the peek, within this enqueue's call:
    -- a lone job counts as enqueued just before it, so replaced by its job.
    if n > 1 or current == '' then return -1 end
    if redis.call('EXISTS', KEYS[first_job_key]) == 1 then return {0} end
    return {current}
  end
end

local ours = {}  -- id -> {job hash index, queue index, j, has a TTL} of jobs added here

local flow = false
for j = 1, n do
  if jobs[j][9] ~= cjson.null or jobs[j][11] > 0 then flow = true end
end
if flow then
  for j = 1, n do
    if redis.call('EXISTS', KEYS[first_job_key + j - 1]) == 1 then
      local none = {}
      for i = 1, n do none[i] = 0 end
      return none
    end
  end
end

-- Debounce: remove the key's previous job if it has not started.
local function replace(old, entry)
  local job_key, logs, waiting, delayed, gwaiting, groups
  local mine = ours[old]
  if mine then
    local k = 4 + 8 * mine[2]
    job_key, waiting, delayed, gwaiting, groups = KEYS[mine[1]], KEYS[k], KEYS[k + 1],
      KEYS[k + 3], KEYS[k + 4]
  elseif old == entry[2] and entry[3] > 0 then
    local i = entry[3]
    job_key, logs, waiting, delayed, gwaiting, groups = KEYS[i], KEYS[i + 1], KEYS[i + 2],
      KEYS[i + 3], KEYS[i + 4], KEYS[i + 5]
  else
    return  -- unreachable: the key names a job peeked or added here
  end
  local job = redis.call('HMGET', job_key, 'state', 'started_at', 'parent', 'pending')
  -- A flow's job is never the key's (a flow has no dedup keys): it only took its id.
  if (job[1] == 'waiting' or job[1] == 'delayed') and not job[2] and not job[3]
      and not job[4] then
    from_waiting(job_key, old, waiting, gwaiting, groups)
    redis.call('ZREM', delayed, old)
    emit(now, 'removed', old, job_key, nil)
    redis.call('DEL', job_key)
    if logs then redis.call('DEL', logs) end
  end
end

-- Enqueue numbers: LIFO order, and the count that groups' turns are numbered
-- above (claim-4.lua), so this is taken for every job; a job handed to an
-- idle wait gets 'h' and its number as its lease token.
local last = redis.call('INCRBY', KEYS[1], n)
-- woken[q]: the queue gets a wake, naming its job made ready here if that is
-- the one job waiting in it (the woken worker may claim it at once), else
-- not (true: delayed jobs only, false: a grouped job; a look decides).
local created, woken = {}, {}
for j = 1, n do
  local job = jobs[j]
  local id, q, priority = job[1], job[2], job[3]
  local job_key = KEYS[first_job_key + j - 1]
  local entry, window = job[14] and dedup[job[14] + 1], job[15]
  if redis.call('EXISTS', job_key) == 1 then
    created[j] = 0
  elseif entry and window ~= cjson.null then
    local open = redis.call('HMGET', KEYS[entry[1]], 'job', 'until')
    if open[2] and tonumber(open[2]) > now then created[j] = open[1] end
  elseif entry and job[16] == 1 then
    local old = redis.call('HGET', KEYS[entry[1]], 'job')
    if old then replace(old, entry) end
  end
  if not created[j] then
    local run_at = now + job[5]
    if job[6] ~= cjson.null then run_at = job[6] end
    local state = 'delayed'
    if run_at <= now then
      state = 'waiting'
      run_at = now
    end
    local sub = ready_seq(run_at)
    if job[4] == 1 then sub = lifo_seq(last - n + j) end
    if job[11] > 0 then state = 'waiting_children' end
    redis.call('HSET', job_key, 'data', ARGV[3 + nq + j], 'state', state,
      'priority', priority, 'seq', sub, 'run_at', run_at, 'created_at', now,
      'queue', ARGV[3 + q], 'task', job[12])
    if job[7] ~= cjson.null then redis.call('HSET', job_key, 'expires_at', now + job[7]) end
    local group = job[8] ~= cjson.null and job[8]
    if group then redis.call('HSET', job_key, 'group', group) end
    if job[9] ~= cjson.null then
      redis.call('HSET', job_key, 'parent', job[9], 'policy', job[10])
    end
    if job[13] ~= cjson.null then redis.call('HSET', job_key, 'flow', job[13]) end
    local k = 4 + 8 * q
    if state == 'waiting_children' then
      redis.call('HSET', job_key, 'pending', job[11])
      redis.call('ZADD', KEYS[k + 5], now, id)
    elseif state == 'waiting' then
      if group then
        redis.call('ZADD', KEYS[k + 3], 0, group_member(group, priority, sub, id))
        join_rotation(KEYS[k + 4], group)
        woken[q] = false
      else
        redis.call('ZADD', KEYS[k], (100 - priority) * 17592186044416 + sub, id)
        if woken[q] == nil or woken[q] == true then woken[q] = id end
      end
    else
      redis.call('ZADD', KEYS[k + 1], run_at, id)
      -- Due before anything an idle worker waits for: wake one to look again.
      if woken[q] == nil and redis.call('ZRANK', KEYS[k + 1], id) == 0 then woken[q] = true end
    end
    -- its queue and task at hand: no read of the job for the event, whose
    -- run at is its time unless it says otherwise
    if run_at == now then
      event(now, 'enqueued', id, ARGV[3 + q], job[12], state)
    else
      event(now, 'enqueued', id, ARGV[3 + q], job[12], state, 'r', run_at)
    end
    created[j] = 1
    ours[id] = {first_job_key + j - 1, q, j, job[7] ~= cjson.null}
    if entry then
      local key = KEYS[entry[1]]
      redis.call('HSET', key, 'job', id, 'queue', ARGV[3 + q])
      if window ~= cjson.null then
        redis.call('HSET', key, 'until', now + window)
        redis.call('PEXPIRE', key, window)  -- the window's end decides; this only cleans up
      else
        redis.call('HDEL', key, 'until')
        redis.call('PERSIST', key)
      end
    end
  end
end

-- Hand the job to a live idle wait, the one registered last: true if done.
local function hand_off(q, k, id)
  local queue = ARGV[3 + q]
  if redis.call('HGET', KEYS[2], queue) == '1' then return false end
  local max_active, rate_max, _, hold = queue_limits(KEYS[3], queue, now)
  if max_active or rate_max or hold then return false end
  if not redis.call('ZSCORE', KEYS[k], id) then return false end  -- replaced meanwhile
  local waiter = redis.call('ZPOPMAX', KEYS[k + 6])
  if #waiter == 0 or tonumber(waiter[2]) <= now then return false end
  local wait = split(waiter[1], 3)  -- its list, worker id, lease ms
  local job_key = KEYS[ours[id][1]]
  redis.call('ZREM', KEYS[k], id)
  if ours[id][4] then redis.call('HDEL', job_key, 'expires_at') end
  local reply = lease(job_key, id, KEYS[k + 7], 'h' .. (last - n + ours[id][3]),
    now + tonumber(wait[3]), wait[2], now)
  reply[5] = queue
  redis.call('RPUSH', wait[1], cjson.encode(reply))
  redis.call('PEXPIRE', wait[1], 10000)
  return true
end

for q = 0, nq - 1 do
  redis.call('HSETNX', KEYS[2], ARGV[3 + q], '0')
  local k, hint = 4 + 8 * q, woken[q]
  if hint ~= nil and redis.call('LLEN', KEYS[k + 2]) == 0 then  -- else a wake is pending
    if hint == true or hint == false or redis.call('ZCARD', KEYS[k]) ~= 1
        or redis.call('EXISTS', KEYS[k + 3]) == 1 then
      hint = nil
    end
    if not (hint and hand_off(q, k, hint)) then
      redis.call('RPUSH', KEYS[k + 2], hint or '1')
    end
  end
end
return created
