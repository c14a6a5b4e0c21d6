-- Staged rollouts of deployment tasks: the rollout state with the task (JSON, with its own
-- revision for conditional writes), each item's wave, report and previous template, the
-- Greengrass revision a retry task created, and every deployment id of a template version.
ALTER TABLE tasks ADD COLUMN rollout TEXT;                              -- JSON RolloutState
ALTER TABLE tasks ADD COLUMN rollout_active INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN revision TEXT;                             -- retry tasks: their deployment
CREATE INDEX tasks_rollout_active ON tasks (rollout_active) WHERE rollout_active = 1;

ALTER TABLE task_items ADD COLUMN wave INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_items ADD COLUMN report TEXT;                          -- SUCCEEDED, FAILED, TIMED_OUT, SKIPPED
ALTER TABLE task_items ADD COLUMN previous TEXT;                        -- JSON TemplateRef before the move

-- A template version keeps one current deployment (template_deployments); retries add
-- revisions, and outcomes of every revision still name their template version.
CREATE TABLE deployment_revisions (
    deployment_id     TEXT    NOT NULL PRIMARY KEY,
    template_name     TEXT    NOT NULL,
    template_version  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO deployment_revisions (deployment_id, template_name, template_version)
SELECT deployment_id, template_name, template_version FROM template_deployments;
