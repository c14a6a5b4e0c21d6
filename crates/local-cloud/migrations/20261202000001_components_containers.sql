-- The account's private components (CreateComponentVersion with an inline recipe), the
-- containers simulated cores run for Docker Compose application components, and a behaviour
-- that makes application images fail to pull.
CREATE TABLE private_components (
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    recipe      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;

CREATE TABLE containers (
    core_name  TEXT NOT NULL,
    component  TEXT NOT NULL,
    service    TEXT NOT NULL,
    image      TEXT NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (core_name, component, service)
) WITHOUT ROWID;

ALTER TABLE core_behaviors ADD COLUMN image_pull_error INTEGER NOT NULL DEFAULT 0;
