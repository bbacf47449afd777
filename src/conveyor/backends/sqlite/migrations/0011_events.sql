-- 0011: job events (conveyor.events), written by triggers in the same
-- transaction as each change, and their bounds.

-- Job events (conveyor.events): one row per change, written by these triggers
-- in the transaction that makes the change, so none is seen without the
-- other. 'events' in counters turns them on and off; the newest
-- 'events_max_count' rows are kept (trimmed here every 100 events), and
-- workers drop those older than 'events_max_age_ms' but the newest (the app
-- that connects last sets the three). Ids run without holes (a rolled-back
-- event frees its id for the next) and the newest row is never trimmed, so
-- ids never come back: a reader that finds its next id gone knows it missed
-- events. The time is the host's clock, the store's on one host.
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
);
INSERT INTO counters (name, value) VALUES ('events', 1), ('events_max_count', 10000),
    ('events_max_age_ms', 3600000);
CREATE TRIGGER events_trim AFTER INSERT ON events WHEN new.id % 100 = 0 BEGIN
    DELETE FROM events WHERE id <= new.id - (SELECT value FROM counters
        WHERE name = 'events_max_count');
END;
CREATE TRIGGER jobs_event_added AFTER INSERT ON jobs
    WHEN (SELECT value FROM counters WHERE name = 'events') BEGIN
    INSERT INTO events (at, kind, job_id, queue, task, state, data) VALUES (
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'enqueued', new.id,
        new.queue, new.task, new.state, json_object('run_at_ms', new.run_at));
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
