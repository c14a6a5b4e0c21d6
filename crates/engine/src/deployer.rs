//! Deployment tasks: expanding targets, one Greengrass deployment per template version, moving
//! cores between template groups; and the status side: ingesting reported outcomes and
//! reconciling cores whose outcome was missed.

use std::collections::BTreeSet;
use std::sync::Arc;

use ggprov_domain::cores::{
    CORE_TEMPLATE_UPDATED_EVENT, Core, DEPLOYMENT_TASK_CREATED_EVENT, DeploymentSpec, Event, Task, TaskKind,
    TemplateRef,
};
use ggprov_domain::jobs::{JobPayload as _, TaskBatch};
use ggprov_domain::ports::{
    CloudError, ComponentSpec, CoreStore, DeploymentOutcome, DeploymentRequest, Greengrass, IotRegistry, StatusFeed,
    StatusSignal, TemplateStore, WorkQueue,
};
use ggprov_domain::template::DEPLOYMENT_GROUP_PREFIX;
use ggprov_domain::{TaskId, TemplateName, ThingName, Timestamp};

use crate::StepError;

/// Runs deployment tasks and keeps reported status up to date.
pub struct Deployer {
    store: Arc<dyn CoreStore>,
    templates: Arc<dyn TemplateStore>,
    iot: Arc<dyn IotRegistry>,
    greengrass: Arc<dyn Greengrass>,
    feed: Arc<dyn StatusFeed>,
    queue: Arc<dyn WorkQueue>,
    batch_size: u32,
    /// Serialises the creation of template deployments within this process.
    creating: tokio::sync::Mutex<()>,
}

fn permanent(message: impl Into<String>) -> StepError {
    StepError::permanent(message)
}

