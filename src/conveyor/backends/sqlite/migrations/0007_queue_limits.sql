-- 0007: a queue's global concurrency: at most max_active of its jobs active at once.

ALTER TABLE queues ADD COLUMN max_active INTEGER;
