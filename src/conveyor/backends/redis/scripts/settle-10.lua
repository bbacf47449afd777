-- Apply the outcome a finished flow child owes its parent (written to the
-- outbox by the child's own transition): record it, and release the parent
-- to waiting when it was the last child it waited for, or fail the parent
-- (the child's policy 'fail'), whose own outcome is then due to its parent.
-- KEYS[1] outbox, KEYS[2] the parent's children's outcomes, KEYS[3] parent hash,
-- then the parent queue's KEYS[4] waiting, KEYS[5] gwaiting, KEYS[6] groups,
-- KEYS[7] marker, KEYS[8] waiting_children, KEYS[9] failed,
-- KEYS[10] retention set (parent's task, failed).
-- ARGV[1] clock offset ms, ARGV[2] child id, ARGV[3] parent id, ARGV[4] the parent's
-- retention member.
-- Returns: 0 nothing due for that child and parent, 1 applied, 2 applied and the
-- parent failed (its own outcome is due now, if it has a parent).
local entry = redis.call('HGET', KEYS[1], ARGV[2])
if not entry then return 0 end
local e = split(entry, 7)  -- parent, state, policy, task, flow, result, error
if e[1] ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
local parent = redis.call('HMGET', KEYS[3], 'state', 'flow')
-- The parent is gone, or another job has taken its id since: nobody to tell.
if not parent[1] or parent[2] ~= e[5] then return 1 end
local state, policy = e[2], e[3]
local ignored = '0'
if state ~= 'completed' and policy == 'ignore' then ignored = '1' end
local again = redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1
redis.call('HSET', KEYS[2], ARGV[2], table.concat({state, ignored, e[4], e[6], e[7]}, '\0'))
-- A child retried by hand and finished again only updates what the parent sees.
if again then return 1 end
-- One child fewer unfinished, whatever the parent's state: a parent retried
-- by hand waits again for those still running.
local pending = redis.call('HINCRBY', KEYS[3], 'pending', -1)
if parent[1] ~= 'waiting_children' then return 1 end
local now = now_ms(ARGV[1])
if state == 'completed' or policy ~= 'fail' then
  if pending <= 0 then
    redis.call('HSET', KEYS[3], 'state', 'waiting', 'run_at', now)
    redis.call('ZREM', KEYS[8], ARGV[3])
    to_waiting(KEYS[3], ARGV[3], KEYS[4], KEYS[5], KEYS[6])
    emit(now, 'waiting', ARGV[3], KEYS[3], 'waiting')
    wake(KEYS[7])
  end
  return 1
end
local error = 'child ' .. ARGV[2] .. ' ' .. state .. ': ' .. e[7]
redis.call('HSET', KEYS[3], 'state', 'failed', 'finished_at', now, 'error', error)
redis.call('ZREM', KEYS[8], ARGV[3])
redis.call('ZADD', KEYS[9], now, ARGV[3])
emit(now, 'failed', ARGV[3], KEYS[3], 'failed', 'e', error)
redis.call('ZADD', KEYS[10], now, ARGV[4])
child_done(KEYS[3], ARGV[3], 'failed', error, nil, KEYS[1])
return 2
