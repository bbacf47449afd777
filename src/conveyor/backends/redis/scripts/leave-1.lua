-- An idle wait ends: it leaves the 'idle' sets it registered in (peek-3.lua)
-- and takes what its own list holds, jobs handed to it (enqueue-3.lua) among them.
-- KEYS[1] the wait's list, then the 'idle' set of each queue it registered in.
-- ARGV[1] its registration.
-- Returns: the handed jobs' replies (JSON), in the order handed.
for i = 2, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
local handed = {}
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if item ~= '1' then handed[#handed + 1] = item end
end
redis.call('DEL', KEYS[1])
return handed
