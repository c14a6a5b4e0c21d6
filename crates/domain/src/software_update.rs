//! Software update tasks (`POST /softwareUpdateTasks`): move targeted cores to a nucleus
//! version through their templates.
//!
//! A task checks every targeted core (a ggprov core with a template, a known platform the
//! version runs on, no downgrade unless allowed) and refuses the others one by one; then, for
//! each template version the accepted cores run, it makes one new template version with the
//! nucleus and the components that move with it bumped ([`crate::software::moves_with_nucleus`]),
//! and one deployment task of that version to those cores, with the rollout given.
//!
//! Crash safety: the task document is stored before the first template version is made and
//! records each step when it is done (conditionally, on its revision). Resuming (the same
//! request again with its `clientToken`, or `POST .../resume`) finds a template version made
//! before a crash by its content and a deployment task by its id, which is derived from the
//! task's, so nothing is made twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::cores::{Core, TemplateRef};
use crate::deployment_service::{DeploymentService, DeploymentTaskError, NewDeploymentTask};
use crate::pagination::{Page, PageRequest};
use crate::ports::{CloudError, CoreStore, Greengrass, IotRegistry, StoreError, TemplateStore};
use crate::rollout::RolloutSpec;
use crate::software::{NUCLEUS, Nucleus, PlatformSupport, compare_versions, is_nucleus, moves_with_nucleus};
use crate::task::{ItemCounts, MAX_TASK_ITEMS, TaskId, TaskStatus};
use crate::template::{Component, ComponentName, ComponentVersion, TemplateName, TemplateSpec};
use crate::template_service::{TemplateError, TemplateService};
use crate::thing::ThingName;
use crate::time::Timestamp;
use crate::validation::{FieldProblem, Problems};

/// How many cores are checked at once while planning.
const CHECK_CONCURRENCY: usize = 16;

/// A software update as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSoftwareUpdate {
    /// `thingNames`, `thingGroupNames` and/or `thingIndexQuery`, as for deployment tasks.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub targets: serde_json::Value,
    /// The nucleus version to run, e.g. `2.13.0`.
    pub nucleus_version: String,
    /// Allow moving a core to an older nucleus than it runs.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Waves for each deployment task the update starts (the last must be `{"percent": 100}`:
    /// each template's cores are one deployment task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub rollout: Option<RolloutSpec>,
    /// Makes the request idempotent: the same token answers the same task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, nullable = false))]
    pub client_token: Option<String>,
}

/// One component a template update changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ComponentChange {
    pub component: String,
    /// Absent when the template had no nucleus and the update adds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    pub to_version: String,
}

/// A template version the update replaces, and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TemplateUpdate {
    pub template_name: String,
    pub from_version: u32,
    /// The version made for the update (absent until it is made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u32>,
    pub changes: Vec<ComponentChange>,
    /// The deployment task moving the cores (started once `toVersion` exists).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub deployment_task_id: TaskId,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deployment_task_started: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub cores: Vec<ThingName>,
}

/// A targeted core the update leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreNote {
    pub name: ThingName,
    pub message: String,
}

/// A software update task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareUpdateTask {
    pub id: TaskId,
    pub request: NewSoftwareUpdate,
    pub templates: Vec<TemplateUpdate>,
    /// Cores refused (an item `Failure` each).
    pub refused: Vec<CoreNote>,
    /// Cores that already run the version (an item `Success` each).
    pub current: Vec<CoreNote>,
    /// Every step is done: template versions made, deployment tasks started.
    pub planned: bool,
    pub rev: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How one targeted core stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CoreOutcome {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: ThingName,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The nucleus version the core runs now, as far as ggprov knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nucleus_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_task_id: Option<String>,
}

