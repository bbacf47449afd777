-- Read events after an id, with the oldest id still kept.
-- KEYS[1] the events stream.
-- ARGV[1] where to start, as XRANGE takes it ('(' and an id: after it; an id:
-- from it; '-': the oldest kept), ARGV[2] most entries.
-- Returns: {the oldest id kept ('' for none), entries as XRANGE gives them},
-- read at one instant. Trimming takes the oldest first, so when the id read
-- after is older than the oldest kept, the reader's next entry may be gone
-- (a gap; also reported when the trim took only the reader's own last one).
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest = ''
if #first > 0 then oldest = first[1][1] end
if tonumber(ARGV[2]) == 0 then return {oldest, {}} end
return {oldest, redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])}
