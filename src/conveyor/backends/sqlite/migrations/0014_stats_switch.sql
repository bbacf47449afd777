-- 0014: statistics can be turned off ('stats' in counters, EventSettings.stats).
INSERT INTO counters (name, value) VALUES ('stats', 1);
DROP TRIGGER jobs_stats_moved;
CREATE TRIGGER jobs_stats_moved AFTER UPDATE OF state ON jobs
    WHEN new.state != old.state AND (new.state IN ('completed', 'failed', 'cancelled')
        OR new.stalls > old.stalls OR (old.state = 'active' AND new.state = 'delayed'))
        AND (SELECT value FROM counters WHERE name = 'stats') BEGIN
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
