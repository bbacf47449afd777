-- 0020: the jobs of one enqueue are told in one events row of 'n' events
-- (adding.py writes it; the insert trigger is gone): the row's id is the
-- last of its n ids. The count trim runs when the ids cross a hundred.
ALTER TABLE events ADD COLUMN n INTEGER NOT NULL DEFAULT 1;
DROP TRIGGER jobs_event_added;
DROP TRIGGER events_trim;
CREATE TRIGGER events_trim AFTER INSERT ON events WHEN new.id / 100 > (new.id - new.n) / 100
    BEGIN
    DELETE FROM events WHERE id <= new.id - (SELECT value FROM counters
        WHERE name = 'events_max_count');
END;