impl Deployer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn CoreStore>,
        templates: Arc<dyn TemplateStore>,
        iot: Arc<dyn IotRegistry>,
        greengrass: Arc<dyn Greengrass>,
        feed: Arc<dyn StatusFeed>,
        queue: Arc<dyn WorkQueue>,
        batch_size: u32,
    ) -> Self {
        Self {
            store,
            templates,
            iot,
            greengrass,
            feed,
            queue,
            batch_size: batch_size.max(1),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// Expands the targets into cores (all pages of group membership, de-duplicated), records
    /// them with the task's event, and queues their batches.
    pub async fn expand(&self, task_id: &TaskId) -> Result<(), StepError> {
        let Some(task) = self.store.task_header(task_id).await? else {
            return Err(permanent(format!("deployment task {task_id} does not exist")));
        };
        let TaskKind::Deployment(spec) = &task.kind else {
            return Err(permanent(format!("task {task_id} is not a deployment task")));
        };
        if spec.expanded {
            return Ok(());
        }
        let names_of = |key: &str| -> Vec<String> {
            spec.targets
                .get(key)
                .and_then(|v| v.as_array())
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let mut cores: BTreeSet<ThingName> = BTreeSet::new();
        for name in names_of("thingNames") {
            cores.insert(ThingName::parse(&name).map_err(|e| permanent(e.to_string()))?);
        }
        for group in names_of("thingGroupNames") {
            match self.iot.list_things_in_thing_group(&group).await {
                Ok(members) => cores.extend(members),
                Err(err) if err.is_not_found() => {
                    self.store.fail_deployment_task(task_id, &format!("thing group '{group}' does not exist")).await?;
                    return Ok(());
                }
                Err(err) => return Err(err.into()),
            }
        }
        if cores.is_empty() {
            self.store.fail_deployment_task(task_id, "the targets matched no thing").await?;
            return Ok(());
        }
        let cores: Vec<ThingName> = cores.into_iter().collect();
        let event = Event {
            detail_type: DEPLOYMENT_TASK_CREATED_EVENT.to_owned(),
            detail: serde_json::json!({
                "taskId": task_id.as_str(),
                "templateName": spec.template.name,
                "templateVersion": spec.template.version,
                "coreCount": cores.len(),
                "status": "success",
            }),
        };
        if self.store.expand_deployment_task(task_id, &cores, self.batch_size, &event).await? {
            let jobs: Vec<_> = cores
                .chunks(self.batch_size as usize)
                .map(|chunk| TaskBatch { task_id: task_id.clone(), items: chunk.to_vec() }.job())
                .collect();
            self.queue.enqueue(&jobs).await?;
        }
        Ok(())
    }

    /// Ends a deployment task whose expansion was dead-lettered.
    pub async fn give_up(&self, task_id: &TaskId, reason: &str) -> Result<(), StepError> {
        Ok(self.store.fail_deployment_task(task_id, &format!("gave up after repeated failures: {reason}")).await?)
    }

    /// The deployment of a template version: created once, found again after a crash.
    async fn ensure_template_deployment(&self, template: &TemplateRef) -> Result<String, StepError> {
        let _guard = self.creating.lock().await;
        if let Some(id) = self.store.template_deployment(template).await? {
            return Ok(id);
        }
        let name = TemplateName::parse(&template.name).map_err(|_| permanent("Template not found"))?;
        let stored = self
            .templates
            .template_version(&name, template.version)
            .await?
            .ok_or_else(|| permanent("Template not found"))?;
        let group = name.deployment_group(template.version);
        self.iot.ensure_thing_group(&group).await.map_err(|e| with_prefix("Unable to create thing group", &e))?;
        let id = match self.greengrass.find_deployment(&group).await? {
            Some(id) => id,
            None => {
                let request = DeploymentRequest {
                    thing_group: group.clone(),
                    deployment_name: group.clone(),
                    components: stored
                        .spec
                        .components()
                        .iter()
                        .map(|c| {
                            let spec = ComponentSpec {
                                version: c.version.as_str().to_owned(),
                                configuration_update: c
                                    .configuration_update
                                    .as_ref()
                                    .map(|u| serde_json::to_value(u).expect("serialises")),
                                run_with: c.run_with.as_ref().map(|r| serde_json::to_value(r).expect("serialises")),
                            };
                            (c.key.as_str().to_owned(), spec)
                        })
                        .collect(),
                    iot_job_configuration: stored
                        .spec
                        .job_config()
                        .map(|j| serde_json::to_value(j).expect("serialises")),
                    deployment_policies: stored
                        .spec
                        .deployment_policies()
                        .map(|p| serde_json::to_value(p).expect("serialises")),
                };
                self.greengrass
                    .create_deployment(&request)
                    .await
                    .map_err(|e| with_prefix("Failed to create deployment", &e))?
            }
        };
        Ok(self.store.save_template_deployment(template, &group, &id).await?)
    }

    /// A batch of a deployment task: set each core's desired template and move it into the
    /// template version's group.
    pub async fn deploy_batch(
        &self,
        task: &Task,
        spec: &DeploymentSpec,
        items: &[ThingName],
        ctx: &crate::JobContext,
    ) -> Result<(), StepError> {
        let deployment = self.ensure_template_deployment(&spec.template).await;
        let target_group = format!("{DEPLOYMENT_GROUP_PREFIX}{}_{}", spec.template.name, spec.template.version);
        for name in items {
            let Some(started) = self.store.start_item(&task.id, name, &ctx.holder, ctx.lease).await? else { continue };
            if !started.won {
                continue;
            }
            let deployment_id = match &deployment {
                Ok(id) => id,
                Err(StepError::Permanent { message, .. }) => {
                    self.store.fail_deployment_item(&task.id, name, message).await?;
                    continue;
                }
                Err(StepError::Transient { message, .. }) => return Err(StepError::transient(message.clone())),
                Err(StepError::Crash(point)) => return Err(StepError::Crash(point)),
            };
            match self.move_core(name, &target_group).await {
                Ok(()) => self.store.complete_deployment_item(&task.id, name, &spec.template, deployment_id).await?,
                Err(StepError::Permanent { message, .. }) => {
                    self.store.fail_deployment_item(&task.id, name, &message).await?
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    async fn move_core(&self, name: &ThingName, target_group: &str) -> Result<(), StepError> {
        if self.store.core(name).await?.is_none() {
            return Err(permanent(format!("{name} is not a core provisioned by ggprov")));
        }
        if self.greengrass.get_core_device(name).await?.is_none() {
            return Err(permanent("Core device not registered with Greengrass V2"));
        }
        for group in self.iot.list_thing_groups_for_thing(name).await? {
            if group.starts_with(DEPLOYMENT_GROUP_PREFIX) && group != target_group {
                self.iot
                    .remove_thing_from_thing_group(&group, name)
                    .await
                    .map_err(|e| with_prefix("Failed removing from existing deployment thing groups", &e))?;
            }
        }
        self.iot
            .add_thing_to_thing_group(target_group, name)
            .await
            .map_err(|e| with_prefix("Failed to add core device to deployment thing group target", &e))
    }

    /// Applies the status messages that arrived since the last call; returns how many
    /// changed a core.
    pub async fn ingest(&self) -> Result<usize, StepError> {
        let mut applied = 0;
        loop {
            let received = self.feed.receive(100).await?;
            if received.is_empty() {
                return Ok(applied);
            }
            for message in &received {
                let changed = match &message.signal {
                    StatusSignal::Outcome(outcome) => self.apply(outcome).await?,
                    StatusSignal::CoreChanged(core) => match self.store.core(core).await? {
                        Some(core) => self.reconcile_core(&core).await?,
                        None => false,
                    },
                };
                if changed {
                    applied += 1;
                }
            }
            let receipts: Vec<String> = received.into_iter().map(|m| m.receipt).collect();
            self.feed.acknowledge(&receipts).await?;
        }
    }

    async fn apply(&self, outcome: &DeploymentOutcome) -> Result<bool, StepError> {
        let Some(template) = self.store.template_of_deployment(&outcome.deployment_id).await? else {
            return Ok(false); // not a ggprov deployment
        };
        let event = Event {
            detail_type: CORE_TEMPLATE_UPDATED_EVENT.to_owned(),
            detail: serde_json::json!({
                "coreName": outcome.core_name,
                "deploymentId": outcome.deployment_id,
                "templateName": template.name,
                "templateVersion": template.version,
                "status": if outcome.succeeded { "success" } else { "failed" },
                "detailedStatus": outcome.detailed_status,
            }),
        };
        Ok(self.store.apply_deployment_outcome(outcome, &template, &event).await?)
    }

    /// Compares cores still waiting for an outcome with what Greengrass says of their desired
    /// deployment, and applies what an event would have said. Returns how many it corrected.
    pub async fn reconcile(&self) -> Result<usize, StepError> {
        let mut corrected = 0;
        for core in self.store.cores_in_progress().await? {
            if self.reconcile_core(&core).await? {
                corrected += 1;
            }
        }
        Ok(corrected)
    }

    /// Applies what Greengrass says of the core's desired deployment, if it has ended.
    async fn reconcile_core(&self, core: &Core) -> Result<bool, StepError> {
        let Some(desired) = &core.desired_deployment_id else { return Ok(false) };
        let effective = match self.greengrass.list_effective_deployments(&core.name).await {
            Ok(list) => list,
            Err(err) if err.is_not_found() => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        let Some(execution) = effective.iter().find(|d| &d.deployment_id == desired) else { return Ok(false) };
        let status = execution.core_device_execution_status.as_deref().unwrap_or("");
        let succeeded = match status {
            "SUCCEEDED" | "COMPLETED" => true,
            "FAILED" | "REJECTED" | "TIMED_OUT" | "CANCELED" | "ABORTED" => false,
            _ => return Ok(false),
        };
        let outcome = DeploymentOutcome {
            position: 0,
            core_name: core.name.as_str().to_owned(),
            deployment_id: desired.clone(),
            succeeded,
            detailed_status: if succeeded { "SUCCESSFUL".to_owned() } else { format!("FAILED_{status}") },
            reason: execution.reason.clone(),
            time: Timestamp::now(),
        };
        self.apply(&outcome).await
    }
}

fn with_prefix(prefix: &str, err: &CloudError) -> StepError {
    if err.is_transient() {
        StepError::transient(format!("{prefix}: {err}"))
    } else {
        StepError::permanent(format!("{prefix}: {err}"))
    }
}
