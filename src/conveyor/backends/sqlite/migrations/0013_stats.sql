-- 0013: outcomes counted per minute, queue and task, and per queue ever
-- (conveyor.stats), by a trigger in the transaction of each outcome.

-- Outcomes per minute, queue and task (conveyor.stats), counted by this
-- trigger in the transaction of each outcome; workers drop the minutes older
-- than 'stats_max_age_ms' (default 7 days). run_ms and runs: the runs that
-- ended (completed, failed, retried); wait_ms: their waits, from ready to
-- start. Times are the jobs' own (finished_at) or, for a retry, the host's
-- clock, the store's on one host.
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
INSERT INTO counters (name, value) VALUES ('stats_max_age_ms', 604800000);
CREATE TRIGGER jobs_stats_moved AFTER UPDATE OF state ON jobs
    WHEN new.state != old.state AND (new.state IN ('completed', 'failed', 'cancelled')
        OR new.stalls > old.stalls OR (old.state = 'active' AND new.state = 'delayed')) BEGIN
    INSERT INTO job_stats (minute, queue, task, completed, failed, retried, stalled, cancelled,
        run_ms, runs, wait_ms)
    SELECT t / 60000, new.queue, new.task, new.state = 'completed', new.state = 'failed',
        retried, stalled, new.state = 'cancelled', CASE WHEN ran THEN max(t - old.started_at, 0)
        ELSE 0 END, ran, CASE WHEN ran THEN max(old.started_at - old.run_at, 0) ELSE 0 END
    FROM (SELECT coalesce(new.finished_at,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) AS t,
        new.stalls > old.stalls AS stalled,
        old.state = 'active' AND new.state = 'delayed' AND new.stalls = old.stalls AS retried,
        old.state = 'active' AND new.stalls = old.stalls
            AND new.state IN ('completed', 'failed', 'delayed') AS ran) WHERE true
    ON CONFLICT (minute, queue, task) DO UPDATE SET completed = completed + excluded.completed,
        failed = failed + excluded.failed, retried = retried + excluded.retried,
        stalled = stalled + excluded.stalled, cancelled = cancelled + excluded.cancelled,
        run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs,
        wait_ms = wait_ms + excluded.wait_ms;
    INSERT INTO queue_totals (queue, completed, failed, retried, stalled, cancelled)
    VALUES (new.queue, new.state = 'completed', new.state = 'failed',
        old.state = 'active' AND new.state = 'delayed' AND new.stalls = old.stalls,
        new.stalls > old.stalls, new.state = 'cancelled')
    ON CONFLICT (queue) DO UPDATE SET completed = completed + excluded.completed,
        failed = failed + excluded.failed, retried = retried + excluded.retried,
        stalled = stalled + excluded.stalled, cancelled = cancelled + excluded.cancelled;
END;
