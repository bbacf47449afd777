-- 0003: logs are deleted with their job by a trigger instead of a foreign key,
-- so foreign-key enforcement can stay off: it cost about 1 us per enqueued job.

CREATE TABLE job_logs_new (
    job_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    message TEXT NOT NULL
);
INSERT INTO job_logs_new (job_id, at, message) SELECT job_id, at, message FROM job_logs ORDER BY rowid;
DROP TABLE job_logs;
ALTER TABLE job_logs_new RENAME TO job_logs;
CREATE INDEX job_logs_job ON job_logs (job_id);
CREATE TRIGGER jobs_delete_logs AFTER DELETE ON jobs BEGIN
    DELETE FROM job_logs WHERE job_id = old.id;
END;
