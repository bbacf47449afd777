-- Read or free a dedup key: the job holding it now, the window's end
-- ('until', a throttle's) being the store's time (plus the offset).
-- KEYS[1] the key's hash.
-- ARGV[1] clock offset ms, ARGV[2] '1' to free it (delete it) as well.
-- Returns: the id of the job that held it, or false if it was free.
local held = redis.call('HMGET', KEYS[1], 'job', 'until')
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
if not held[1] then return false end
if held[2] and tonumber(held[2]) <= now_ms(ARGV[1]) then return false end
return held[1]
