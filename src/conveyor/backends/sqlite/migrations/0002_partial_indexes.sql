-- 0002: one partial index per state group instead of a full (queue, state)
-- index, so an enqueue touches the table, its primary key and one index.
-- Counts per queue and state read these covering indexes.

DROP INDEX jobs_queue_state;
DROP INDEX jobs_delayed;
DROP INDEX jobs_active;
CREATE INDEX jobs_delayed ON jobs (run_at, queue) WHERE state = 'delayed';
CREATE INDEX jobs_active ON jobs (lease_expires_at, queue) WHERE state = 'active';
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at) WHERE finished_at IS NOT NULL;
