-- Templates: one row per version, plus a head row per template holding its latest version.
-- The head row is the optimistic-concurrency guard: a new version is written only if the
-- head still points at the version it was derived from.

CREATE TABLE template_heads (
    name           TEXT    NOT NULL PRIMARY KEY,
    latest_version INTEGER NOT NULL CHECK (latest_version >= 1)
) WITHOUT ROWID;

CREATE TABLE template_versions (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    -- JSON of the validated template content: components, jobConfig, deploymentPolicies
    spec       TEXT    NOT NULL,
    -- milliseconds since the Unix epoch, UTC
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
