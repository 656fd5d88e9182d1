-- The state of persistent objects: one row per object, its serde form as
-- JSONB, and the ownership epoch of the write that stored it (writes from an
-- older epoch are refused: fencing).
CREATE TABLE IF NOT EXISTS goverse_objects (
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    data        JSONB NOT NULL,
    epoch       BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (object_type, object_id)
);
