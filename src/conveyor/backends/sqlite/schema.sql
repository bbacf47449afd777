-- The current schema, applied whole to a new database file. Every change here
-- must also be a numbered file in migrations/; tests/test_sqlite_migrations.py
-- checks that migrating from empty gives exactly this schema.

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,              -- FIFO order; negative for LIFO jobs
    run_at INTEGER NOT NULL,           -- epoch ms; when a delayed job is due
    payload BLOB NOT NULL,             -- JSON object of arguments
    options BLOB NOT NULL,             -- JSON of JobOptions
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    stalls INTEGER NOT NULL DEFAULT 0,
    token TEXT,                        -- current lease's fencing token
    lease_expires_at INTEGER,
    worker_id TEXT,
    progress REAL NOT NULL DEFAULT 0,
    progress_detail BLOB,
    result BLOB,
    error TEXT,
    traceback TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
, expires_at INTEGER);                 -- 0004's ALTER TABLE writes it so: not started by then, 'expired'

CREATE INDEX jobs_waiting ON jobs (queue, priority DESC, seq) WHERE state = 'waiting';
CREATE INDEX jobs_retention ON jobs (task, state, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_delayed ON jobs (run_at, queue) WHERE state = 'delayed';
CREATE INDEX jobs_active ON jobs (lease_expires_at, queue) WHERE state = 'active';
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE "job_logs" (
    job_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id);
CREATE TRIGGER jobs_delete_logs AFTER DELETE ON jobs BEGIN
    DELETE FROM job_logs WHERE job_id = old.id;
END;

CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
, max_active INTEGER) WITHOUT ROWID;            -- 0007's ALTER TABLE writes it so

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('seq', 0);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,                -- JSON of WorkerInfo
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    spec BLOB NOT NULL,                -- JSON of conveyor.schedule.Schedule
    last_tick INTEGER                  -- epoch ms of the last tick that made a job
);

CREATE TABLE dedup_keys (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,              -- the job created last with this key
    until INTEGER                      -- epoch ms; a throttle window's end (NULL: debounce)
) WITHOUT ROWID;
CREATE INDEX dedup_keys_until ON dedup_keys (until) WHERE until IS NOT NULL;
