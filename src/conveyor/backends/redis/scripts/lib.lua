-- Shared helpers, prepended to every script when it is loaded (scripts.py).
-- No key name is built here or in any script: every key arrives in KEYS, but
-- for an idle wait's own list, named by the wait when it registers in a
-- queue's 'idle' set (enqueue-3.lua), under the same hash tag as every key.

-- A job hash holds 'data' (JSON, never changed: id, task, queue, max attempts,
-- options, arguments) and the fields that change. A field left unset has its
-- default (attempts, stalls and progress 0); no script reads 'data'.
-- The fields returned to Python (record.FIELDS is the same list):
local FIELDS = {'data', 'state', 'priority', 'attempts', 'stalls', 'worker_id', 'progress',
  'progress_detail', 'result', 'error', 'traceback', 'created_at', 'run_at', 'started_at',
  'finished_at', 'group'}

-- "Now" is the server's clock (plus a test offset), never a worker's.
local function now_ms(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(offset)
end

-- Events (conveyor.events) and statistics (conveyor.stats): a script that
-- changes a job writes its event to the namespace's stream, and counts an
-- outcome, in that same step. Its caller appends three keys to KEYS (this
-- hour's statistics hash, the lifetime totals hash, the stream) and two values
-- to ARGV (the statistics' time to live in seconds, or '' when its app counts
-- none; the stream's max count, or '' when its app writes no events)
-- (connection.py, for every script that uses emit: scripts.py); all come off
-- here, before the script reads its own. XADD caps the stream at about max
-- count events (below); workers trim it by age (events.py). The job's queue and
-- task are its hash's (kept from the enqueue), so emit comes before a job's
-- hash is deleted, and before a retry moves its 'run_at'. The events of one
-- call go into one stream entry, written as the script ends (scripts.py
-- wraps each script so flush_events runs after it): a claim of 50 jobs or
-- a batch of completions is one XADD, not one each. An event in it is 'h',
-- its head 'kind NUL id NUL queue NUL task NUL state NUL at' (one field: the
-- AOF writes every argument), then the kind's data: 'a' attempt, 'r' run at,
-- 'p' progress, 'd' detail JSON, 'res' result JSON, 'e' error, 'sch' schedule
-- (an 'enqueued' event without 'r': its job is ready at the event's time).
-- An entry of n > 1 events starts with 'n' (so its last event's id is known
-- without reading it whole) and caps the stream at about max count / n entries.
-- Statistics: fields 'minute NUL queue NUL task NUL metric' of the hash of
-- the hour the caller saw (readers look an hour either side): metric 'c'
-- completed, 'f' failed after a run, 'fx' failed without one (a stall, a
-- flow's failed child), 'r' retried, 's' stalled, 'x' cancelled; 'rt' the ms
-- of the runs that ended (completed, 'f', retried: their number is the sum
-- of those), 'wt' the ms of their waits (from ready to start). Totals:
-- 'queue NUL metric'. The hash's time to live is set with each new field, so
-- it outlives its last minute by the whole age.
local EVENTS, TOTALS, STATS = table.remove(KEYS), table.remove(KEYS), table.remove(KEYS)
local EVENT_BOUNDS, STATS_TTL = table.remove(ARGV), table.remove(ARGV)
local OUTCOMES = {completed = 'c', failed = 'f', retrying = 'r', stalled = 's', cancelled = 'x'}
-- A call's counts are summed here and written as it ends (flush_stats): a
-- batch of completions of one task adds to each field once, not once a job.
local STATS_ADD, TOTALS_ADD = {}, {}
local function add(sums, field, by)
  sums[field] = (sums[field] or 0) + by
end
local function count(field, metric, queue)
  add(STATS_ADD, field .. metric, 1)
  add(TOTALS_ADD, queue .. '\0' .. metric, 1)
end
local function flush_stats()
  local new = false
  for field, by in pairs(STATS_ADD) do
    if redis.call('HINCRBY', STATS, field, by) == by then new = true end
  end
  if new then redis.call('EXPIRE', STATS, STATS_TTL) end
  for field, by in pairs(TOTALS_ADD) do redis.call('HINCRBY', TOTALS, field, by) end
  STATS_ADD, TOTALS_ADD = {}, {}
end
local function tally(now, metric, queue, task, state, started, run_at)
  local at = math.floor(now / 60000) .. '\0' .. queue .. '\0' .. task .. '\0'
  if metric == 's' then
    count(at, 's', queue)
    if state == 'failed' then count(at, 'fx', queue) end
    return
  end
  if metric == 'f' and not started then metric = 'fx' end
  count(at, metric, queue)
  if metric ~= 'x' and metric ~= 'fx' then
    add(STATS_ADD, at .. 'rt', math.max(now - started, 0))
    add(STATS_ADD, at .. 'wt', math.max(started - (run_at or started), 0))
  end
end
-- This call's events, not yet in the stream, and how many.
local PENDING, PENDED = {}, 0
local function flush_events()
  flush_stats()
  if PENDED == 0 then return end
  local bound = math.max(1, math.ceil(tonumber(EVENT_BOUNDS) / PENDED))
  if PENDED == 1 then
    redis.call('XADD', EVENTS, 'MAXLEN', '~', bound, '*', unpack(PENDING))
  else
    redis.call('XADD', EVENTS, 'MAXLEN', '~', bound, '*', 'n', PENDED, unpack(PENDING))
  end
  PENDING, PENDED = {}, 0
end
local function event(now, kind, id, queue, task, state, ...)
  if EVENT_BOUNDS == '' then return end
  local head = kind .. '\0' .. id .. '\0' .. queue .. '\0' .. task .. '\0' .. (state or '')
    .. '\0' .. now
  local n = #PENDING
  PENDING[n + 1], PENDING[n + 2] = 'h', head
  for i = 1, select('#', ...) do PENDING[n + 2 + i] = (select(i, ...)) end
  PENDED = PENDED + 1
  if #PENDING >= 4000 then flush_events() end
end
-- emit for a caller that read the job's queue, task, started_at and run_at
-- with its own HMGET (a completion's: one call fewer per job).
local function emit_read(now, kind, id, queue, task, started, run_at, state, ...)
  local metric = OUTCOMES[kind]
  if metric and STATS_TTL ~= '' then
    tally(now, metric, queue or '', task or '', state, tonumber(started), tonumber(run_at))
  end
  event(now, kind, id, queue or '', task or '', state, ...)
end
local function emit(now, kind, id, job_key, state, ...)
  local j
  if OUTCOMES[kind] and STATS_TTL ~= '' then
    j = redis.call('HMGET', job_key, 'queue', 'task', 'started_at', 'run_at')
  elseif EVENT_BOUNDS ~= '' then
    j = redis.call('HMGET', job_key, 'queue', 'task')
  else
    return
  end
  emit_read(now, kind, id, j[1], j[2], j[3], j[4], state, ...)
end

-- One element in a queue's marker list wakes one blocked worker: '1', or
-- (from an enqueue) the id of a job it made ready, which the woken worker
-- may claim at once, without a look at the queue first.
local function wake(marker, id)
  if redis.call('LLEN', marker) == 0 then
    redis.call('RPUSH', marker, id or '1')
  end
end

local function read_job(job_key)
  return redis.call('HMGET', job_key, unpack(FIELDS))
end

-- Lease a job just taken out of its queue's waiting order (its attempt starts
-- now): the reply a worker gets for it, {token, lease expiry, job fields, id}.
-- Its 'active' event takes the queue and task from the same read.
local FIELDS_NAMED = {unpack(FIELDS)}
FIELDS_NAMED[#FIELDS + 1], FIELDS_NAMED[#FIELDS + 2] = 'queue', 'task'
local function lease(job_key, id, active, token, expires, worker_id, now)
  local attempt = redis.call('HINCRBY', job_key, 'attempts', 1)
  redis.call('HSET', job_key, 'state', 'active', 'token', token, 'lease_expires_at', expires,
    'worker_id', worker_id, 'started_at', now)
  redis.call('ZADD', active, expires, id)
  local row = redis.call('HMGET', job_key, unpack(FIELDS_NAMED))
  local task, queue = table.remove(row), table.remove(row)
  event(now, 'active', id, queue or '', task or '', 'active', 'a', attempt)
  return {token, expires, row, id}
end

-- Waiting order: higher priority first, then the job's 'seq'. LIFO jobs come
-- first, newest enqueued first: 2^43 minus their enqueue number. FIFO jobs
-- follow by the time they became ready (a delayed job when it fell due), in
-- ms, above 2^43; jobs ready in the same ms go by id (members of a waiting
-- set with equal scores sort by member; generated ids follow enqueue order).
-- (FIFO jobs stored before this order hold 2^43 plus an enqueue number: first.)
local function ready_seq(ready_ms)
  return 8796093022208 + ready_ms
end

local function lifo_seq(number)
  return 8796093022208 - number
end

-- The 'seq' of a job (its hash holding the old one) that becomes ready again
-- at ready_ms: a LIFO job keeps its place.
local function ready_again(job_key, ready_ms)
  local seq = tonumber(redis.call('HGET', job_key, 'seq'))
  if seq < 8796093022208 then return seq end
  return ready_seq(ready_ms)
end

-- Groups. A grouped waiting job is not in 'waiting' but in its queue's
-- 'gwaiting' set (all scores 0, so ordered by member): its group, then
-- priority and sequence as fixed-width digits (waiting order within the
-- group), then its id. 'groups' holds the groups with waiting jobs, scored by
-- their turn (when last served, or when they joined; the lowest goes next).
-- Every key is static per queue, so a move of any job needs no key built
-- from its group.
local function group_member(group, priority, seq, id)
  return group .. '\0' .. string.format('%03d%014d', 100 - tonumber(priority), tonumber(seq))
    .. '\0' .. id
end

local function group_range(group)
  return '[' .. group .. '\0', '(' .. group .. '\1'
end

-- A group that gets waiting jobs after having none joins the rotation at the
-- back, behind every group waiting now.
local function join_rotation(groups, group)
  if not redis.call('ZSCORE', groups, group) then
    local last = redis.call('ZRANGE', groups, -1, -1, 'WITHSCORES')
    redis.call('ZADD', groups, (tonumber(last[2]) or 0) + 1, group)
  end
end

-- Put a job (its hash already saying 'waiting') into its queue's waiting order.
local function to_waiting(job_key, id, waiting, gwaiting, groups)
  local j = redis.call('HMGET', job_key, 'group', 'priority', 'seq')
  if j[1] then
    redis.call('ZADD', gwaiting, 0, group_member(j[1], j[2], j[3], id))
    join_rotation(groups, j[1])
  else
    redis.call('ZADD', waiting, (100 - tonumber(j[2])) * 17592186044416 + tonumber(j[3]), id)
  end
end

-- Take a job out of its queue's waiting order; 1 if it was there.
local function from_waiting(job_key, id, waiting, gwaiting, groups)
  local j = redis.call('HMGET', job_key, 'group', 'priority', 'seq')
  if not j[1] then return redis.call('ZREM', waiting, id) end
  if redis.call('ZREM', gwaiting, group_member(j[1], j[2], j[3], id)) == 0 then return 0 end
  local from, to = group_range(j[1])
  if #redis.call('ZRANGEBYLEX', gwaiting, from, to, 'LIMIT', 0, 1) == 0 then
    redis.call('ZREM', groups, j[1])
  end
  return 1
end

-- A job of 'group' (false: none) leaves 'active': its group counts one fewer.
local function left_active(group, gactive)
  if group and redis.call('HINCRBY', gactive, group, -1) <= 0 then
    redis.call('HDEL', gactive, group)
  end
end

-- Limits. The limits hash has per scope (a queue, or queue NUL group, where
-- group '*' is every group's default) the fields scope NUL 'a' (max active),
-- scope NUL 'r' ('max:window ms:per ms', the window being the span starts
-- are kept apart by: per and a margin, see conveyor/limits.py) and scope NUL 'h' (the
-- end of a hold set by a job that was rate limited). Scopes and fields are
-- built here and nowhere else in the scripts (keys.py builds the same).
local function limit_scope(queue, group)
  if group then return queue .. '\0' .. group end
  return queue
end

local function limit_field(scope, field)
  return scope .. '\0' .. field
end

local function parse_rate(r)
  if not r then return nil, nil end
  local rate_max, rate_ms = string.match(r, '^(%d+):(%d+):')
  return tonumber(rate_max), tonumber(rate_ms)
end

local function hold_ahead(h, now)
  local until_ms = tonumber(h or 0)
  if until_ms > now then return until_ms end
  return nil
end

-- A queue's limits: max active, rate max, window ms, and its hold's end if ahead.
local function queue_limits(limits, queue, now)
  local own = limit_scope(queue)
  local v = redis.call('HMGET', limits, limit_field(own, 'a'), limit_field(own, 'r'),
    limit_field(own, 'h'))
  local rate_max, rate_ms = parse_rate(v[2])
  return tonumber(v[1]), rate_max, rate_ms, hold_ahead(v[3], now)
end

-- A group's: its own, each falling back to the queue's default for groups.
local function group_limits(limits, queue, group, now)
  local own, all = limit_scope(queue, group), limit_scope(queue, '*')
  local v = redis.call('HMGET', limits, limit_field(own, 'a'), limit_field(own, 'r'),
    limit_field(own, 'h'), limit_field(all, 'a'), limit_field(all, 'r'))
  local rate_max, rate_ms = parse_rate(v[2] or v[5])
  return tonumber(v[1] or v[4]), rate_max, rate_ms, hold_ahead(v[3], now)
end

-- Sliding windows: how many more may start now, and if none, when one may.
-- A queue's starts are scored by time in its 'rate' set; a group's are
-- members group NUL time (13 digits) NUL token of its queue's 'grate' set.
local function queue_rate_room(log, now, rate_max, rate_ms)
  local since = '(' .. (now - rate_ms)
  local count = redis.call('ZCOUNT', log, since, '+inf')
  if count < rate_max then return rate_max - count, nil end
  local e = redis.call('ZRANGEBYSCORE', log, since, '+inf', 'WITHSCORES', 'LIMIT', count - rate_max, 1)
  return 0, tonumber(e[2]) + rate_ms
end

-- The start of a group's 'grate' members at time ``at`` (ms): group NUL time.
local function group_mark(group, at)
  return group .. '\0' .. string.format('%013d', at)
end

local function group_rate_room(glog, group, now, rate_max, rate_ms)
  local from = '[' .. group_mark(group, now - rate_ms + 1)
  local _, to = group_range(group)
  local count = redis.call('ZLEXCOUNT', glog, from, to)
  if count < rate_max then return rate_max - count, nil end
  local e = redis.call('ZRANGEBYLEX', glog, from, to, 'LIMIT', count - rate_max, 1)
  return 0, tonumber(string.sub(e[1], #group + 2, #group + 14)) + rate_ms
end

-- Flows. A flow's child has the fields 'parent', 'policy' and 'task'; when it
-- finishes, the outcome it owes its parent is written to the outbox in that
-- same step (settle-10.lua applies it to the parent): parent, state, policy,
-- task, flow (the flow's id, shared by its jobs), result, then error, which may
-- hold anything. An outcome not yet applied is not replaced by a later one
-- (a child retried by hand and finished again first).
local function child_done(job_key, id, state, error, result, outbox)
  local f = redis.call('HMGET', job_key, 'parent', 'policy', 'task', 'flow')
  if f[1] then
    redis.call('HSETNX', outbox, id,
      table.concat({f[1], state, f[2], f[3], f[4], result or '', error or ''}, '\0'))
  end
end

-- At most n parts of s split at NUL; the last keeps the rest whole.
local function split(s, n)
  local parts, start = {}, 1
  for _ = 1, n - 1 do
    local at = string.find(s, '\0', start, true)
    if not at then break end
    parts[#parts + 1] = string.sub(s, start, at - 1)
    start = at + 1
  end
  parts[#parts + 1] = string.sub(s, start)
  return parts
end
