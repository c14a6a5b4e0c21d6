-- The platform a simulated core reports (set through the control API; otherwise a default
-- mix by name), and whether its nucleus updates fail.
CREATE TABLE core_platforms (
    core_name     TEXT NOT NULL PRIMARY KEY,
    os            TEXT NOT NULL,
    architecture  TEXT NOT NULL
) WITHOUT ROWID;
ALTER TABLE core_behaviors ADD COLUMN nucleus_update_fails INTEGER NOT NULL DEFAULT 0;
