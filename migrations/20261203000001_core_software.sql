-- The software a core runs (decision 65): the whole record as JSON, and the three fields
-- `GET /cores` filters on as columns with an index.
ALTER TABLE cores ADD COLUMN software TEXT NOT NULL DEFAULT '{}';
ALTER TABLE cores ADD COLUMN nucleus_version TEXT;
ALTER TABLE cores ADD COLUMN os TEXT;
ALTER TABLE cores ADD COLUMN architecture TEXT;
CREATE INDEX cores_by_nucleus ON cores (nucleus_version, name);

-- The software summary: cores by nucleus, version and platform, moved with every core change
-- like fleet_counters. Cores that existed before this migration count as unknown.
CREATE TABLE fleet_software (
    nucleus       TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    os            TEXT    NOT NULL,
    architecture  TEXT    NOT NULL,
    cores         INTEGER NOT NULL DEFAULT 0,
    updating      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (nucleus, version, os, architecture)
) WITHOUT ROWID;
INSERT INTO fleet_software (nucleus, version, os, architecture, cores, updating)
    SELECT 'aws.greengrass.Nucleus', 'unknown', 'unknown', 'unknown', COUNT(*), 0 FROM cores HAVING COUNT(*) > 0;

-- Software update tasks: one JSON document each, written on its revision.
CREATE TABLE software_updates (
    id            TEXT    NOT NULL PRIMARY KEY,
    client_token  TEXT    UNIQUE,
    doc           TEXT    NOT NULL,
    rev           INTEGER NOT NULL
) WITHOUT ROWID;
