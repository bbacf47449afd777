-- 0017: a parent's children found by index (get_flow), for flow jobs only.
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
