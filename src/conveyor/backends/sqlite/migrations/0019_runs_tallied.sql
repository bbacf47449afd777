-- 0019: the runs that end (completed, failed or retried from active) are
-- counted by the writer's transaction (tally.py); the trigger counts the rest.
DROP TRIGGER jobs_stats_moved;
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
