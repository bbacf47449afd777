-- 0005: schedules (cron or interval), with the last tick fired.

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    spec BLOB NOT NULL,                -- JSON of conveyor.schedule.Schedule
    last_tick INTEGER                  -- epoch ms of the last tick that made a job
);
