-- 0018: finished jobs with a retention of their own (configure(keep_completed=...)):
-- 'keep' names their bucket (job.retention_bucket), trimmed by its own index; the
-- task's index holds only the jobs that kept their task's retention.
ALTER TABLE jobs ADD COLUMN keep TEXT;
DROP INDEX jobs_retention;
CREATE INDEX jobs_retention ON jobs (task, state, finished_at)
    WHERE finished_at IS NOT NULL AND keep IS NULL;
CREATE INDEX jobs_kept ON jobs (keep, state, finished_at)
    WHERE finished_at IS NOT NULL AND keep IS NOT NULL;
