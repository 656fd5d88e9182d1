-- Reliable calls: the outcome of each call made with a caller-chosen call
-- id, written in the same transaction as the state change the call made,
-- so a retry returns it instead of running the method again. Rows older
-- than the retention window are purged by the nodes.
CREATE TABLE IF NOT EXISTS goverse_reliable_calls (
    object_type   TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    call_id       TEXT NOT NULL,
    method        TEXT NOT NULL,
    -- The protobuf-encoded response; NULL when the method returned an error.
    response      BYTEA,
    error_code    TEXT,
    error_message TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (object_type, object_id, call_id)
);
CREATE INDEX IF NOT EXISTS goverse_reliable_calls_created_at
    ON goverse_reliable_calls (created_at);
