-- 0004: a job's TTL deadline (epoch ms): a job still unstarted then is
-- cancelled as 'expired' by the claim that finds it; cleared at its first start.

ALTER TABLE jobs ADD COLUMN expires_at INTEGER;
