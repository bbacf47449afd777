-- How long each scope of a queue is held: by a full rate window (its own or,
-- for a group, the groups' default) or by a RateLimited hold.
-- KEYS[1] limits hash, KEYS[2] the queue's rate log ('rate'), KEYS[3] its groups'
-- ('grate').
-- ARGV[1] clock offset ms, ARGV[2] queue.
-- Returns: a flat list of scope ('' the queue's own, else a group) and ms held.
local now, queue, held = now_ms(ARGV[1]), ARGV[2], {}
local function note(scope, rate_max, rate_ms, hold, room_of)
  local until_ms = hold or now
  if rate_max then
    local room, free_at = room_of(rate_max, rate_ms)
    if room == 0 and free_at > until_ms then until_ms = free_at end
  end
  if until_ms > now then
    held[#held + 1] = scope
    held[#held + 1] = until_ms - now
  end
end
local _, rate_max, rate_ms, hold = queue_limits(KEYS[1], queue, now)
note('', rate_max, rate_ms, hold, function(m, ms) return queue_rate_room(KEYS[2], now, m, ms) end)
-- The groups that may be held: those with recent starts, or a hold of their own.
local groups, seen = {}, {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local group = string.match(member, '^([^%z]*)%z')
  if group and not seen[group] then seen[group], groups[#groups + 1] = true, group end
end
local prefix = queue .. '\0'
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local group = string.match(string.sub(field, #prefix + 1), '^([^%z]*)%zh$')
  if string.sub(field, 1, #prefix) == prefix and group and not seen[group] then
    seen[group], groups[#groups + 1] = true, group
  end
end
for _, group in ipairs(groups) do
  local _, g_max, g_ms, g_hold = group_limits(KEYS[1], queue, group, now)
  note(group, g_max, g_ms, g_hold,
    function(m, ms) return group_rate_room(KEYS[3], group, now, m, ms) end)
end
return held
