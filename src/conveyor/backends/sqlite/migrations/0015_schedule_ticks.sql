-- 0015: how many ticks each schedule has fired (a schedule's limit, cron.py).
ALTER TABLE schedules ADD COLUMN ticks INTEGER NOT NULL DEFAULT 0;
