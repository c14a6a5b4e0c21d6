-- Greengrass deployments on thing groups, their execution on each core, and the status
-- events cores report (what EventBridge would carry on AWS).
CREATE TABLE deployments (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    target_arn   TEXT    NOT NULL,
    group_name   TEXT    NOT NULL,
    components   TEXT    NOT NULL,   -- JSON map name -> {componentVersion, configurationUpdate, runWith}
    job_id       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deployments_by_group ON deployments (group_name, created_at);

CREATE TABLE deployment_executions (
    core_name      TEXT    NOT NULL,
    deployment_id  TEXT    NOT NULL,
    status         TEXT    NOT NULL,  -- IN_PROGRESS, SUCCEEDED, FAILED
    reason         TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (core_name, deployment_id)
) WITHOUT ROWID;

CREATE TABLE deployment_status_events (
    sequence         INTEGER PRIMARY KEY AUTOINCREMENT,
    core_name        TEXT    NOT NULL,
    deployment_id    TEXT    NOT NULL,
    status           TEXT    NOT NULL,  -- SUCCEEDED, FAILED
    detailed_status  TEXT    NOT NULL,  -- SUCCESSFUL, FAILED_ROLLBACK_COMPLETE, ...
    reason           TEXT,
    time             INTEGER NOT NULL
);
