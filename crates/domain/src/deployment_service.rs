//! Deployment tasks and the fleet summary.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::core_task_service::CoreTaskError;
use crate::cores::{NO_TEMPLATE, NewCore, Task, TaskItem, TemplateRef, VersionCounts};
use crate::jobs::{DeploymentExpand, JobPayload as _};
use crate::pagination::{Page, PageRequest};
use crate::ports::{CoreStore, IotRegistry, StoreError, TemplateStore, WorkQueue};
use crate::rollout::{RolloutSpec, RolloutState};
use crate::task::TaskId;
use crate::template::TemplateName;
use crate::thing::ThingName;
use crate::time::Timestamp;
use crate::validation::{FieldProblem, Problems};

/// Why a deployment task cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentTaskError {
    #[error("template '{0}' does not exist")]
    TemplateNotFound(String),
    #[error("template '{name}' has no version {version}")]
    VersionNotFound { name: String, version: u32 },
    #[error("invalid deployment task")]
    Invalid(Vec<FieldProblem>),
    #[error(transparent)]
    Task(#[from] CoreTaskError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A validated deployment task request.
#[derive(Debug, Clone)]
pub struct NewDeploymentTask {
    pub template_name: String,
    pub template_version: Option<u32>,
    /// `thingNames` and `thingGroupNames`, checked.
    pub targets: serde_json::Value,
    pub iot_job_config: Option<serde_json::Value>,
    /// A staged rollout (absent: every core moves at once).
    pub rollout: Option<RolloutSpec>,
}

/// Deployment-task use cases.
#[derive(Clone)]
pub struct DeploymentService {
    store: Arc<dyn CoreStore>,
    templates: Arc<dyn TemplateStore>,
    queue: Arc<dyn WorkQueue>,
    iot: Arc<dyn IotRegistry>,
}

/// One template of the fleet summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TemplateSummary {
    /// The template's current version; 0 when it no longer exists (and for `None`).
    pub latest_version: u32,
    pub versions: BTreeMap<String, VersionCounts>,
}

impl DeploymentService {
    pub fn new(
        store: Arc<dyn CoreStore>,
        templates: Arc<dyn TemplateStore>,
        queue: Arc<dyn WorkQueue>,
        iot: Arc<dyn IotRegistry>,
    ) -> Self {
        Self { store, templates, queue, iot }
    }

    /// Resolves the template version (404 if absent), stores the task and queues the
    /// expansion of its targets.
    pub async fn submit(&self, request: NewDeploymentTask) -> Result<Task, DeploymentTaskError> {
        self.submit_as(TaskId::generate(), request).await
    }

    /// [`Self::submit`] with the task id chosen by the caller (a software update derives its
    /// deployment tasks' ids from its own, so a resumed update finds them).
    pub async fn submit_as(&self, id: TaskId, request: NewDeploymentTask) -> Result<Task, DeploymentTaskError> {
        let mut problems = Problems::new();
        if let Some(rollout) = &request.rollout {
            let only_names = request.targets.as_object().is_some_and(|m| m.len() == 1 && m.contains_key("thingNames"));
            let known = only_names
                .then(|| {
                    request.targets["thingNames"]
                        .as_array()
                        .map(|l| l.iter().filter_map(|v| v.as_str()).collect::<std::collections::BTreeSet<_>>().len())
                })
                .flatten();
            if let Err(found) = rollout.check(known) {
                for p in found.into_vec() {
                    problems.add(p.field, p.problem);
                }
            }
        }
        if let Some(query) = request.targets.get("thingIndexQuery").and_then(|q| q.as_str())
            && let Err(why) = self.iot.check_thing_query(query).await
        {
            problems.add("targets.thingIndexQuery", why);
        }
        if !problems.is_empty() {
            return Err(DeploymentTaskError::Invalid(problems.into_vec()));
        }
        let not_found = || DeploymentTaskError::TemplateNotFound(request.template_name.clone());
        let name = TemplateName::parse(&request.template_name).map_err(|_| not_found())?;
        let template =
            match request.template_version {
                Some(version) => self.templates.template_version(&name, version).await?.ok_or_else(|| {
                    DeploymentTaskError::VersionNotFound { name: request.template_name.clone(), version }
                })?,
                None => self.templates.latest_template(&name).await?.ok_or_else(not_found)?,
            };
        let now = Timestamp::now();
        let task = Task::new_deployment(
            id,
            TemplateRef { name: template.name.as_str().to_owned(), version: template.version },
            request.targets,
            request.iot_job_config,
            request.rollout.map(|spec| Box::new(RolloutState::start(spec, &[], now))),
            now,
        );
        self.store.create_task(&task).await?;
        if let Err(err) = self.queue.enqueue(&[DeploymentExpand { task_id: task.id.clone() }.job()]).await {
            tracing::warn!(task.id = %task.id, error = %err, "deployment task stored but not queued");
        }
        Ok(task)
    }

