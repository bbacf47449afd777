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
, expires_at INTEGER, grp TEXT, parent_id TEXT, on_failure TEXT, children INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0, pipe INTEGER NOT NULL DEFAULT 0, flow_id TEXT, logged INTEGER NOT NULL DEFAULT 0, keep TEXT);
-- (the ALTER TABLEs of 0004, 0008, 0009 and 0010 write it so. grp: the job's
-- group; parent_id, on_failure: a flow's child, its parent and what its failure
-- does there; children, pending: a parent's children, and those not finished;
-- flow_id: shared by the jobs of one flow; logged: it has lines in job_logs;
-- keep: a finished job's retention bucket of its own, NULL for its task's: 0018)

CREATE INDEX jobs_waiting ON jobs (queue, priority DESC, seq) WHERE state = 'waiting' AND grp IS NULL;
CREATE INDEX jobs_group_waiting ON jobs (queue, grp, priority DESC, seq)
    WHERE state = 'waiting' AND grp IS NOT NULL;
CREATE INDEX jobs_retention ON jobs (task, state, finished_at)
    WHERE finished_at IS NOT NULL AND keep IS NULL;
CREATE INDEX jobs_kept ON jobs (keep, state, finished_at)
    WHERE finished_at IS NOT NULL AND keep IS NOT NULL;
CREATE INDEX jobs_delayed ON jobs (run_at, queue) WHERE state = 'delayed';
CREATE INDEX jobs_active ON jobs (lease_expires_at, queue) WHERE state = 'active';
CREATE INDEX jobs_finished ON jobs (queue, state, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_waiting_children ON jobs (queue, created_at) WHERE state = 'waiting_children';
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE "job_logs" (
    job_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id);
CREATE TRIGGER jobs_delete_logs AFTER DELETE ON jobs WHEN old.logged BEGIN
    DELETE FROM job_logs WHERE job_id = old.id;
END;

CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
, max_active INTEGER, rate_max INTEGER, rate_ms INTEGER, blocked_until INTEGER, group_max_active INTEGER, group_rate_max INTEGER, group_rate_ms INTEGER, turn INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
-- (written so by the ALTER TABLEs of 0007 and 0008; turn: when the queue's jobs
-- without a group were last served, in a queue with groups)

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

-- Commands left for workers (pause, resume), taken with their next heartbeat.
CREATE TABLE worker_commands (
    worker_id TEXT PRIMARY KEY,
    command TEXT NOT NULL              -- 'pause' or 'resume'
) WITHOUT ROWID;

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    spec BLOB NOT NULL,                -- JSON of conveyor.cron.Schedule
    last_tick INTEGER                  -- epoch ms of the last tick that made a job
, ticks INTEGER NOT NULL DEFAULT 0);
-- (the ALTER TABLE of 0015 writes it so. ticks: how many ticks it fired)

CREATE TABLE dedup_keys (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,              -- the job created last with this key
    until INTEGER                      -- epoch ms; a throttle window's end (NULL: debounce)
) WITHOUT ROWID;
CREATE INDEX dedup_keys_until ON dedup_keys (until) WHERE until IS NOT NULL;

CREATE TABLE groups (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    waiting INTEGER NOT NULL DEFAULT 0,  -- counted by enqueue, then kept by the triggers below
    active INTEGER NOT NULL DEFAULT 0,
    turn INTEGER NOT NULL DEFAULT 0,     -- the lowest goes next: when last served, or when
                                         -- it got jobs again after none (behind the others)
    max_active INTEGER,                  -- this group's own limits (NULL: the queue's default)
    rate_max INTEGER,
    rate_ms INTEGER,
    blocked_until INTEGER,               -- epoch ms; a job said "rate limited" (RateLimited)
    PRIMARY KEY (queue, name)
) WITHOUT ROWID;
CREATE INDEX groups_turns ON groups (queue, turn) WHERE waiting > 0;

CREATE TRIGGER jobs_group_moved AFTER UPDATE OF state ON jobs
    WHEN new.grp IS NOT NULL AND new.state != old.state BEGIN
    UPDATE groups SET waiting = waiting + (new.state = 'waiting') - (old.state = 'waiting'),
        active = active + (new.state = 'active') - (old.state = 'active'),
        turn = CASE WHEN waiting = 0 AND new.state = 'waiting' THEN (SELECT coalesce(max(turn), 0)
            + 1 FROM groups WHERE queue = new.queue AND waiting > 0) ELSE turn END
        WHERE queue = new.queue AND name = new.grp;
END;
CREATE TRIGGER jobs_group_removed AFTER DELETE ON jobs
    WHEN old.grp IS NOT NULL AND old.state IN ('waiting', 'active') BEGIN
    UPDATE groups SET waiting = waiting - (old.state = 'waiting'),
        active = active - (old.state = 'active')
        WHERE queue = old.queue AND name = old.grp;
END;

-- The n-th start of a scope (a queue, or queue NUL group) that has a rate limit;
-- rows older than the scope's last rate_max starts are deleted.
CREATE TABLE rate_log (
    scope TEXT NOT NULL,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (scope, n)
) WITHOUT ROWID;

