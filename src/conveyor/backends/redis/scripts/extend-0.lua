-- Extend the leases of owned jobs.
-- Per lease l (0-based), 2 keys at 1 + 2l: job hash, active.
-- ARGV[1] clock offset ms, ARGV[2] lease ms, then per lease l, at 3 + 2l: id, token.
-- Returns: id, token, id, token... of the leases that are not current (lost).
local expires = now_ms(ARGV[1]) + tonumber(ARGV[2])
local lost = {}
for l = 0, #KEYS / 2 - 1 do
  local k, a = 1 + 2 * l, 3 + 2 * l
  local job = redis.call('HMGET', KEYS[k], 'state', 'token')
  if job[1] == 'active' and job[2] == ARGV[a + 1] then
    redis.call('HSET', KEYS[k], 'lease_expires_at', expires)
    redis.call('ZADD', KEYS[k + 1], expires, ARGV[a])
  else
    lost[#lost + 1] = ARGV[a]
    lost[#lost + 1] = ARGV[a + 1]
  end
end
return lost
