-- Delete the finished jobs overflow-2.lua picked, each only if it is still beyond
-- the retention and still in the state trimmed; then let go of the trim lock.
-- KEYS[1] trim lock (task, state), KEYS[2] retention set (task, state),
-- then per job j (0-based), 4 keys at 3 + 4j: job hash, log list, its queue's set of
--   the state, its children's outcomes (a flow's parent).
-- ARGV[1] lock token, ARGV[2] the state, ARGV[3] max count ('' for none), ARGV[4] age
-- cutoff ms (-1 for none), then per job j, 2 values at 5 + 2j: retention member, job id.
-- Returns: how many jobs were deleted.
local max_count, cutoff = tonumber(ARGV[3]), tonumber(ARGV[4])
local deleted = 0
for j = 0, (#KEYS - 2) / 4 - 1 do
  local k, a = 3 + 4 * j, 5 + 2 * j
  local member, id = ARGV[a], ARGV[a + 1]
  local score = redis.call('ZSCORE', KEYS[2], member)
  if score and ((cutoff >= 0 and tonumber(score) < cutoff)
      or (max_count and redis.call('ZREVRANK', KEYS[2], member) >= max_count)) then
    redis.call('ZREM', KEYS[2], member)
    if redis.call('HGET', KEYS[k], 'state') == ARGV[2] then
      redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 3])
      redis.call('ZREM', KEYS[k + 2], id)
      deleted = deleted + 1
    end
  end
end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return deleted
