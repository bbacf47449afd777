-- 0010: deleting a job (trimming finished ones above all) looks for its logs
-- only if it wrote any, and for children's outcomes only if it is a flow's
-- parent: the two trigger bodies were a third of the cost of each delete.

ALTER TABLE jobs ADD COLUMN logged INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET logged = 1 WHERE id IN (SELECT job_id FROM job_logs);
DROP TRIGGER jobs_delete_logs;
CREATE TRIGGER jobs_delete_logs AFTER DELETE ON jobs WHEN old.logged BEGIN
    DELETE FROM job_logs WHERE job_id = old.id;
END;
DROP TRIGGER jobs_delete_outcomes;
CREATE TRIGGER jobs_delete_outcomes AFTER DELETE ON jobs WHEN old.children > 0 BEGIN
    DELETE FROM job_outcomes WHERE parent_id = old.id;
END;
