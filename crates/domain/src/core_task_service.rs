//! Submitting core tasks: validate everything up front, persist, then enqueue the batches.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cores::{CoreTaskOptions, NewCore, Task, TaskFamily, TaskItem, TaskKind};
use crate::jobs::{JobPayload as _, TaskBatch};
use crate::pagination::{Page, PageRequest};
use crate::ports::{CertificateAuthorities, CloudError, CoreStore, Greengrass, StoreError, WorkQueue};
use crate::provisioning_templates::ProvisioningTemplates;
use crate::task::{TaskId, TaskStatus, TaskType};
use crate::thing::ThingName;
use crate::time::Timestamp;
use crate::validation::{FieldProblem, Problems};

/// Errors of core-task operations.
#[derive(Debug, thiserror::Error)]
pub enum CoreTaskError {
    #[error("invalid core task")]
    Invalid(Vec<FieldProblem>),
    #[error("task '{0}' does not exist")]
    NotFound(TaskId),
    #[error("could not check the certificate authority: {0}")]
    Cloud(#[source] CloudError),
    /// A named thing has an open item in another task (one owner per thing).
    #[error("'{name}' is being worked on by task {task}; wait until that task ends (GET its task), then submit again")]
    Busy { name: ThingName, task: TaskId, field: String },

    /// The task's state does not allow what was asked (e.g. retrying a task still running).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },

    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A validated request for a core task.
#[derive(Debug, Clone)]
pub struct NewCoreTask {
    pub task_type: TaskType,
    pub core_version: String,
    pub cores: Vec<NewCore>,
    pub options: Option<CoreTaskOptions>,
}

/// A validated request for a client-device task of a core.
#[derive(Debug, Clone)]
pub struct NewDeviceTask {
    pub core_name: ThingName,
    pub task_type: TaskType,
    pub devices: Vec<NewCore>,
    pub options: Option<CoreTaskOptions>,
}

/// What validating one request has read already.
#[derive(Default)]
struct Lookups {
    templates: std::collections::BTreeMap<String, Result<crate::provisioning_template::ProvisioningTemplate, String>>,
    cas: std::collections::BTreeMap<String, bool>,
}

/// Where a thing is named in a task body: `cores[3].name` or `devices[0].name`.
fn item_field(task: &Task, name: &ThingName) -> String {
    let list = if matches!(task.kind, TaskKind::Device { .. }) { "devices" } else { "cores" };
    let index = task.items.iter().position(|i| &i.name == name).unwrap_or_default();
    format!("{list}[{index}].name")
}

/// Core- and device-task use cases for the API.
#[derive(Clone)]
pub struct CoreTaskService {
    store: Arc<dyn CoreStore>,
    queue: Arc<dyn WorkQueue>,
    templates: ProvisioningTemplates,
    cas: Arc<dyn CertificateAuthorities>,
    greengrass: Arc<dyn Greengrass>,
    batch_size: usize,
}

impl CoreTaskService {
    pub fn new(
        store: Arc<dyn CoreStore>,
        queue: Arc<dyn WorkQueue>,
        templates: ProvisioningTemplates,
        cas: Arc<dyn CertificateAuthorities>,
        greengrass: Arc<dyn Greengrass>,
        batch_size: usize,
    ) -> Self {
        Self { store, queue, templates, cas, greengrass, batch_size: batch_size.max(1) }
    }

    /// Checks what can be checked before anything is stored, stores the task (`Waiting`) and
    /// enqueues one job per batch.
    pub async fn submit(&self, request: NewCoreTask) -> Result<Task, CoreTaskError> {
        let mut problems = Problems::new();
        if request.task_type == TaskType::Create {
            let names: Vec<ThingName> = request.cores.iter().map(|c| c.name.clone()).collect();
            let devices = self.store.existing_devices(&names).await?;
            for (i, core) in request.cores.iter().enumerate() {
                if devices.contains(&core.name) {
                    problems.add(
                        format!("cores[{i}].name"),
                        format!("'{}' is a client device; a thing is either a core or a client device", core.name),
                    );
                }
            }
        }
        self.check_items("cores", request.task_type, &request.cores, &mut problems).await?;
        self.store_and_queue(
            TaskKind::Core,
            request.task_type,
            request.core_version,
            request.cores,
            request.options,
            problems,
        )
        .await
    }

    /// The same for a client-device task: the core must be a ggprov core, and registered with
    /// Greengrass for `Create`.
    pub async fn submit_device_task(&self, request: NewDeviceTask) -> Result<Task, CoreTaskError> {
        let mut problems = Problems::new();
        let core = &request.core_name;
        if self.store.core(core).await?.is_none() {
            problems
                .add("coreName", format!("ggprov has no core named '{core}'; provision it with POST /coreTasks first"));
        } else if request.task_type == TaskType::Create
            && self.greengrass.get_core_device(core).await.map_err(CoreTaskError::Cloud)?.is_none()
        {
            problems.add("coreName", format!("core '{core}' is not registered with Greengrass V2 yet: install and start the Greengrass software on it first"));
        }
        let names: Vec<ThingName> = request.devices.iter().map(|d| d.name.clone()).collect();
        let cores = self.store.existing_cores(&names).await?;
        for (i, device) in request.devices.iter().enumerate() {
            if cores.contains(&device.name) {
                problems.add(
                    format!("devices[{i}].name"),
                    format!("'{}' is a core; a thing is either a core or a client device", device.name),
                );
            }
        }
        self.check_items("devices", request.task_type, &request.devices, &mut problems).await?;
        let kind = TaskKind::Device { core_name: request.core_name };
        self.store_and_queue(kind, request.task_type, String::new(), request.devices, request.options, problems).await
    }

    async fn check_items(
        &self,
        field: &str,
        task_type: TaskType,
        items: &[NewCore],
        problems: &mut Problems,
    ) -> Result<(), CoreTaskError> {
        let mut seen = BTreeSet::new();
        // Each provisioning template and CA is read once per request, however many items name it.
        let mut lookups = Lookups::default();
        for (i, item) in items.iter().enumerate() {
            if !seen.insert(item.name.as_str()) {
                problems.add(format!("{field}[{i}].name"), format!("'{}' is listed more than once", item.name));
            }
            if task_type == TaskType::Create {
                self.check_create(&format!("{field}[{i}]"), item, problems, &mut lookups).await?;
            }
        }
        Ok(())
    }

    async fn store_and_queue(
        &self,
        kind: TaskKind,
        task_type: TaskType,
        core_version: String,
        items: Vec<NewCore>,
        options: Option<CoreTaskOptions>,
        problems: Problems,
    ) -> Result<Task, CoreTaskError> {
        if !problems.is_empty() {
            return Err(CoreTaskError::Invalid(problems.into_vec()));
        }
        let now = Timestamp::now();
        let task = Task {
            id: TaskId::generate(),
            kind,
            task_type,
            core_version,
            options,
            items: items
                .into_iter()
                .map(|item| TaskItem {
                    name: item.name.clone(),
                    request: item,
                    status: TaskStatus::Waiting,
                    status_message: None,
                    created_at: now,
                    updated_at: None,
                })
                .collect(),
            status: TaskStatus::Waiting,
            status_message: None,
            created_at: now,
            updated_at: None,
        };
        match self.store.create_task(&task).await {
            Ok(()) => {}
            Err(StoreError::Claimed { name, task: open }) => {
                let field = item_field(&task, &name);
                return Err(CoreTaskError::Busy { name, task: open, field });
            }
            // The same answer as the check above, for a thing that became the other kind
            // between that check and this write.
            Err(StoreError::OtherKind { name, is }) => {
                let problem = format!("'{name}' is a {is}; a thing is either a core or a client device");
                return Err(CoreTaskError::Invalid(vec![FieldProblem { field: item_field(&task, &name), problem }]));
            }
            Err(other) => return Err(other.into()),
        }
        // A rollout's later waves wait: the rollout controller queues each when it starts.
        let waves = task.item_waves();
        let ready: Vec<ThingName> = task
            .items
            .iter()
            .filter(|i| match (&waves, task.rollout()) {
                (Some(waves), Some(state)) => state.may_move(waves.get(&i.name).copied().unwrap_or(0)),
                _ => true,
            })
            .map(|i| i.name.clone())
            .collect();
        let jobs: Vec<_> = ready
            .chunks(self.batch_size)
            .map(|chunk| TaskBatch { task_id: task.id.clone(), items: chunk.to_vec() }.job())
            .collect();
        // If this fails the task is stored but not queued: the sweeper enqueues it later.
        if let Err(err) = self.queue.enqueue(&jobs).await {
            tracing::warn!(task.id = %task.id, error = %err, "task stored but not queued; the sweeper will queue it");
        }
        Ok(task)
    }

    async fn check_create(
        &self,
        at: &str,
        core: &NewCore,
        problems: &mut Problems,
        lookups: &mut Lookups,
    ) -> Result<(), CoreTaskError> {
        if !lookups.templates.contains_key(&core.provisioning_template) {
            let loaded = self.templates.load(&core.provisioning_template).await;
            lookups.templates.insert(core.provisioning_template.clone(), loaded);
        }
        match &lookups.templates[&core.provisioning_template] {
            Ok(template) => {
                let mut given = core.provisioning_parameters.clone();
                given.entry("ThingName".to_owned()).or_insert_with(|| core.name.as_str().to_owned());
                match template.render(&given) {
                    Ok(rendered) => {
                        if let Some(thing) = rendered.thing_name.filter(|t| t != core.name.as_str()) {
                            problems.add(
                                format!("{at}.provisioningParameters"),
                                format!("the provisioning template names the thing '{thing}', but the item is '{}'; they must match", core.name),
                            );
                        }
                    }
                    Err(why) => problems.add(format!("{at}.provisioningParameters"), why),
                }
            }
            Err(why) => problems.add(format!("{at}.provisioningTemplate"), why),
        }
        let params = core.cdf_provisioning_parameters.clone().unwrap_or_default();
        if params.certificate_pem.is_none() {
            let ca_id = params.ca_id.clone().or_else(|| self.cas.default_ca_id());
            match ca_id {
                None => problems.add(
                    format!("{at}.cdfProvisioningParameters.caId"),
                    "no CA is configured: name one with caId, or create one with `ggprov ca create`",
                ),
                Some(ca_id) => {
                    if !lookups.cas.contains_key(&ca_id) {
                        let held = self.cas.ca(&ca_id).await.map_err(CoreTaskError::Cloud)?.is_some();
                        lookups.cas.insert(ca_id.clone(), held);
                    }
                    if !lookups.cas[&ca_id] {
                        problems.add(
                            format!("{at}.cdfProvisioningParameters.caId"),
                            format!("ggprov holds no CA '{ca_id}'; create or import it with `ggprov ca create` / `ggprov ca import`"),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores a certificate rotation task of `cores` (validated by the caller) and queues it.
    pub async fn submit_rotation(
        &self,
        spec: crate::rotation::RotationSpec,
        cores: Vec<NewCore>,
    ) -> Result<Task, CoreTaskError> {
        self.store_and_queue(TaskKind::Rotation(spec), TaskType::Create, String::new(), cores, None, Problems::new())
            .await
    }

    /// A new task of the same kind holding only the items of a finished task that failed.
    pub async fn retry(&self, id: &TaskId, family: TaskFamily) -> Result<Task, CoreTaskError> {
        let task = self.get(id, family).await?;
        if !task.status.is_terminal() {
            return Err(CoreTaskError::Conflict {
                code: "TASK_NOT_FINISHED",
                message: format!("task {id} is {}; only a finished task can be retried", task.status),
            });
        }
        let failed: Vec<NewCore> =
            task.items.into_iter().filter(|i| i.status == TaskStatus::Failure).map(|i| i.request).collect();
        // A retried rotation with waves rolls out again over the failed cores, from its first wave.
        let mut kind = task.kind;
        if let TaskKind::Rotation(spec) = &mut kind
            && let Some(state) = spec.rollout.take()
        {
            let planned = state.spec.plan(failed.len());
            spec.rollout = Some(Box::new(crate::rollout::RolloutState::start(state.spec, &planned, Timestamp::now())));
        }
        if failed.is_empty() {
            return Err(CoreTaskError::Conflict {
                code: "NOTHING_TO_RETRY",
                message: format!("no item of task {id} failed; there is nothing to retry"),
            });
        }
        self.store_and_queue(kind, task.task_type, task.core_version, failed, task.options, Problems::new()).await
    }

    /// A task of the family.
    pub async fn get(&self, id: &TaskId, family: TaskFamily) -> Result<Task, CoreTaskError> {
        self.store
            .task(id)
            .await?
            .filter(|t| t.kind.family() == family)
            .ok_or_else(|| CoreTaskError::NotFound(id.clone()))
    }

    pub async fn list(
        &self,
        family: TaskFamily,
        page: PageRequest<TaskId>,
    ) -> Result<Page<Task, TaskId>, CoreTaskError> {
        Ok(self.store.list_tasks(family, page).await?)
    }
}
