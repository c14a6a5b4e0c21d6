//! Core and client-device tasks (`workflows.md`): the batch entry points here, the steps
//! every thing shares in [`things`], the core steps in [`cores`], the device steps in
//! [`devices`].

mod cores;
mod devices;
mod rotation;
mod things;

pub(crate) use things::inventory_entry;

use std::sync::Arc;

use ggprov_domain::cores::TaskKind;
use ggprov_domain::jobs::TaskBatch;
use ggprov_domain::ports::{
    ArtifactStore, CertificateAuthorities, CloudError, CoreStore, Greengrass, IotRegistry, ProvisioningObserver,
    RotationChannel,
};
use ggprov_domain::provisioning_templates::ProvisioningTemplates;
use ggprov_domain::{TaskType, ThingName};

use crate::jobs::JobContext;
use crate::{Failpoints, StepError};

/// Failpoints between the steps, in order (tests stop processing at each in turn).
pub const STEPS: &[&str] = &[
    "create.after_start",
    "create.after_thing",
    "create.after_certs_bundle",
    "create.after_certs_journal",
    "create.after_register",
    "create.after_policies",
    "create.after_principal",
    "create.after_config",
    "delete.after_client_devices",
    "delete.after_core_device",
    "delete.after_certificate",
    "delete.after_thing",
    "device.after_provisioning",
    "device.after_associate",
    "device.after_disassociate",
    "rotate.after_start",
    "rotate.after_sign",
    "rotate.after_register",
    "rotate.after_attach",
    "rotate.after_deliver",
    "rotate.after_retire",
    "rotate.after_journal",
];

/// Settings of the provisioning steps.
#[derive(Debug, Clone)]
pub struct ProvisionerSettings {
    pub region: String,
    /// Token-exchange role alias named in installer configs.
    pub role_alias: String,
    /// Where Greengrass lives on devices (installer configs).
    pub device_root_path: String,
    /// Prefix of artifact keys, e.g. `greengrass2/`.
    pub artifacts_prefix: String,
    /// Keep artifacts (certs bundles hold private keys) when a core is deleted.
    pub keep_artifacts: bool,
    /// Items of one batch working at once (`slots`: an item waiting out a backoff lets another start).
    pub concurrency: usize,
}

/// Runs core-task batches.
pub struct CoreProvisioner {
    pub(crate) store: Arc<dyn CoreStore>,
    iot: Arc<dyn IotRegistry>,
    greengrass: Arc<dyn Greengrass>,
    cas: Arc<dyn CertificateAuthorities>,
    artifacts: Arc<dyn ArtifactStore>,
    templates: ProvisioningTemplates,
    observer: Arc<dyn ProvisioningObserver>,
    failpoints: Failpoints,
    settings: ProvisionerSettings,
    /// The account's IoT endpoints (data, credentials): asked once, they never change.
    endpoints: tokio::sync::OnceCell<(String, String)>,
    /// The cores' rotation component.
    rotation: Arc<dyn RotationChannel>,
    /// Policy groups (group and policy names) and their set-up: each is set up once per
    /// process, not once per thing, by the first item to meet it while the others wait.
    policy_groups: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
}

fn permanent(message: impl Into<String>) -> StepError {
    StepError::permanent(message)
}

/// Treats "not found" as done: deletes converge.
fn ignore_not_found(result: Result<(), CloudError>) -> Result<(), StepError> {
    match result {
        Err(err) if err.is_not_found() => Ok(()),
        other => other.map_err(StepError::from),
    }
}

impl CoreProvisioner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn CoreStore>,
        iot: Arc<dyn IotRegistry>,
        greengrass: Arc<dyn Greengrass>,
        cas: Arc<dyn CertificateAuthorities>,
        artifacts: Arc<dyn ArtifactStore>,
        observer: Arc<dyn ProvisioningObserver>,
        failpoints: Failpoints,
        settings: ProvisionerSettings,
    ) -> Self {
        let templates = ProvisioningTemplates::new(artifacts.clone());
        Self {
            store,
            iot,
            greengrass,
            cas,
            artifacts,
            templates,
            observer,
            failpoints,
            settings,
            endpoints: tokio::sync::OnceCell::new(),
            rotation: Arc::new(ggprov_domain::backend::NoRotationChannel(
                "no certificate-rotation channel is configured",
            )),
            policy_groups: std::sync::Mutex::default(),
        }
    }

    /// Reaches the cores' rotation component through `channel`.
    #[must_use]
    pub fn with_rotation(mut self, channel: Arc<dyn RotationChannel>) -> Self {
        self.rotation = channel;
        self
    }

    fn key(&self, name: &ThingName, file: &str) -> String {
        format!("{}{name}/{name}/{file}", self.settings.artifacts_prefix)
    }

    /// Runs every unfinished item of a batch. Items that fail for good are recorded as
    /// `Failure`; a transient failure or a crash of any item fails the whole job so that it is
    /// retried (items already ended are skipped then).
    pub async fn run_batch(
        &self,
        batch: &TaskBatch,
        deployer: &crate::Deployer,
        ctx: &JobContext,
    ) -> Result<(), StepError> {
        let Some(task) = self.store.task_header(&batch.task_id).await? else {
            return Err(permanent(format!("task {} does not exist", batch.task_id)));
        };
        match task.kind.clone() {
            TaskKind::Core => self.run_core_items(&task, &batch.items, ctx).await,
            TaskKind::Rotation(spec) => self.run_rotation_items(&task, &spec, &batch.items, ctx).await,
            TaskKind::Deployment(spec) => deployer.deploy_batch(&task, &spec, &batch.items, ctx).await,
            TaskKind::Device { core_name } => match task.task_type {
                TaskType::Create => self.create_devices(&task, &core_name, &batch.items, ctx).await,
                TaskType::Delete => self.delete_devices(&task, &core_name, &batch.items, ctx).await,
            },
        }
    }

    /// Marks the unfinished items of a batch `Failure` (the job is dead-lettered).
    pub async fn fail_batch(&self, batch: &TaskBatch, reason: &str) -> Result<(), StepError> {
        let message = format!("gave up after repeated failures: {reason}");
        for name in &batch.items {
            self.store.fail_item(&batch.task_id, name, &message, None).await?;
        }
        Ok(())
    }
}

/// The crash if any, else the first error, else success.
fn first_error(results: Vec<Result<(), StepError>>) -> Result<(), StepError> {
    if let Some(crash) = results.iter().find_map(|r| match r {
        Err(StepError::Crash(point)) => Some(*point),
        _ => None,
    }) {
        return Err(StepError::Crash(crash));
    }
    // Waiting for a core is the least of it: a failure of another item retries the job (the
    // waiting item is looked at again then); only when nothing else failed does the job wait.
    let (waiting, failed): (Vec<StepError>, Vec<StepError>) =
        results.into_iter().filter_map(Result::err).partition(|e| matches!(e, StepError::Waiting { .. }));
    match (failed.into_iter().next(), waiting.into_iter().next()) {
        (Some(err), _) | (None, Some(err)) => Err(err),
        (None, None) => Ok(()),
    }
}
