-- 0008: groups (tenants) with their turns and limits, rate limits and pauses
-- of queues and groups, and the log of recent starts that rate limits read.

ALTER TABLE jobs ADD COLUMN grp TEXT;
DROP INDEX jobs_waiting;
CREATE INDEX jobs_waiting ON jobs (queue, priority DESC, seq) WHERE state = 'waiting' AND grp IS NULL;
CREATE INDEX jobs_group_waiting ON jobs (queue, grp, priority DESC, seq)
    WHERE state = 'waiting' AND grp IS NOT NULL;

ALTER TABLE queues ADD COLUMN rate_max INTEGER;
ALTER TABLE queues ADD COLUMN rate_ms INTEGER;
ALTER TABLE queues ADD COLUMN blocked_until INTEGER;
ALTER TABLE queues ADD COLUMN group_max_active INTEGER;
ALTER TABLE queues ADD COLUMN group_rate_max INTEGER;
ALTER TABLE queues ADD COLUMN group_rate_ms INTEGER;
ALTER TABLE queues ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;

CREATE TABLE groups (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    waiting INTEGER NOT NULL DEFAULT 0,  -- counted by enqueue, then kept by the triggers below
    active INTEGER NOT NULL DEFAULT 0,
    turn INTEGER NOT NULL DEFAULT 0,     -- the lowest goes next: when last served, or when
                                         -- it got jobs again after none (behind the others)
    max_active INTEGER,                  -- this group's own limits (NULL: the queue's default)
    rate_max INTEGER,
    rate_ms INTEGER,
    blocked_until INTEGER,               -- epoch ms; a job said "rate limited" (RateLimited)
    PRIMARY KEY (queue, name)
) WITHOUT ROWID;
CREATE INDEX groups_turns ON groups (queue, turn) WHERE waiting > 0;

CREATE TRIGGER jobs_group_moved AFTER UPDATE OF state ON jobs
    WHEN new.grp IS NOT NULL AND new.state != old.state BEGIN
    UPDATE groups SET waiting = waiting + (new.state = 'waiting') - (old.state = 'waiting'),
        active = active + (new.state = 'active') - (old.state = 'active'),
        turn = CASE WHEN waiting = 0 AND new.state = 'waiting' THEN (SELECT coalesce(max(turn), 0)
            + 1 FROM groups WHERE queue = new.queue AND waiting > 0) ELSE turn END
        WHERE queue = new.queue AND name = new.grp;
END;
CREATE TRIGGER jobs_group_removed AFTER DELETE ON jobs
    WHEN old.grp IS NOT NULL AND old.state IN ('waiting', 'active') BEGIN
    UPDATE groups SET waiting = waiting - (old.state = 'waiting'),
        active = active - (old.state = 'active')
        WHERE queue = old.queue AND name = old.grp;
END;

-- The n-th start of a scope (a queue, or queue NUL group) that has a rate limit;
-- rows older than the scope's last rate_max starts are deleted.
CREATE TABLE rate_log (
    scope TEXT NOT NULL,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (scope, n)
) WITHOUT ROWID;