/// A task with its cores' outcomes, as `GET /softwareUpdateTasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftwareUpdateView {
    pub task: SoftwareUpdateTask,
    pub status: TaskStatus,
    pub counts: ItemCounts,
    pub cores: Vec<CoreOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum SoftwareUpdateError {
    #[error("invalid software update task")]
    Invalid(Vec<FieldProblem>),
    #[error("clientToken '{0}' was used for a different software update request")]
    TokenReused(String),
    #[error("software update task {0} does not exist")]
    NotFound(TaskId),
    #[error("could not ask AWS: {0}")]
    Cloud(#[from] CloudError),
    #[error("could not make a template version: {0}")]
    Template(#[from] TemplateError),
    #[error("could not start a deployment task: {0}")]
    Deployment(#[from] DeploymentTaskError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Software update use cases.
#[derive(Clone)]
pub struct SoftwareUpdateService {
    store: Arc<dyn CoreStore>,
    template_store: Arc<dyn TemplateStore>,
    templates: TemplateService,
    greengrass: Arc<dyn Greengrass>,
    iot: Arc<dyn IotRegistry>,
    deployments: DeploymentService,
    /// One resume at a time in this process (two would both make the next template version).
    resuming: Arc<futures::lock::Mutex<()>>,
}

/// What planning decided for one core.
enum Plan {
    Refused(String),
    Current(String),
    Update { template: TemplateRef, nucleus: String },
}

impl SoftwareUpdateService {
    pub fn new(
        store: Arc<dyn CoreStore>,
        template_store: Arc<dyn TemplateStore>,
        greengrass: Arc<dyn Greengrass>,
        iot: Arc<dyn IotRegistry>,
        deployments: DeploymentService,
    ) -> Self {
        Self {
            store,
            templates: TemplateService::new(template_store.clone(), greengrass.clone()),
            template_store,
            greengrass,
            iot,
            deployments,
            resuming: Arc::default(),
        }
    }

    /// Checks and plans the update, stores it, and makes its template versions and deployment
    /// tasks. Returns the task and whether it is new (`false`: the client token named an
    /// existing task, which is resumed if a crash interrupted it).
    pub async fn submit(&self, request: NewSoftwareUpdate) -> Result<(SoftwareUpdateTask, bool), SoftwareUpdateError> {
        let version = self.check(&request).await?;
        if let Some(token) = &request.client_token
            && let Some(existing) = self.store.software_update_by_token(token).await?
        {
            return self.same_request(existing, &request).await.map(|t| (t, false));
        }
        let names = self.expand_targets(&request.targets).await?;
        let task = self.plan(&request, &version, &names).await?;
        match self.store.create_software_update(&task).await {
            Ok(()) => Ok((self.resume_task(task).await?, true)),
            // Another request with the same token won: answer its task.
            Err(StoreError::AlreadyExists) if request.client_token.is_some() => {
                let token = request.client_token.as_deref().unwrap_or_default();
                let existing = self.store.software_update_by_token(token).await?.ok_or(StoreError::Conflict)?;
                self.same_request(existing, &request).await.map(|t| (t, false))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn same_request(
        &self,
        existing: SoftwareUpdateTask,
        request: &NewSoftwareUpdate,
    ) -> Result<SoftwareUpdateTask, SoftwareUpdateError> {
        if existing.request != *request {
            return Err(SoftwareUpdateError::TokenReused(request.client_token.clone().unwrap_or_default()));
        }
        self.resume_task(existing).await
    }

    /// Finishes the steps of a task a crash interrupted (nothing to do for a planned one).
    pub async fn resume(&self, id: &TaskId) -> Result<SoftwareUpdateTask, SoftwareUpdateError> {
        let task = self.store.software_update(id).await?.ok_or_else(|| SoftwareUpdateError::NotFound(id.clone()))?;
        self.resume_task(task).await
    }

    /// The request's own checks, before anything is read: returns the version.
    async fn check(&self, request: &NewSoftwareUpdate) -> Result<ComponentVersion, SoftwareUpdateError> {
        let mut problems = Problems::new();
        if let Err((_, found)) = crate::deployment_service::check_targets(&request.targets) {
            for p in found {
                problems.add(p.field, p.problem);
            }
        }
        if let Some(rollout) = &request.rollout
            && let Err(found) = rollout.check(None)
        {
            for p in found.into_vec() {
                problems.add(p.field, p.problem);
            }
        }
        if let Some(token) = &request.client_token
            && (token.is_empty() || token.len() > 64 || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            problems.add("clientToken", "must be 1–64 printable ASCII characters without spaces");
        }
        if let Some(query) = request.targets.get("thingIndexQuery").and_then(|q| q.as_str())
            && let Err(why) = self.iot.check_thing_query(query).await
        {
            problems.add("targets.thingIndexQuery", why);
        }
        let version = match ComponentVersion::parse(&request.nucleus_version) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.add("nucleusVersion", format!("{e}, e.g. 2.13.0"));
                None
            }
        };
        if let Some(v) = &version {
            let nucleus = ComponentName::parse(NUCLEUS).expect("a valid component name");
            if !self.greengrass.component_version_exists(&nucleus, v).await? {
                problems.add(
                    "nucleusVersion",
                    format!("{NUCLEUS} {v} does not exist in the Greengrass component catalogue"),
                );
            }
        }
        match version {
            Some(v) if problems.is_empty() => Ok(v),
            _ => Err(SoftwareUpdateError::Invalid(problems.into_vec())),
        }
    }

    /// Every targeted thing name (groups and queries expanded), de-duplicated, in order.
    async fn expand_targets(&self, targets: &serde_json::Value) -> Result<Vec<ThingName>, SoftwareUpdateError> {
        let mut names = BTreeSet::new();
        let strings = |key: &str| -> Vec<String> {
            targets[key]
                .as_array()
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        for name in strings("thingNames") {
            names.insert(ThingName::parse(&name).map_err(|e| invalid("targets.thingNames", e.to_string()))?);
        }
        for group in strings("thingGroupNames") {
            match self.iot.list_things_in_thing_group(&group).await {
                Ok(members) => names.extend(members),
                Err(err) if err.is_not_found() => {
                    return Err(invalid("targets.thingGroupNames", format!("thing group '{group}' does not exist")));
                }
                Err(err) => return Err(err.into()),
            }
        }
        if let Some(query) = targets["thingIndexQuery"].as_str() {
            names.extend(self.iot.search_things(query).await?);
        }
        if names.len() > MAX_TASK_ITEMS {
            return Err(invalid(
                "targets",
                format!(
                    "match {} things; at most {MAX_TASK_ITEMS} per software update task: split the task",
                    names.len()
                ),
            ));
        }
        Ok(names.into_iter().collect())
    }

    /// Checks every core and groups the accepted ones by the template version they run.
    async fn plan(
        &self,
        request: &NewSoftwareUpdate,
        version: &ComponentVersion,
        names: &[ThingName],
    ) -> Result<SoftwareUpdateTask, SoftwareUpdateError> {
        let platforms = self.platforms(version).await?;
        let plans: Vec<(ThingName, Result<Plan, SoftwareUpdateError>)> = futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let platforms = &platforms;
                async move {
                    let plan = self.plan_core(&name, request, version, platforms).await;
                    (name, plan)
                }
            })
            .buffered(CHECK_CONCURRENCY)
            .collect()
            .await;
        let id = TaskId::generate();
        let mut groups: BTreeMap<(String, u32, String), Vec<ThingName>> = BTreeMap::new();
        let (mut refused, mut current) = (Vec::new(), Vec::new());
        for (name, plan) in plans {
            match plan? {
                Plan::Refused(message) => refused.push(CoreNote { name, message }),
                Plan::Current(message) => current.push(CoreNote { name, message }),
                Plan::Update { template, nucleus } => {
                    groups.entry((template.name, template.version, nucleus)).or_default().push(name)
                }
            }
        }
        let mut templates = Vec::new();
        for ((name, from_version, nucleus), cores) in groups {
            let source = TemplateRef { name: name.clone(), version: from_version };
            let Some((_, changes)) = self.updated_spec(&source, &nucleus, version).await? else {
                refused.extend(cores.into_iter().map(|name| CoreNote {
                    name,
                    message: format!("its template {}:{} no longer exists", source.name, source.version),
                }));
                continue;
            };
            if let Some(missing) = self.missing_companion(&changes).await? {
                refused.extend(cores.into_iter().map(|name| CoreNote { name, message: missing.clone() }));
                continue;
            }
            let listed: usize = cores.iter().map(|c| c.as_str().len() + 3).sum();
            if listed > crate::task::MAX_TARGETS_BYTES {
                return Err(invalid(
                    "targets",
                    format!(
                        "{} cores run template {name} version {from_version}: their names take {listed} bytes, and a deployment task lists at most {} bytes of names; split the update",
                        cores.len(),
                        crate::task::MAX_TARGETS_BYTES
                    ),
                ));
            }
            let deployment_task_id = TaskId::from_text(&format!("{id}-{}", templates.len() + 1));
            templates.push(TemplateUpdate {
                template_name: name,
                from_version,
                to_version: None,
                changes,
                deployment_task_id,
                deployment_task_started: false,
                cores,
            });
        }
        let now = Timestamp::now();
        Ok(SoftwareUpdateTask {
            id,
            request: request.clone(),
            templates,
            refused,
            current,
            planned: false,
            rev: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// The platforms of each nucleus flavour at the version (`None`: the flavour has no such
    /// version).
    async fn platforms(
        &self,
        version: &ComponentVersion,
    ) -> Result<BTreeMap<&'static str, Option<PlatformSupport>>, SoftwareUpdateError> {
        let mut out = BTreeMap::new();
        for flavour in [NUCLEUS, crate::software::NUCLEUS_LITE] {
            let name = ComponentName::parse(flavour).expect("a valid component name");
            out.insert(flavour, self.greengrass.component_platforms(&name, version).await?);
        }
        Ok(out)
    }

    async fn plan_core(
        &self,
        name: &ThingName,
        request: &NewSoftwareUpdate,
        version: &ComponentVersion,
        platforms: &BTreeMap<&'static str, Option<PlatformSupport>>,
    ) -> Result<Plan, SoftwareUpdateError> {
        let Some(mut core) = self.store.core(name).await? else {
            return Ok(Plan::Refused("is not a core provisioned by ggprov".into()));
        };
        if core.desired.name == crate::cores::NO_TEMPLATE {
            return Ok(Plan::Refused(
                "runs no ggprov template: deploy a template to it first (a software update changes the template a core runs)"
                    .into(),
            ));
        }
        if core.software.platform().is_none() {
            match self.greengrass.get_core_device(name).await? {
                Some(device) => {
                    self.store.observe_core(name, &device).await?;
                    core.observe(&device, Timestamp::now());
                }
                None => {
                    return Ok(Plan::Refused("has not connected to Greengrass yet, so its platform is unknown".into()));
                }
            }
        }
        let Some(platform) = core.software.platform() else {
            return Ok(Plan::Refused("Greengrass does not report its platform and architecture".into()));
        };
        let flavour = core.software.nucleus.clone().unwrap_or_else(|| NUCLEUS.to_owned());
        let target = version.as_str();
        match platforms.get(flavour.as_str()).cloned().flatten() {
            None => return Ok(Plan::Refused(format!("runs {flavour}, which has no version {target}"))),
            Some(support) if !support.0.is_empty() && !support.supports(&platform) => {
                return Ok(Plan::Refused(format!(
                    "runs on {platform}; {flavour} {target} runs on {} only",
                    support.describe()
                )));
            }
            Some(_) => {}
        }
        if let Some(running) = &core.software.nucleus_version {
            match compare_versions(target, running) {
                std::cmp::Ordering::Equal => {
                    return Ok(Plan::Current(format!("already runs {flavour} {running}")));
                }
                std::cmp::Ordering::Less if !request.allow_downgrade => {
                    return Ok(Plan::Refused(format!(
                        "runs {flavour} {running}; {target} would be a downgrade (set allowDowngrade to true to downgrade)"
                    )));
                }
                _ => {}
            }
        }
        Ok(Plan::Update { template: core.desired.clone(), nucleus: flavour })
    }

    /// The content of `source` with its nucleus at `version` and the components that move
    /// with it bumped too; `None` when the template version no longer exists.
    async fn updated_spec(
        &self,
        source: &TemplateRef,
        flavour: &str,
        version: &ComponentVersion,
    ) -> Result<Option<(TemplateSpec, Vec<ComponentChange>)>, SoftwareUpdateError> {
        let Ok(name) = TemplateName::parse(&source.name) else { return Ok(None) };
        let Some(template) = self.template_store.template_version(&name, source.version).await? else {
            return Ok(None);
        };
        let spec = &template.spec;
        let old = Nucleus::of_components(spec.components());
        let mut changes = Vec::new();
        let mut components: Vec<Component> = Vec::new();
        for c in spec.components() {
            let mut c = c.clone();
            let bump = is_nucleus(c.key.as_str()) || old.as_ref().is_some_and(|n| moves_with_nucleus(&c, n));
            if bump && c.version != *version {
                changes.push(ComponentChange {
                    component: c.key.as_str().to_owned(),
                    from_version: Some(c.version.as_str().to_owned()),
                    to_version: version.as_str().to_owned(),
                });
                c.version = version.clone();
            }
            components.push(c);
        }
        if old.is_none() {
            changes.push(ComponentChange {
                component: flavour.to_owned(),
                from_version: None,
                to_version: version.as_str().to_owned(),
            });
            components.push(Component {
                key: ComponentName::parse(flavour).expect("a valid component name"),
                version: version.clone(),
                configuration_update: None,
                run_with: None,
            });
        }
        let spec = TemplateSpec::new(components, spec.job_config().cloned(), spec.deployment_policies().cloned())
            .map_err(|p| SoftwareUpdateError::Invalid(p.into_vec()))?;
        Ok(Some((spec, changes)))
    }

    /// A component that must move with the nucleus but has no such version.
    async fn missing_companion(&self, changes: &[ComponentChange]) -> Result<Option<String>, SoftwareUpdateError> {
        for change in changes.iter().filter(|c| !is_nucleus(&c.component)) {
            let (Ok(name), Ok(version)) =
                (ComponentName::parse(&change.component), ComponentVersion::parse(&change.to_version))
            else {
                continue;
            };
            if !self.greengrass.component_version_exists(&name, &version).await? {
                return Ok(Some(format!(
                    "its template has {} {}, which moves with the nucleus, and {} has no version {}",
                    change.component,
                    change.from_version.as_deref().unwrap_or("?"),
                    change.component,
                    change.to_version
                )));
            }
        }
        Ok(None)
    }

    /// Makes what is missing: each template version (found again by its content after a
    /// crash), then each deployment task (found again by its id), recording each step.
    async fn resume_task(&self, mut task: SoftwareUpdateTask) -> Result<SoftwareUpdateTask, SoftwareUpdateError> {
        if task.planned {
            return Ok(task);
        }
        let _guard = self.resuming.lock().await;
        // Another resume may have moved it on while this one waited.
        task = self.store.software_update(&task.id).await?.unwrap_or(task);
        let version = ComponentVersion::parse(&task.request.nucleus_version)
            .map_err(|e| invalid("nucleusVersion", e.to_string()))?;
        for i in 0..task.templates.len() {
            let update = task.templates[i].clone();
            let name = TemplateName::parse(&update.template_name)
                .map_err(|e| invalid("templates", format!("{}: {e}", update.template_name)))?;
            let to_version = match update.to_version {
                Some(v) => v,
                None => {
                    let source = TemplateRef { name: update.template_name.clone(), version: update.from_version };
                    let flavour = update
                        .changes
                        .iter()
                        .find(|c| is_nucleus(&c.component))
                        .map_or(NUCLEUS, |c| c.component.as_str())
                        .to_owned();
                    let Some((spec, _)) = self.updated_spec(&source, &flavour, &version).await? else {
                        return Err(invalid(
                            "targets",
                            format!("template {}:{} was deleted during the update", source.name, source.version),
                        ));
                    };
                    let latest = self.template_store.latest_template(&name).await?;
                    let made = match latest {
                        Some(latest) if latest.spec == spec => latest.version,
                        _ => self.templates.update(name.clone(), spec).await?.version,
                    };
                    task.templates[i].to_version = Some(made);
                    self.store.save_software_update(&mut task).await?;
                    made
                }
            };
            if !update.deployment_task_started {
                if self.store.task_header(&update.deployment_task_id).await?.is_none() {
                    let targets = serde_json::json!({
                        "thingNames": update.cores.iter().map(ThingName::as_str).collect::<Vec<_>>()
                    });
                    self.deployments
                        .submit_as(
                            update.deployment_task_id.clone(),
                            NewDeploymentTask {
                                template_name: update.template_name.clone(),
                                template_version: Some(to_version),
                                targets,
                                iot_job_config: None,
                                rollout: task.request.rollout.clone(),
                            },
                        )
                        .await?;
                }
                task.templates[i].deployment_task_started = true;
                self.store.save_software_update(&mut task).await?;
            }
        }
        task.planned = true;
        self.store.save_software_update(&mut task).await?;
        Ok(task)
    }

    /// A task with each targeted core's outcome: refused and current cores as planned; the
    /// others as their deployment task's item stands, and once moved, as the core reports
    /// (`Success` when it runs the version, `Failure` when its deployment failed).
    pub async fn get(&self, id: &TaskId) -> Result<Option<SoftwareUpdateView>, SoftwareUpdateError> {
        let Some(task) = self.store.software_update(id).await? else { return Ok(None) };
        let mut cores = Vec::new();
        for note in &task.refused {
            cores.push(outcome(&note.name, TaskStatus::Failure, Some(note.message.clone()), None, None, None));
        }
        for note in &task.current {
            cores.push(outcome(&note.name, TaskStatus::Success, Some(note.message.clone()), None, None, None));
        }
        let target = &task.request.nucleus_version;
        for update in &task.templates {
            let items = self.all_items(&update.deployment_task_id).await?;
            // The cores' records, read CHECK_CONCURRENCY at a time.
            let records: Vec<Result<Option<Core>, StoreError>> = futures::stream::iter(update.cores.clone())
                .map(|name| {
                    let store = self.store.clone();
                    async move { store.core(&name).await }
                })
                .buffered(CHECK_CONCURRENCY)
                .collect()
                .await;
            for (name, core) in update.cores.iter().zip(records) {
                let core = core?;
                let running = core.as_ref().and_then(|c| c.software.nucleus_version.clone());
                let item = items.get(name);
                let desired = update.to_version.map(|v| TemplateRef { name: update.template_name.clone(), version: v });
                let (status, message) = match (item, &core) {
                    (_, None) => (TaskStatus::Failure, Some("the core was deleted".to_owned())),
                    _ if running.as_deref() == Some(target.as_str()) => (TaskStatus::Success, None),
                    (Some((TaskStatus::Failure, message)), _) => (TaskStatus::Failure, message.clone()),
                    (Some((TaskStatus::Success, _)), Some(c))
                        if Some(&c.desired) == desired.as_ref()
                            && c.deployment_status.state() == crate::deployment_state::DeploymentState::Failed =>
                    {
                        let why =
                            c.deployment_status_message.clone().unwrap_or_else(|| c.deployment_status.to_string());
                        (TaskStatus::Failure, Some(format!("the core rolled back: {why}")))
                    }
                    (Some((TaskStatus::Success, _)), _) => {
                        (TaskStatus::InProgress, Some("waiting for the core to report".to_owned()))
                    }
                    (Some((status, _)), _) => (*status, None),
                    (None, _) if update.deployment_task_started => (TaskStatus::Waiting, None),
                    (None, _) => (TaskStatus::Waiting, Some("the deployment task has not started".to_owned())),
                };
                cores.push(outcome(
                    name,
                    status,
                    message,
                    running,
                    Some(update.template_name.clone()),
                    Some(update.deployment_task_id.as_str().to_owned()),
                ));
            }
        }
        cores.sort_by(|a, b| a.name.cmp(&b.name));
        let mut counts = ItemCounts::default();
        for c in &cores {
            counts.add(c.status, 1);
        }
        let status = if !task.planned {
            TaskStatus::InProgress
        } else if counts.total == 0 {
            TaskStatus::Failure
        } else {
            counts.task_status()
        };
        Ok(Some(SoftwareUpdateView { task, status, counts, cores }))
    }

    async fn all_items(&self, task: &TaskId) -> Result<BTreeMap<ThingName, (TaskStatus, Option<String>)>, StoreError> {
        let mut out = BTreeMap::new();
        let mut page = PageRequest { limit: 1000, exclusive_start: None };
        loop {
            let found = self.store.task_items(task, page.clone()).await?;
            for item in found.items {
                out.insert(item.name, (item.status, item.status_message));
            }
            match found.last_evaluated {
                Some(last) => page.exclusive_start = Some(last),
                None => return Ok(out),
            }
        }
    }

    pub async fn list(
        &self,
        page: PageRequest<TaskId>,
    ) -> Result<Page<SoftwareUpdateTask, TaskId>, SoftwareUpdateError> {
        Ok(self.store.list_software_updates(page).await?)
    }
}

fn outcome(
    name: &ThingName,
    status: TaskStatus,
    message: Option<String>,
    nucleus_version: Option<String>,
    template_name: Option<String>,
    deployment_task_id: Option<String>,
) -> CoreOutcome {
    CoreOutcome { name: name.clone(), status, message, nucleus_version, template_name, deployment_task_id }
}

fn invalid(field: &str, problem: impl Into<String>) -> SoftwareUpdateError {
    SoftwareUpdateError::Invalid(vec![FieldProblem { field: field.to_owned(), problem: problem.into() }])
}
