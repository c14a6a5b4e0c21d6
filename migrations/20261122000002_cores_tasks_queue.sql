-- Core tasks, their items, cores, provisioning journals, the event outbox and the work queue.

CREATE TABLE core_tasks (
    id            TEXT    NOT NULL PRIMARY KEY,
    type          TEXT    NOT NULL,
    core_version  TEXT    NOT NULL,
    options       TEXT,                 -- JSON, as submitted
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE core_task_items (
    task_id         TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    request         TEXT    NOT NULL,   -- JSON of the submitted core
    status          TEXT    NOT NULL,
    status_message  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER,
    PRIMARY KEY (task_id, name)
) WITHOUT ROWID;
CREATE INDEX core_task_items_unfinished ON core_task_items (status) WHERE status IN ('Waiting', 'InProgress');

CREATE TABLE cores (
    name                       TEXT    NOT NULL PRIMARY KEY,
    provisioning_template      TEXT    NOT NULL,
    desired_name               TEXT    NOT NULL,
    desired_version            INTEGER NOT NULL,
    reported_name              TEXT    NOT NULL,
    reported_version           INTEGER NOT NULL,
    deployment_status          TEXT    NOT NULL,
    deployment_status_message  TEXT,
    artifacts                  TEXT    NOT NULL DEFAULT '{}',   -- JSON map name -> artifact
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER
) WITHOUT ROWID;
CREATE INDEX cores_by_desired ON cores (desired_name, desired_version, name);

-- What has been done to provision a thing, so retries resume (public data only: no keys).
CREATE TABLE provisioning_journals (
    name     TEXT NOT NULL PRIMARY KEY,
    journal  TEXT NOT NULL
) WITHOUT ROWID;

-- Events written in the same transaction as the state change they report.
CREATE TABLE outbox (
    sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    detail_type   TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    published_at  INTEGER
);

-- The durable work queue: at-least-once delivery under leases.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    visible_at   INTEGER NOT NULL,      -- ms; receivable when <= now
    lease        TEXT,                  -- receipt of the current lease
    last_error   TEXT,
    dead         INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);
CREATE INDEX jobs_visible ON jobs (dead, visible_at);
