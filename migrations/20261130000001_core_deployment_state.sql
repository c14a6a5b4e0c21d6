-- The class of a core's deployment status (success, failed, in_progress), written by the
-- store from the domain's classification (DeploymentStatus::state) with every core change, so
-- that listings and the recount filter on it instead of restating the rule in SQL. Existing
-- rows are classified once here, with the rule as it stood when this migration was written.
ALTER TABLE cores ADD COLUMN deployment_state TEXT NOT NULL DEFAULT 'success';
UPDATE cores SET deployment_state = CASE
    WHEN deployment_status = 'IN_PROGRESS' THEN 'in_progress'
    WHEN deployment_status IN ('None', 'SUCCESSFUL') THEN 'success'
    ELSE 'failed' END;
CREATE INDEX cores_by_deployment_state ON cores (deployment_state, name);
