-- Deployment tasks (a third task kind), the one Greengrass deployment per template version,
-- per-core deployment state, exact fleet counters, and the status-ingestion cursor.
ALTER TABLE tasks ADD COLUMN template_name TEXT;
ALTER TABLE tasks ADD COLUMN template_version INTEGER;
ALTER TABLE tasks ADD COLUMN targets TEXT;            -- JSON, as submitted
ALTER TABLE tasks ADD COLUMN iot_job_config TEXT;     -- JSON, as submitted (echoed only)
ALTER TABLE tasks ADD COLUMN expanded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN batches_total INTEGER;
ALTER TABLE tasks ADD COLUMN batch_size INTEGER;
ALTER TABLE tasks ADD COLUMN status_message TEXT;

CREATE INDEX task_items_by_name ON task_items (name, task_id);

-- The Greengrass deployment of each template version (exactly one).
CREATE TABLE template_deployments (
    template_name     TEXT    NOT NULL,
    template_version  INTEGER NOT NULL,
    thing_group       TEXT    NOT NULL,
    deployment_id     TEXT    NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (template_name, template_version)
) WITHOUT ROWID;

ALTER TABLE cores ADD COLUMN desired_deployment_id TEXT;
ALTER TABLE cores ADD COLUMN status_at INTEGER;      -- ms of the last deployment state change

-- Fleet summary counters, changed in the same transaction as the core records they count.
CREATE TABLE fleet_counters (
    template_name      TEXT    NOT NULL,
    template_version   INTEGER NOT NULL,
    desired_in_use     INTEGER NOT NULL DEFAULT 0,
    reported_in_use    INTEGER NOT NULL DEFAULT 0,
    last_success       INTEGER NOT NULL DEFAULT 0,
    last_failed        INTEGER NOT NULL DEFAULT 0,
    last_in_progress   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (template_name, template_version)
) WITHOUT ROWID;

-- Existing cores are counted once, as the migration runs.
INSERT INTO fleet_counters (template_name, template_version, desired_in_use, last_success, last_failed, last_in_progress)
SELECT desired_name, desired_version, COUNT(*),
       SUM(deployment_status IN ('None', 'SUCCESSFUL')),
       SUM(deployment_status NOT IN ('None', 'SUCCESSFUL', 'IN_PROGRESS')),
       SUM(deployment_status = 'IN_PROGRESS')
FROM cores GROUP BY desired_name, desired_version;
INSERT INTO fleet_counters (template_name, template_version, reported_in_use)
SELECT reported_name, reported_version, COUNT(*) FROM cores GROUP BY reported_name, reported_version
ON CONFLICT (template_name, template_version) DO UPDATE SET reported_in_use = excluded.reported_in_use;

-- How far status ingestion has read each feed.
CREATE TABLE ingest_cursors (
    feed      TEXT    NOT NULL PRIMARY KEY,
    position  INTEGER NOT NULL
) WITHOUT ROWID;