    /// The deployment records of a task, by core name.
    pub async fn task_cores(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError> {
        self.store.task_items(task, page).await
    }

    /// The deployment records of a core, by task id.
    pub async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError> {
        self.store.core_deployments(core, page).await
    }

    /// The fleet summary: counters by template and version, with each template's latest version.
    pub async fn fleet_summary(&self) -> Result<BTreeMap<String, TemplateSummary>, StoreError> {
        self.summary_of(self.store.fleet_counters().await?).await
    }

    /// The same summary counted from the core records (to check the counters).
    pub async fn recounted_fleet_summary(&self) -> Result<BTreeMap<String, TemplateSummary>, StoreError> {
        self.summary_of(self.store.recount_fleet().await?).await
    }

    /// Cores by nucleus version and platform (the software counters).
    pub async fn software_summary(
        &self,
    ) -> Result<BTreeMap<crate::software::SoftwareKey, crate::software::SoftwareCounts>, StoreError> {
        self.store.software_counters().await
    }

    /// The same, counted from the core records.
    pub async fn recounted_software_summary(
        &self,
    ) -> Result<BTreeMap<crate::software::SoftwareKey, crate::software::SoftwareCounts>, StoreError> {
        self.store.recount_software().await
    }

    async fn summary_of(
        &self,
        counters: BTreeMap<(String, u32), VersionCounts>,
    ) -> Result<BTreeMap<String, TemplateSummary>, StoreError> {
        let names: Vec<TemplateName> = counters
            .keys()
            .map(|(name, _)| name)
            .filter(|name| name.as_str() != NO_TEMPLATE)
            .filter_map(|name| TemplateName::parse(name).ok())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let latest = if names.is_empty() { BTreeMap::new() } else { self.templates.latest_versions(&names).await? };
        let mut summary: BTreeMap<String, TemplateSummary> = BTreeMap::new();
        for ((name, version), counts) in counters {
            summary
                .entry(name.clone())
                .or_insert_with(|| TemplateSummary {
                    // 0 when the template no longer exists (and for `None`).
                    latest_version: latest.get(&name).copied().unwrap_or(0),
                    versions: BTreeMap::new(),
                })
                .versions
                .insert(version.to_string(), counts);
        }
        Ok(summary)
    }
}

/// Checks the `targets` of a deployment task: `thingNames` and `thingGroupNames` lists of
/// valid names and a `thingIndexQuery` text (its syntax is checked by the IoT registry);
/// Asset Library targets are not supported; other keys are refused.
pub fn check_targets(targets: &serde_json::Value) -> Result<(), (bool, Vec<FieldProblem>)> {
    let mut problems = Vec::new();
    let Some(map) = targets.as_object().filter(|m| !m.is_empty()) else {
        return Err((
            false,
            vec![FieldProblem {
                field: "targets".into(),
                problem: "is required: an object with thingNames, thingGroupNames and/or thingIndexQuery".into(),
            }],
        ));
    };
    let size = targets.to_string().len();
    if size > crate::task::MAX_TARGETS_BYTES {
        return Err((
            false,
            vec![FieldProblem {
                field: "targets".into(),
                problem: format!(
                    "takes {size} bytes; at most {} per deployment task: target thing groups instead of long name lists, or split the task",
                    crate::task::MAX_TARGETS_BYTES
                ),
            }],
        ));
    }
    for (key, value) in map {
        match key.as_str() {
            "thingNames" | "thingGroupNames" => match value.as_array() {
                Some(list) if list.len() > crate::task::MAX_TASK_ITEMS => problems.push(FieldProblem {
                    field: format!("targets.{key}"),
                    problem: format!(
                        "lists {} names; at most {} per deployment task: split the task or use thing groups",
                        list.len(),
                        crate::task::MAX_TASK_ITEMS
                    ),
                }),
                Some(list) if !list.is_empty() => {
                    for (i, item) in list.iter().enumerate() {
                        if let Err(err) = item
                            .as_str()
                            .ok_or_else(|| "must be a string".to_owned())
                            .and_then(|s| ThingName::parse(s).map_err(|e| e.to_string()))
                        {
                            problems.push(FieldProblem { field: format!("targets.{key}[{i}]"), problem: err });
                        }
                    }
                }
                _ => problems.push(FieldProblem {
                    field: format!("targets.{key}"),
                    problem: "must be a non-empty list of names".into(),
                }),
            },
            "thingIndexQuery" => match value.as_str() {
                Some(q) if !q.trim().is_empty() => {}
                _ => problems.push(FieldProblem {
                    field: "targets.thingIndexQuery".into(),
                    problem: "must be a fleet-indexing query, e.g. \"thingName:core-* AND attributes.site:berlin\""
                        .into(),
                }),
            },
            "assetLibraryDeviceIds" | "assetLibraryGroupPaths" | "assetLibraryQuery" => {
                return Err((true, vec![FieldProblem {
                    field: format!("targets.{key}"),
                    problem: "CDF Asset Library targets are not supported: ggprov has no Asset Library; use thingNames or thingGroupNames".into(),
                }]));
            }
            other => problems.push(FieldProblem {
                field: format!("targets.{other}"),
                problem: "is not a target type; use thingNames, thingGroupNames or thingIndexQuery".into(),
            }),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err((false, problems)) }
}
