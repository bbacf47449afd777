-- Leave a command for a live worker, taken with its next heartbeat.
-- KEYS[1] workers hash (heartbeats), KEYS[2] worker commands hash.
-- ARGV[1] worker id, ARGV[2] the command ('pause' or 'resume').
-- Returns: 1 left, 0 no such worker (nothing left).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
