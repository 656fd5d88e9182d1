-- Deleted objects leave a row holding no state (`null`) at the deleter's
-- epoch, so a stale owner cannot write them back; such rows (and the rows
-- new owners' claims store) are purged once older than the retention.
CREATE INDEX IF NOT EXISTS goverse_objects_no_state
    ON goverse_objects (updated_at) WHERE data = 'null'::jsonb;
