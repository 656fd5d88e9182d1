-- Who made each reliable call (`user:<id>`, `external`, or empty for code
-- on a node): a retry by anyone else is refused, not answered.
ALTER TABLE goverse_reliable_calls ADD COLUMN IF NOT EXISTS caller TEXT NOT NULL DEFAULT '';