CREATE TABLE job_outcomes (
    parent_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    task TEXT NOT NULL,
    state TEXT NOT NULL,               -- completed, failed or cancelled
    result BLOB,
    error TEXT,
    ignored INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE TRIGGER jobs_delete_outcomes AFTER DELETE ON jobs WHEN old.children > 0 BEGIN
    DELETE FROM job_outcomes WHERE parent_id = old.id;
END;

-- Job events (conveyor.events): one row per change, written by these triggers
-- (or, for an enqueue, by adding.py: one row of 'n' events, the jobs of the
-- call, whose id is the last of its n ids) in the transaction that makes the
-- change, so none is seen without the other. 'events' in counters turns them
-- on and off; about the newest 'events_max_count' events are kept (trimmed
-- here each time the ids cross a hundred), and workers drop those older than
-- 'events_max_age_ms' but the newest (the app that connects last sets the
-- three). Ids run without holes (a rolled-back event frees its id for the
-- next) and the newest row is never trimmed, so ids never come back: a
-- reader that finds its next id gone knows it missed events. The time is
-- the host's clock, the store's on one host. A row of n > 1 events holds
-- them in 'data', a JSON array of [job id, queue, task, state, run at ms].
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,               -- epoch ms
    kind TEXT NOT NULL,
    job_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    state TEXT,                        -- the job's state after the change (NULL: removed)
    data TEXT NOT NULL,                -- JSON object: the kind's data
    result BLOB                        -- a completed job's result (JSON)
, n INTEGER NOT NULL DEFAULT 1);
INSERT INTO counters (name, value) VALUES ('events', 1), ('events_max_count', 10000),
    ('events_max_age_ms', 3600000);
CREATE TRIGGER events_trim AFTER INSERT ON events WHEN new.id / 100 > (new.id - new.n) / 100
    BEGIN
    DELETE FROM events WHERE id <= new.id - (SELECT value FROM counters
        WHERE name = 'events_max_count');
END;
CREATE TRIGGER jobs_event_moved AFTER UPDATE OF state ON jobs
    WHEN new.state != old.state AND (SELECT value FROM counters WHERE name = 'events') BEGIN
    INSERT INTO events (at, kind, job_id, queue, task, state, data, result) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        CASE WHEN new.stalls > old.stalls THEN 'stalled'
            WHEN old.state = 'active' AND new.state = 'delayed' THEN 'retrying'
            ELSE new.state END,
        new.id, new.queue, new.task, new.state,
        CASE WHEN new.state = 'active' THEN json_object('attempt', new.attempts)
            WHEN new.state = 'delayed' THEN json_object('run_at_ms', new.run_at, 'error',
                new.error)
            WHEN new.state IN ('failed', 'cancelled') OR new.stalls > old.stalls
                THEN json_object('error', new.error)
            ELSE '{}' END,
        CASE WHEN new.state = 'completed' THEN new.result END);
END;
CREATE TRIGGER jobs_event_progress AFTER UPDATE OF progress, progress_detail ON jobs
    WHEN old.state = 'active' AND new.state = 'active'
        AND (new.progress IS NOT old.progress OR new.progress_detail IS NOT old.progress_detail)
        AND (SELECT value FROM counters WHERE name = 'events') BEGIN
    INSERT INTO events (at, kind, job_id, queue, task, state, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'progress', new.id,
        new.queue, new.task, new.state, json_object('progress', new.progress, 'detail',
            json(CAST(new.progress_detail AS TEXT))));
END;

-- Jobs per queue and state, kept by these triggers in the transaction of
-- each change, so counting a queue reads a few rows, not its jobs.
CREATE TABLE job_counts (
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;
CREATE TRIGGER jobs_count_added AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_count_moved AFTER UPDATE OF state ON jobs WHEN new.state != old.state BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_count_removed AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;

-- Outcomes per minute, queue and task (conveyor.stats), counted in the
-- transaction of each outcome: the runs that end by the writer (tally.py),
-- the rest by this trigger ('stats' 0 in counters turns both off); workers
-- drop the minutes older than 'stats_max_age_ms' (default 7 days). run_ms
-- and runs: the runs that ended (completed, failed, retried); wait_ms: their
-- waits, from ready to start. Times are the store's clock at the outcome.
CREATE TABLE job_stats (
    minute INTEGER NOT NULL,           -- since the epoch
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    completed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    retried INTEGER NOT NULL,
    stalled INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    run_ms INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    wait_ms INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, task)
) WITHOUT ROWID;
-- The same counts per queue, ever (never trimmed).
CREATE TABLE queue_totals (
    queue TEXT PRIMARY KEY,
    completed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    retried INTEGER NOT NULL,
    stalled INTEGER NOT NULL,
    cancelled INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('stats', 1), ('stats_max_age_ms', 604800000);
CREATE TRIGGER jobs_stats_moved AFTER UPDATE OF state ON jobs
    WHEN new.state != old.state AND (new.state = 'cancelled' OR new.stalls > old.stalls
        OR (new.state IN ('completed', 'failed') AND old.state != 'active'))
        AND (SELECT value FROM counters WHERE name = 'stats') BEGIN
    INSERT INTO job_stats (minute, queue, task, completed, failed, retried, stalled, cancelled,
        run_ms, runs, wait_ms)
    VALUES (coalesce(new.finished_at, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
            / 60000, new.queue, new.task, new.state = 'completed', new.state = 'failed', 0,
        new.stalls > old.stalls, new.state = 'cancelled', 0, 0, 0)
    ON CONFLICT (minute, queue, task) DO UPDATE SET completed = completed + excluded.completed,
        failed = failed + excluded.failed, stalled = stalled + excluded.stalled,
        cancelled = cancelled + excluded.cancelled;
    INSERT INTO queue_totals (queue, completed, failed, retried, stalled, cancelled)
    VALUES (new.queue, new.state = 'completed', new.state = 'failed', 0, new.stalls > old.stalls,
        new.state = 'cancelled')
    ON CONFLICT (queue) DO UPDATE SET completed = completed + excluded.completed,
        failed = failed + excluded.failed, stalled = stalled + excluded.stalled,
        cancelled = cancelled + excluded.cancelled;
END;
