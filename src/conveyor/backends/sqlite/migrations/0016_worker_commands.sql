-- 0016: commands left for workers (pause, resume), taken with their heartbeat.
CREATE TABLE worker_commands (
    worker_id TEXT PRIMARY KEY,
    command TEXT NOT NULL              -- 'pause' or 'resume'
) WITHOUT ROWID;
