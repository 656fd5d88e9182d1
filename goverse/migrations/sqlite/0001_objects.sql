-- The state of persistent objects: one row per object, its serde form as
-- JSON text, and the ownership epoch of the write that stored it (writes
-- from an older epoch are refused: fencing).
CREATE TABLE IF NOT EXISTS goverse_objects (
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    data        TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (object_type, object_id)
) WITHOUT ROWID;
