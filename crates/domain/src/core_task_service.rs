//! Submitting core tasks: validate everything up front, persist, then enqueue the batches.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cores::{CoreTask, CoreTaskOptions, NewCore, TaskItem};
use crate::jobs::CoreTaskBatch;
use crate::pagination::{Page, PageRequest};
use crate::ports::{CertificateAuthorities, CloudError, CoreStore, StoreError, WorkQueue};
use crate::provisioning_templates::ProvisioningTemplates;
use crate::task::{TaskId, TaskStatus, TaskType};
use crate::time::Timestamp;
use crate::validation::{FieldProblem, Problems};

/// Errors of core-task operations.
#[derive(Debug, thiserror::Error)]
pub enum CoreTaskError {
    #[error("invalid core task")]
    Invalid(Vec<FieldProblem>),
    #[error("core task '{0}' does not exist")]
    NotFound(TaskId),
    #[error("could not check the certificate authority: {0}")]
    Cloud(#[source] CloudError),
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

/// Core-task use cases for the API.
#[derive(Clone)]
pub struct CoreTaskService {
    store: Arc<dyn CoreStore>,
    queue: Arc<dyn WorkQueue>,
    templates: ProvisioningTemplates,
    cas: Arc<dyn CertificateAuthorities>,
    batch_size: usize,
}

impl CoreTaskService {
    pub fn new(
        store: Arc<dyn CoreStore>,
        queue: Arc<dyn WorkQueue>,
        templates: ProvisioningTemplates,
        cas: Arc<dyn CertificateAuthorities>,
        batch_size: usize,
    ) -> Self {
        Self { store, queue, templates, cas, batch_size: batch_size.max(1) }
    }

    /// Checks what can be checked before anything is stored, stores the task (`Waiting`) and
    /// enqueues one job per batch.
    pub async fn submit(&self, request: NewCoreTask) -> Result<CoreTask, CoreTaskError> {
        let mut problems = Problems::new();
        let mut seen = BTreeSet::new();
        for (i, core) in request.cores.iter().enumerate() {
            if !seen.insert(core.name.as_str()) {
                problems.add(format!("cores[{i}].name"), format!("core '{}' is listed more than once", core.name));
            }
            if request.task_type == TaskType::Create {
                self.check_create(i, core, &mut problems).await?;
            }
        }
        if !problems.is_empty() {
            return Err(CoreTaskError::Invalid(problems.into_vec()));
        }
        let now = Timestamp::now();
        let task = CoreTask {
            id: TaskId::generate(),
            task_type: request.task_type,
            core_version: request.core_version,
            options: request.options,
            items: request
                .cores
                .into_iter()
                .map(|core| TaskItem {
                    name: core.name.clone(),
                    request: core,
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
        self.store.create_core_task(&task).await?;
        let jobs: Vec<_> = task
            .items
            .chunks(self.batch_size)
            .map(|chunk| {
                CoreTaskBatch { task_id: task.id.clone(), cores: chunk.iter().map(|i| i.name.clone()).collect() }.job()
            })
            .collect();
        // If this fails the task is stored but not queued: the sweeper enqueues it later.
        if let Err(err) = self.queue.enqueue(&jobs).await {
            tracing::warn!(task.id = %task.id, error = %err, "core task stored but not queued; the sweeper will queue it");
        }
        Ok(task)
    }

    async fn check_create(&self, i: usize, core: &NewCore, problems: &mut Problems) -> Result<(), CoreTaskError> {
        match self.templates.load(&core.provisioning_template).await {
            Ok(template) => {
                let mut given = core.provisioning_parameters.clone();
                given.entry("ThingName".to_owned()).or_insert_with(|| core.name.as_str().to_owned());
                match template.render(&given) {
                    Ok(rendered) => {
                        if let Some(thing) = rendered.thing_name.filter(|t| t != core.name.as_str()) {
                            problems.add(
                                format!("cores[{i}].provisioningParameters"),
                                format!("the provisioning template names the thing '{thing}', but the core is '{}'; they must match", core.name),
                            );
                        }
                    }
                    Err(why) => problems.add(format!("cores[{i}].provisioningParameters"), why),
                }
            }
            Err(why) => problems.add(format!("cores[{i}].provisioningTemplate"), why),
        }
        let params = core.cdf_provisioning_parameters.clone().unwrap_or_default();
        if params.certificate_pem.is_none() {
            let ca_id = params.ca_id.clone().or_else(|| self.cas.default_ca_id());
            match ca_id {
                None => problems.add(
                    format!("cores[{i}].cdfProvisioningParameters.caId"),
                    "no CA is configured: name one with caId, or create one with `ggprov ca create`",
                ),
                Some(ca_id) => {
                    if self.cas.ca(&ca_id).await.map_err(CoreTaskError::Cloud)?.is_none() {
                        problems.add(
                            format!("cores[{i}].cdfProvisioningParameters.caId"),
                            format!("ggprov holds no CA '{ca_id}'; create or import it with `ggprov ca create` / `ggprov ca import`"),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn get(&self, id: &TaskId) -> Result<CoreTask, CoreTaskError> {
        self.store.core_task(id).await?.ok_or_else(|| CoreTaskError::NotFound(id.clone()))
    }

    pub async fn list(&self, page: PageRequest<TaskId>) -> Result<Page<CoreTask, TaskId>, CoreTaskError> {
        Ok(self.store.list_core_tasks(page).await?)
    }
}
