-- Docker Compose applications: a head per application (the latest version number, the
-- concurrency guard of appends) and one row per version (the whole record as JSON).
CREATE TABLE application_heads (
    name TEXT PRIMARY KEY NOT NULL,
    latest_version INTEGER NOT NULL
);

CREATE TABLE application_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
