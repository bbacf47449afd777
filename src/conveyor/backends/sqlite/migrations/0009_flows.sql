-- 0009: flows. A child names its parent and what its failure does there; a
-- parent counts the children it still waits for; each finished child's
-- outcome is kept for its parent (and deleted with it).

ALTER TABLE jobs ADD COLUMN parent_id TEXT;
ALTER TABLE jobs ADD COLUMN on_failure TEXT;
ALTER TABLE jobs ADD COLUMN children INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN pipe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN flow_id TEXT;
CREATE INDEX jobs_waiting_children ON jobs (queue, created_at) WHERE state = 'waiting_children';

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
CREATE TRIGGER jobs_delete_outcomes AFTER DELETE ON jobs BEGIN
    DELETE FROM job_outcomes WHERE parent_id = old.id;
END;
