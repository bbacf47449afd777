-- 0006: dedup keys. A throttle key blocks enqueues with it until 'until'; a
-- debounce key names its last job, replaced by the next enqueue while unstarted.

CREATE TABLE dedup_keys (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,              -- the job created last with this key
    until INTEGER                      -- epoch ms; a throttle window's end (NULL: debounce)
) WITHOUT ROWID;
CREATE INDEX dedup_keys_until ON dedup_keys (until) WHERE until IS NOT NULL;
