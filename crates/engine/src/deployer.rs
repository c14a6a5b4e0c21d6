//! Deployment tasks: expanding targets, one Greengrass deployment per template version, moving
//! cores between template groups; and the status side: ingesting reported outcomes and
//! reconciling cores whose outcome was missed.

use std::collections::BTreeSet;
use std::sync::Arc;

use ggprov_domain::cores::{
    CORE_TEMPLATE_UPDATED_EVENT, Core, DEPLOYMENT_TASK_CREATED_EVENT, DeploymentSpec, Event, NO_TEMPLATE, Task,
    TaskKind, TemplateRef,
};
use ggprov_domain::jobs::{JobPayload as _, TaskBatch};
use ggprov_domain::ports::{
    CloudError, ComponentSpec, CoreStore, DeploymentOutcome, DeploymentRequest, Greengrass, IotRegistry, StatusFeed,
    StatusSignal, TemplateStore, WorkQueue,
};
use ggprov_domain::rollout;
use ggprov_domain::rollout_service::Rollouts;
use ggprov_domain::software::Nucleus;
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
    /// Serialises retry tasks' revisions within this process.
    revising: tokio::sync::Mutex<()>,
    rollouts: Rollouts,
    /// The nucleus of each template version seen (versions never change).
    nuclei: std::sync::Mutex<std::collections::HashMap<TemplateRef, Option<Nucleus>>>,
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
            store: store.clone(),
            templates,
            iot,
            greengrass,
            feed,
            queue: queue.clone(),
            batch_size: batch_size.max(1),
            creating: tokio::sync::Mutex::new(()),
            revising: tokio::sync::Mutex::new(()),
            rollouts: Rollouts::new(store, queue, batch_size.max(1) as usize),
            nuclei: std::sync::Mutex::default(),
        }
    }

    /// The nucleus a template version deploys, if any (read once per version and process).
    async fn nucleus_of(&self, template: &TemplateRef) -> Result<Option<Nucleus>, StepError> {
        if let Some(known) = self.nuclei.lock().expect("nuclei lock").get(template) {
            return Ok(known.clone());
        }
        let Ok(name) = TemplateName::parse(&template.name) else { return Ok(None) };
        let Some(stored) = self.templates.template_version(&name, template.version).await? else { return Ok(None) };
        let nucleus = Nucleus::of_components(stored.spec.components());
        self.nuclei.lock().expect("nuclei lock").insert(template.clone(), nucleus.clone());
        Ok(nucleus)
    }

    /// Expands the targets into cores (all pages of group membership and of a fleet-indexing
    /// query, de-duplicated; for a retry or rollback task, the cores of the task it follows),
    /// records them with their waves and the task's events, and queues the batches that may
    /// move now (every core, or a rollout's first wave).
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
        if let Some(state) = &spec.rollout
            && state.phase.is_terminal()
        {
            let message = state.status_message().unwrap_or_else(|| "Rollout ended".to_owned());
            self.store.fail_deployment_task(task_id, &format!("{message} (before its targets were expanded)")).await?;
            return Ok(());
        }
        let cores = match self.rollouts.derived_targets(spec).await? {
            Some(cores) => cores.into_iter().collect(),
            None => match self.expand_targets(spec).await? {
                Ok(cores) => cores,
                Err(message) => {
                    self.store.fail_deployment_task(task_id, &message).await?;
                    return Ok(());
                }
            },
        };
        if cores.is_empty() {
            self.store.fail_deployment_task(task_id, "the targets matched no thing").await?;
            return Ok(());
        }
        let cores: Vec<ThingName> = cores.into_iter().collect();
        let now = Timestamp::now();
        let mut events = vec![Event {
            detail_type: DEPLOYMENT_TASK_CREATED_EVENT.to_owned(),
            detail: serde_json::json!({
                "taskId": task_id.as_str(),
                "templateName": spec.template.name,
                "templateVersion": spec.template.version,
                "coreCount": cores.len(),
                "status": "success",
            }),
        }];
        let (waves, rollout) = match &spec.rollout {
            Some(stored) => {
                let planned = stored.spec.plan(cores.len());
                let state = stored.clone().expanded(&planned, now);
                events.push(Event {
                    detail_type: rollout::WAVE_STARTED_EVENT.to_owned(),
                    detail: serde_json::json!({
                        "taskId": task_id.as_str(),
                        "templateName": spec.template.name,
                        "templateVersion": spec.template.version,
                        "wave": 1,
                        "waves": planned.len(),
                        "planned": planned.first().copied().unwrap_or(0),
                    }),
                });
                (stored.spec.assign(cores.len()), Some(state))
            }
            None => (Vec::new(), None),
        };
        if self
            .store
            .expand_deployment_task(task_id, &cores, &waves, self.batch_size, &events, rollout.as_ref())
            .await?
        {
            let ready: Vec<ThingName> = match &rollout {
                Some(state) => cores
                    .iter()
                    .zip(&waves)
                    .filter(|(_, wave)| state.may_move(**wave))
                    .map(|(core, _)| core.clone())
                    .collect(),
                None => cores,
            };
            let jobs: Vec<_> = ready
                .chunks(self.batch_size as usize)
                .map(|chunk| TaskBatch { task_id: task_id.clone(), items: chunk.to_vec() }.job())
                .collect();
            self.queue.enqueue(&jobs).await?;
        } else if self.store.task_header(task_id).await?.is_some_and(|t| match t.kind {
            TaskKind::Deployment(spec) => !spec.expanded,
            _ => false,
        }) {
            // The rollout changed (an operator's action) while the targets were expanded.
            return Err(StepError::transient("the rollout changed during the expansion; expanding again"));
        }
        Ok(())
    }

    /// The cores the targets name; `Err` with the task's failure message when a group does not
    /// exist or the query is refused.
    async fn expand_targets(&self, spec: &DeploymentSpec) -> Result<Result<BTreeSet<ThingName>, String>, StepError> {
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
                Err(err) if err.is_not_found() => return Ok(Err(format!("thing group '{group}' does not exist"))),
                Err(err) => return Err(err.into()),
            }
        }
        if let Some(query) = spec.targets.get("thingIndexQuery").and_then(|q| q.as_str()) {
            match self.iot.search_things(query).await {
                Ok(things) => cores.extend(things),
                Err(err) if err.is_transient() => return Err(err.into()),
                Err(err) => return Ok(Err(format!("the thingIndexQuery was refused: {err}"))),
            }
        }
        Ok(Ok(cores))
    }

    /// Ends a deployment task whose expansion was dead-lettered.
    pub async fn give_up(&self, task_id: &TaskId, reason: &str) -> Result<(), StepError> {
        Ok(self.store.fail_deployment_task(task_id, &format!("gave up after repeated failures: {reason}")).await?)
    }

    /// The deployment a task moves its cores into: the template version's deployment, created
    /// once and found again after a crash; for a retry task, a new revision of it, created once
    /// per retry task.
    async fn ensure_deployment(&self, task: &Task, spec: &DeploymentSpec) -> Result<String, StepError> {
        if spec.retry_of().is_none() {
            return self.ensure_template_deployment(&spec.template, None).await;
        }
        if let Some(revision) = &spec.revision {
            return Ok(revision.clone());
        }
        let _guard = self.revising.lock().await;
        if let Some(TaskKind::Deployment(fresh)) = self.store.task_header(&task.id).await?.map(|t| t.kind)
            && let Some(revision) = fresh.revision
        {
            return Ok(revision);
        }
        self.ensure_template_deployment(&spec.template, None).await?;
        let revision = self.ensure_template_deployment(&spec.template, Some(&task.id)).await?;
        Ok(self.store.save_task_revision(&task.id, &spec.template, &revision).await?)
    }

    /// The deployment of a template version: created once, found again after a crash. With
    /// `revise_for`, a new revision named after that retry task (found again by its name).
    async fn ensure_template_deployment(
        &self,
        template: &TemplateRef,
        revise_for: Option<&TaskId>,
    ) -> Result<String, StepError> {
        let _guard = self.creating.lock().await;
        if revise_for.is_none()
            && let Some(id) = self.store.template_deployment(template).await?
        {
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
        let deployment_name = match revise_for {
            Some(task) => format!("{group} retry {task}"),
            None => group.clone(),
        };
        let id = match self.greengrass.find_deployment(&group, &deployment_name).await? {
            Some(id) => id,
            None => {
                let request = DeploymentRequest {
                    thing_group: group.clone(),
                    deployment_name,
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
        if revise_for.is_some() {
            return Ok(id);
        }
        Ok(self.store.save_template_deployment(template, &group, &id).await?)
    }

    /// A batch of a deployment task: set each core's desired template and move it into the
    /// template version's group (for a rollback to no template, out of ggprov's groups). A
    /// rollout that is not running moves nothing: its items stay `Waiting` until it resumes.
    pub async fn deploy_batch(
        &self,
        task: &Task,
        spec: &DeploymentSpec,
        items: &[ThingName],
        ctx: &crate::JobContext,
    ) -> Result<(), StepError> {
        if let Some(state) = &spec.rollout
            && (state.phase != rollout::RolloutPhase::Running || state.awaiting_approval)
        {
            return Ok(());
        }
        let unassign = spec.template.name == NO_TEMPLATE;
        let deployment = if unassign { Ok(String::new()) } else { self.ensure_deployment(task, spec).await };
        let target_group =
            (!unassign).then(|| format!("{DEPLOYMENT_GROUP_PREFIX}{}_{}", spec.template.name, spec.template.version));
        let nucleus = if unassign { None } else { self.nucleus_of(&spec.template).await? };
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
                Err(StepError::Waiting { message, after }) => {
                    return Err(StepError::Waiting { message: message.clone(), after: *after });
                }
            };
            // Taken before the move: a simulated core can finish the deployment (and report
            // it, timestamped) within the call that moves it.
            let moved_at = Timestamp::now();
            match self.move_core(name, target_group.as_deref()).await {
                Ok(()) => {
                    self.store
                        .complete_deployment_item(
                            &task.id,
                            name,
                            &spec.template,
                            deployment_id,
                            nucleus.as_ref(),
                            moved_at,
                        )
                        .await?
                }
                Err(StepError::Permanent { message, .. }) => {
                    self.store.fail_deployment_item(&task.id, name, &message).await?
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Moves a core into `target_group` and out of the group of the template version it
    /// desired until now (ggprov's record says which: no listing of its groups), in one
    /// `UpdateThingGroupsForThing`: 2 calls per core moved the first time (with
    /// `GetCoreDevice`), 1 after.
    async fn move_core(&self, name: &ThingName, target_group: Option<&str>) -> Result<(), StepError> {
        let Some(core) = self.store.core(name).await? else {
            return Err(permanent(format!("{name} is not a core provisioned by ggprov")));
        };
        // A core that has reported a deployment is a registered Greengrass core device already.
        // What Greengrass says of a core it describes the first time is its platform and
        // nucleus for the software inventory.
        if core.reported.name == NO_TEMPLATE || core.software.observed_at.is_none() {
            match self.greengrass.get_core_device(name).await? {
                Some(device) if core.software.observed_at.is_none() => {
                    self.store.observe_core(name, &device).await?;
                }
                Some(_) => {}
                None if core.reported.name == NO_TEMPLATE => {
                    return Err(permanent("Core device not registered with Greengrass V2"));
                }
                None => {}
            }
        }
        let current = (core.desired.name != NO_TEMPLATE)
            .then(|| format!("{DEPLOYMENT_GROUP_PREFIX}{}_{}", core.desired.name, core.desired.version))
            .filter(|g| Some(g.as_str()) != target_group);
        if target_group.is_none() && current.is_none() {
            return Ok(());
        }
        self.iot
            .update_thing_groups(name, target_group, current.as_slice())
            .await
            .map_err(|e| with_prefix("Failed to move core device to deployment thing group target", &e))
    }

    /// The tasks whose rollout is active.
    pub async fn active_rollouts(&self) -> Result<Vec<TaskId>, StepError> {
        Ok(self.rollouts.active().await?)
    }

    /// One controller step for each of `ids` (from [`Deployer::active_rollouts`]).
    pub async fn advance_rollouts_of(&self, ids: &[TaskId]) -> usize {
        self.rollouts.advance_each(ids).await
    }

    /// One controller step for every active rollout; returns how many changed state.
    pub async fn advance_rollouts(&self) -> Result<usize, StepError> {
        Ok(self.rollouts.advance_all().await?)
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
                        Some(core) => {
                            self.refresh_software(&core.name).await?;
                            self.reconcile_core(&core).await?
                        }
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

    /// Records what Greengrass says of a core now (platform, nucleus version).
    async fn refresh_software(&self, name: &ThingName) -> Result<(), StepError> {
        if let Some(device) = self.greengrass.get_core_device(name).await? {
            self.store.observe_core(name, &device).await?;
        }
        Ok(())
    }

    async fn apply(&self, outcome: &DeploymentOutcome) -> Result<bool, StepError> {
        let Some(template) = self.store.template_of_deployment(&outcome.deployment_id).await? else {
            return Ok(false); // not a ggprov deployment
        };
        let mut outcome = outcome.clone();
        outcome.nucleus = self.nucleus_of(&template).await?;
        let outcome = &outcome;
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
            if core.software.observed_at.is_none() {
                self.refresh_software(&core.name).await?;
            }
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
            detailed_status: match (succeeded, &execution.detailed_status) {
                (true, _) => "SUCCESSFUL".to_owned(),
                (false, Some(detailed)) => detailed.clone(),
                (false, None) => status.to_owned(),
            },
            reason: execution.reason.clone(),
            time: Timestamp::now(),
            nucleus: None,
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
