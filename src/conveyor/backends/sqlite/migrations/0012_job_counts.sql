-- 0012: jobs counted per queue and state by triggers, so counts() reads
-- a few rows at any number of jobs; counted once here from the jobs there are.

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
INSERT INTO job_counts (queue, state, n) SELECT queue, state, count(*) FROM jobs
    GROUP BY queue, state;
