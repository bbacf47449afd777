-- Delete jobs of one queue, with their logs and children's outcomes; active
-- ones only when forced (their workers lose their leases). All in one step.
-- KEYS[1] waiting, KEYS[2] delayed, KEYS[3] active, KEYS[4] completed, KEYS[5] failed,
-- KEYS[6] cancelled, KEYS[7] waiting_children, KEYS[8] gwaiting, KEYS[9] groups,
-- KEYS[10] gactive, KEYS[11] outbox; then 6 keys per job, after those: its hash, its
-- log list, its children's outcomes, its task's retention sets (completed, failed,
-- cancelled).
-- ARGV[1] clock offset ms, ARGV[2] queue, ARGV[3] the states a job must be in, each
-- between commas (',completed,'), or '' for any, ARGV[4] it must have finished (or,
-- unfinished, been created) before this time (ms), or '', ARGV[5] '1' to remove
-- active jobs too, ARGV[6..] job ids.
-- Returns: how many were removed (a job missing or not matching is skipped).
local now, removed = now_ms(ARGV[1]), 0
for i = 6, #ARGV do
  local id, k = ARGV[i], 12 + 6 * (i - 6)
  local job_key = KEYS[k]
  local job = redis.call('HMGET', job_key, 'state', 'finished_at', 'created_at', 'group')
  local state = job[1]
  local finished = state == 'completed' or state == 'failed' or state == 'cancelled'
  local ok = state and (state ~= 'active' or ARGV[5] == '1')
  if ok and ARGV[3] ~= '' then ok = string.find(ARGV[3], ',' .. state .. ',', 1, true) end
  if ok and ARGV[4] ~= '' then
    local at = job[3]
    if finished then at = job[2] end
    ok = at and tonumber(at) < tonumber(ARGV[4])
  end
  if ok then
    if state == 'waiting' then from_waiting(job_key, id, KEYS[1], KEYS[8], KEYS[9]) end
    if state == 'active' then left_active(job[4], KEYS[10]) end
    if not finished then
      child_done(job_key, id, 'cancelled', 'removed', nil, KEYS[11])  -- its parent waits
    end
    emit(now, 'removed', id, job_key, nil)
    redis.call('DEL', job_key, KEYS[k + 1], KEYS[k + 2])
    for s = 2, 7 do redis.call('ZREM', KEYS[s], id) end
    local member = ARGV[2] .. '\0' .. id
    for r = k + 3, k + 5 do redis.call('ZREM', KEYS[r], member) end
    removed = removed + 1
  end
end
return removed
