-- Delete a job that is not active, with its log.
-- KEYS[1] job hash, KEYS[2] log list, KEYS[3] waiting, KEYS[4] delayed, KEYS[5] completed,
-- KEYS[6] failed, KEYS[7] cancelled, KEYS[8..10] retention sets (task, completed/failed/cancelled),
-- KEYS[11] gwaiting, KEYS[12] groups, KEYS[13] waiting_children, KEYS[14] outbox,
-- KEYS[15] the job's children's outcomes (a flow's parent).
-- ARGV[1] retention member, ARGV[2] state the job must be in ('' for any but active),
-- ARGV[3] the job must have finished before this time ('' for any), ARGV[4] job id,
-- ARGV[5] clock offset ms.
-- Returns: 1 removed, 0 active, missing or not matching.
local job = redis.call('HMGET', KEYS[1], 'state', 'finished_at')
local state = job[1]
if not state or state == 'active' then return 0 end
if ARGV[2] ~= '' and state ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' and (not job[2] or tonumber(job[2]) >= tonumber(ARGV[3])) then return 0 end
if state == 'waiting' then from_waiting(KEYS[1], ARGV[4], KEYS[3], KEYS[11], KEYS[12]) end
if state ~= 'completed' and state ~= 'failed' and state ~= 'cancelled' then
  child_done(KEYS[1], ARGV[4], 'cancelled', 'removed', nil, KEYS[14])  -- its parent waits
end
redis.call('ZREM', KEYS[13], ARGV[4])
emit(now_ms(ARGV[5]), 'removed', ARGV[4], KEYS[1], nil)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[15])
for i = 4, 7 do redis.call('ZREM', KEYS[i], ARGV[4]) end
for i = 8, 10 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
