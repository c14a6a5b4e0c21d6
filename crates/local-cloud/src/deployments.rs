//! Greengrass deployments on the local cloud: a deployment targets a thing group; every
//! connected core in the group applies it and reports the outcome asynchronously, as its
//! behavior says (`PUT /local-cloud/cores/{name}/behavior`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Fail, LocalCloud, all, execute, exists, not_found, one, params};
use ggprov_domain::ports::{CloudError, EffectiveDeployment};
use ggprov_domain::{ThingName, Timestamp};
use serde::{Deserialize, Serialize};

/// A component of a deployment (Greengrass `ComponentDeploymentSpecification`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedComponent {
    pub component_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_update: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_with: Option<serde_json::Value>,
}

/// A deployment outcome a core reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatusEvent {
    pub sequence: u64,
    pub core_name: String,
    pub deployment_id: String,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// Greengrass detailed status: `SUCCESSFUL`, `FAILED_ROLLBACK_COMPLETE`, ...
    pub detailed_status: String,
    pub reason: Option<String>,
    pub time: Timestamp,
}

impl LocalCloud {
    /// Creates a deployment on a thing group (Greengrass `CreateDeployment`); every
    /// connected core in the group starts applying it. Returns the deployment id.
    pub async fn create_deployment(
        &self,
        group: &str,
        name: &str,
        components: &BTreeMap<String, DeployedComponent>,
    ) -> Result<String, CloudError> {
        const API: &str = "CreateDeployment";
        self.admit(API)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let members: Vec<String> = self
            .write(API, |c| {
                if !exists(c, "SELECT 1 FROM thing_groups WHERE name = ?", [group])? {
                    return Err(not_found(API, format!("thing group {group} does not exist")).into());
                }
                execute(
                    c,
                    "INSERT INTO deployments (id, name, target_arn, group_name, components, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    params![
                        id,
                        name,
                        crate::thing_group_arn(self.region(), group),
                        group,
                        serde_json::to_string(components).expect("components serialise"),
                        uuid::Uuid::new_v4().simple().to_string(),
                        Timestamp::now().as_millis()
                    ],
                )?;
                let sql = "SELECT m.thing_name FROM thing_group_members m JOIN core_devices c ON c.name = m.thing_name \
                     WHERE m.group_name = ? AND c.status = 'HEALTHY'";
                Ok(all(c, sql, [group], |r| r.get(0))?)
            })
            .await?;
        for member in members {
            self.start_applying(member);
        }
        Ok(id)
    }

    /// The newest deployment of each group the core belongs to that it has not applied yet.
    fn pending_deployments(&self, core: &str) -> Result<Vec<(String, String)>, CloudError> {
        self.read(SIMULATION, |c| {
            let sql = "SELECT d.id, d.components FROM thing_group_members m JOIN deployments d ON d.group_name = m.group_name \
                 WHERE m.thing_name = ?1 AND d.created_at = (SELECT MAX(created_at) FROM deployments WHERE group_name = m.group_name) \
                 AND NOT EXISTS (SELECT 1 FROM deployment_executions e WHERE e.core_name = ?1 AND e.deployment_id = d.id)";
            Ok(all(c, sql, [core], |r| Ok((r.get("id")?, r.get("components")?)))?)
        })
    }

    /// Starts applying, in the background, every pending deployment of a connected core.
    pub(crate) fn start_applying(&self, core: String) {
        let cloud = self.clone();
        tokio::spawn(async move {
            if let Err(err) = cloud.apply_pending(&core).await {
                tracing::warn!(core.name = %core, error = %err, "simulated core could not apply its deployments");
            }
        });
    }

    async fn apply_pending(&self, core: &str) -> Result<(), CloudError> {
        for (deployment_id, components) in self.pending_deployments(core)? {
            let now = Timestamp::now().as_millis();
            // The execution starts, and the core's behavior is read, in one write.
            let started = self
                .write(SIMULATION, |c| {
                    let sql = "INSERT OR IGNORE INTO deployment_executions (core_name, deployment_id, status, created_at, updated_at) \
                         VALUES (?1, ?2, 'IN_PROGRESS', ?3, ?3)";
                    if execute(c, sql, params![core, deployment_id, now])? == 0 {
                        return Ok(None); // another trigger is applying it
                    }
                    let sql = "SELECT deployment_outcome, delay_ms, image_pull_error, nucleus_update_fails FROM core_behaviors WHERE core_name = ?";
                    let behavior = one(c, sql, [core], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                    Ok(Some(behavior.unwrap_or_else(|| ("SUCCEEDED".to_owned(), 0, false, false))))
                })
                .await?;
            let Some((outcome, delay_ms, pull_error, nucleus_fails)): Option<(String, i64, bool, bool)> = started
            else {
                continue;
            };
            if outcome == "NO_RESPONSE" {
                continue; // the core never reports: the execution stays IN_PROGRESS
            }
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0))).await;
            }
            let components: BTreeMap<String, DeployedComponent> = serde_json::from_str(&components).unwrap_or_default();
            let applications = self.application_services(&components)?;
            let nucleus_problem = self.nucleus_problem(core, &components, nucleus_fails)?;
            let result = if outcome != "SUCCEEDED" {
                Err("simulated failure (local cloud behavior FAILED); the core rolled back".to_owned())
            } else if let Some(problem) = nucleus_problem {
                Err(problem)
            } else if let Some((component, (_, image))) =
                applications.iter().find_map(|(c, services)| services.first().map(|s| (c, s))).filter(|_| pull_error)
            {
                Err(format!(
                    "{component}: DockerApplicationManager could not pull image '{image}' (simulated image pull error); the core rolled back"
                ))
            } else {
                Ok(())
            };
            self.finish_execution(core, &deployment_id, result, &components, &applications).await?;
        }
        Ok(())
    }

    /// Why the deployment's nucleus cannot run on the core: a version its platform does not
    /// support, or an update the core was told to fail. `None` when there is no nucleus to
    /// change.
    fn nucleus_problem(
        &self,
        core: &str,
        components: &BTreeMap<String, DeployedComponent>,
        update_fails: bool,
    ) -> Result<Option<String>, CloudError> {
        let Some((name, spec)) = components.iter().find(|(n, _)| ggprov_domain::software::is_nucleus(n)) else {
            return Ok(None);
        };
        let device = self.read(SIMULATION, |c| {
            let sql = "SELECT core_version, platform, architecture FROM core_devices WHERE name = ?";
            Ok(one(c, sql, [core], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
            })?)
        })?;
        let Some((running, os, architecture)) = device else {
            return Ok(None);
        };
        let version = &spec.component_version;
        if running.as_ref() == Some(version) {
            return Ok(None);
        }
        let platform = ggprov_domain::software::Platform {
            os: os.unwrap_or_default(),
            architecture: architecture.unwrap_or_default(),
        };
        let running = running.unwrap_or_else(|| "?".into());
        if let Some(support) = self.inner.catalogue.platforms(name, version)
            && !support.0.is_empty()
            && !support.supports(&platform)
        {
            return Ok(Some(format!("{name} {version} does not run on {platform}; the core rolled back to {running}")));
        }
        Ok(update_fails
            .then(|| format!("{name} update to {version} failed (simulated); the core rolled back to {running}")))
    }

    /// The services (name, image) of every application component of a deployment, from the
    /// recipes' `Services` configuration.
    fn application_services(
        &self,
        components: &BTreeMap<String, DeployedComponent>,
    ) -> Result<Vec<ApplicationServices>, CloudError> {
        let mut out = Vec::new();
        for (name, spec) in components {
            // Public components have no recipe here: no read for them on every core's apply.
            if self.inner.catalogue.contains(name, &spec.component_version) {
                continue;
            }
            let recipe: Option<String> = self.read(SIMULATION, |c| {
                let sql = "SELECT recipe FROM private_components WHERE name = ? AND version = ?";
                Ok(one(c, sql, [name, &spec.component_version], |r| r.get(0))?)
            })?;
            let Some(recipe) = recipe else {
                continue;
            };
            let recipe: serde_json::Value = serde_json::from_str(&recipe).unwrap_or_default();
            if recipe["ComponentDependencies"].get("aws.greengrass.DockerApplicationManager").is_none() {
                continue;
            }
            let services = recipe["ComponentConfiguration"]["DefaultConfiguration"]["Services"]
                .as_object()
                .map(|m| {
                    m.iter().map(|(s, v)| (s.clone(), v["Image"].as_str().unwrap_or_default().to_owned())).collect()
                })
                .unwrap_or_default();
            out.push((name.clone(), services));
        }
        Ok(out)
    }

    async fn finish_execution(
        &self,
        core: &str,
        deployment_id: &str,
        result: Result<(), String>,
        components: &BTreeMap<String, DeployedComponent>,
        applications: &[ApplicationServices],
    ) -> Result<(), CloudError> {
        let now = Timestamp::now().as_millis();
        let succeeded = result.is_ok();
        let (status, reason) = match &result {
            Ok(()) => ("SUCCEEDED", None),
            Err(reason) => ("FAILED", Some(reason.as_str())),
        };
        let detailed = detailed_status(status).unwrap_or("SUCCESSFUL");
        self.write(SIMULATION, |c| {
            execute(
                c,
                "UPDATE deployment_executions SET status = ?, reason = ?, updated_at = ? WHERE core_name = ? AND deployment_id = ?",
                params![status, reason, now, core, deployment_id],
            )?;
            if succeeded {
                for (name, spec) in components {
                    execute(
                        c,
                        "INSERT INTO installed_components (core_name, name, version) VALUES (?, ?, ?) \
                         ON CONFLICT (core_name, name) DO UPDATE SET version = excluded.version",
                        [core, name, &spec.component_version],
                    )?;
                }
                // The core runs the deployment's nucleus now.
                if let Some((_, spec)) = components.iter().find(|(n, _)| ggprov_domain::software::is_nucleus(n)) {
                    execute(
                        c,
                        "UPDATE core_devices SET core_version = ?, last_status_update = ? WHERE name = ?",
                        params![spec.component_version, now, core],
                    )?;
                }
                // The core runs the containers of the deployment's applications, and no others.
                execute(c, "DELETE FROM containers WHERE core_name = ?", [core])?;
                for (component, services) in applications {
                    for (service, image) in services {
                        execute(
                            c,
                            "INSERT INTO containers (core_name, component, service, image, state) VALUES (?, ?, ?, ?, 'running')",
                            [core, component, service, image],
                        )?;
                    }
                }
            }
            execute(
                c,
                "INSERT INTO deployment_status_events (core_name, deployment_id, status, detailed_status, reason, time) VALUES (?, ?, ?, ?, ?, ?)",
                params![core, deployment_id, status, detailed, reason, now],
            )?;
            Ok::<_, Fail>(())
        })
        .await
    }

    /// Deployment outcomes reported by cores, oldest first, after `after` (a sequence number).
    pub async fn deployment_status_events(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<DeploymentStatusEvent>, CloudError> {
        const API: &str = "DeploymentStatusEvents";
        self.read(API, |c| {
            let sql = "SELECT sequence, core_name, deployment_id, status, detailed_status, reason, time \
                 FROM deployment_status_events WHERE sequence > ? ORDER BY sequence LIMIT ?";
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            Ok(all(c, sql, [after, i64::from(limit)], |r| {
                Ok(DeploymentStatusEvent {
                    sequence: r.get::<_, i64>("sequence")? as u64,
                    core_name: r.get("core_name")?,
                    deployment_id: r.get("deployment_id")?,
                    status: r.get("status")?,
                    detailed_status: r.get("detailed_status")?,
                    reason: r.get("reason")?,
                    time: Timestamp::from_millis(r.get("time")?).unwrap_or_else(Timestamp::now),
                })
            })?)
        })
    }

    /// The deployments in effect on a core, newest first.
    pub(crate) fn effective_deployments(&self, core: &ThingName) -> Result<Vec<EffectiveDeployment>, CloudError> {
        const API: &str = "ListEffectiveDeployments";
        let region = self.region();
        self.read(API, |c| {
            let sql = "SELECT d.id, d.name, d.target_arn, d.job_id, e.status, e.reason, e.created_at, e.updated_at \
                 FROM deployment_executions e JOIN deployments d ON d.id = e.deployment_id \
                 WHERE e.core_name = ? ORDER BY e.created_at DESC, d.id";
            Ok(all(c, sql, [core.as_str()], |r| {
                let job_id: String = r.get("job_id")?;
                let status: String = r.get("status")?;
                Ok(EffectiveDeployment {
                    deployment_id: r.get("id")?,
                    deployment_name: r.get("name")?,
                    iot_job_arn: Some(format!("arn:aws:iot:{region}:{}:job/{job_id}", crate::ACCOUNT_ID)),
                    iot_job_id: Some(job_id),
                    target_arn: Some(r.get("target_arn")?),
                    detailed_status: detailed_status(&status).map(str::to_owned),
                    core_device_execution_status: Some(status),
                    reason: r.get("reason")?,
                    created_at: Timestamp::from_millis(r.get("created_at")?),
                    updated_at: Timestamp::from_millis(r.get("updated_at")?),
                })
            })?)
        })
    }
}

/// An application component and its services (name, image).
type ApplicationServices = (String, Vec<(String, String)>);

/// The simulated core's own work (applying deployments), as an "API" in errors.
const SIMULATION: &str = "SimulatedCore";

/// The detailed status a simulated core reports for an execution status: it succeeds, or
/// fails and rolls back (the only failure the simulation has). `None` while it runs.
fn detailed_status(status: &str) -> Option<&'static str> {
    match status {
        "SUCCEEDED" => Some("SUCCESSFUL"),
        "FAILED" => Some("FAILED_ROLLBACK_COMPLETE"),
        _ => None,
    }
}
