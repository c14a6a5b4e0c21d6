//! The per-core steps of core tasks (`workflows.md`): provision (Create) and delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use ggprov_domain::cores::{
    Artifact, CORE_CREATED_EVENT, CORE_DELETED_EVENT, Core, DEVICE_CREATED_EVENT, DEVICE_DELETED_EVENT, Device, Event,
    NewCore, Task, TaskItem, TaskKind,
};
use ggprov_domain::jobs::TaskBatch;
use ggprov_domain::pagination::PageRequest;
use ggprov_domain::ports::{
    ArtifactStore, CertificateAuthorities, CloudError, CoreStore, EndpointKind, Greengrass, IotRegistry,
    ProvisioningObserver,
};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::provisioning_templates::ProvisioningTemplates;
use ggprov_domain::template::DEPLOYMENT_GROUP_PREFIX;
use ggprov_domain::{TaskType, ThingName, Timestamp, thing_lifecycle};
use ggprov_pki::installer::{self, InstallerInput};

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
    /// Items of one batch processed at once.
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
        }
    }

    fn key(&self, name: &ThingName, file: &str) -> String {
        format!("{}{name}/{name}/{file}", self.settings.artifacts_prefix)
    }

    /// Runs every unfinished item of a batch. Items that fail for good are recorded as
    /// `Failure`; a transient failure or a crash of any item fails the whole job so that it is
    /// retried (items already ended are skipped then).
    pub async fn run_batch(&self, batch: &TaskBatch, deployer: &crate::Deployer) -> Result<(), StepError> {
        let Some(task) = self.store.task_header(&batch.task_id).await? else {
            return Err(permanent(format!("task {} does not exist", batch.task_id)));
        };
        match task.kind.clone() {
            TaskKind::Core => self.run_core_items(&task, &batch.items).await,
            TaskKind::Deployment(spec) => deployer.deploy_batch(&task, &spec, &batch.items).await,
            TaskKind::Device { core_name } => match task.task_type {
                TaskType::Create => self.create_devices(&task, &core_name, &batch.items).await,
                TaskType::Delete => self.delete_devices(&task, &core_name, &batch.items).await,
            },
        }
    }

    async fn run_core_items(&self, task: &Task, items: &[ThingName]) -> Result<(), StepError> {
        let results: Vec<Result<(), StepError>> = futures::stream::iter(items.iter().cloned())
            .map(|name| async move { self.run_item(task, &name).await })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        first_error(results)
    }

    async fn run_item(&self, task: &Task, name: &ThingName) -> Result<(), StepError> {
        let Some(item) = self.store.start_item(&task.id, name).await? else {
            return Ok(()); // not part of the task (a tampered message): nothing to do
        };
        if item.status.is_terminal() {
            return Ok(());
        }
        let span =
            tracing::info_span!("core", core.name = %name, task.id = %task.id, task.r#type = task.task_type.as_str());
        let result = tracing::Instrument::instrument(
            async {
                match task.task_type {
                    TaskType::Create => self.create(task, &item).await,
                    TaskType::Delete => self.delete(task, &item).await,
                }
            },
            span,
        )
        .await;
        match result {
            Err(StepError::Permanent { message, .. }) => {
                tracing::warn!(core.name = %name, task.id = %task.id, reason = %message, "core item failed");
                let detail_type = match task.task_type {
                    TaskType::Create => CORE_CREATED_EVENT,
                    TaskType::Delete => CORE_DELETED_EVENT,
                };
                let event = Event::core(detail_type, name, &task.id, Some(&message));
                self.store.fail_item(&task.id, name, &message, Some(&event)).await?;
                Ok(())
            }
            other => other,
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

    /// The steps every thing goes through, core or client device: thing, key and certificate
    /// (bundle stored first), registration, policies, attachment. Returns the certs artifact.
    async fn provision_thing(&self, item: &TaskItem<NewCore>) -> Result<BTreeMap<String, Artifact>, StepError> {
        let name = &item.name;
        let request = &item.request;
        self.failpoints.check("create.after_start")?;
        let template = self.templates.load(&request.provisioning_template).await.map_err(permanent)?;
        let mut parameters = request.provisioning_parameters.clone();
        parameters.entry("ThingName".to_owned()).or_insert_with(|| name.as_str().to_owned());
        let rendered = template.render(&parameters).map_err(permanent)?;
        if let Some(thing) = rendered.thing_name.as_deref().filter(|t| *t != name.as_str()) {
            return Err(permanent(format!(
                "the provisioning template names the thing '{thing}', but the item is '{name}'"
            )));
        }
        let mut journal = self.store.journal(name).await?;

        // 1. The thing.
        if !journal.thing_created {
            if self.iot.describe_thing(name).await?.is_none() {
                match self.iot.create_thing(name, rendered.thing_type.as_deref(), &rendered.attributes).await {
                    Ok(()) | Err(CloudError::AlreadyExists { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            for group in &rendered.thing_groups {
                self.iot.add_thing_to_thing_group(group, name).await?;
            }
            journal.thing_created = true;
            self.store.save_journal(name, &journal).await?;
        }
        self.failpoints.check("create.after_thing")?;

        // 2. Key and certificate: the bundle is stored before the certificate is registered,
        //    so a key is never lost and a retry reuses the journaled certificate.
        let cdf = request.cdf_provisioning_parameters.clone().unwrap_or_default();
        if journal.certificate_pem.is_none() {
            let (certificate_pem, private_key, ca_pem) = match &cdf.certificate_pem {
                Some(pem) => {
                    ggprov_pki::fingerprint(pem)
                        .map_err(|e| permanent(format!("cdfProvisioningParameters.certificatePem: {e}")))?;
                    (pem.clone(), None, None)
                }
                None => {
                    let ca_id = cdf
                        .ca_id
                        .clone()
                        .or_else(|| self.cas.default_ca_id())
                        .ok_or_else(|| permanent("no CA is configured; create one with `ggprov ca create`"))?;
                    let ca =
                        self.cas.ca(&ca_id).await?.ok_or_else(|| permanent(format!("ggprov holds no CA '{ca_id}'")))?;
                    let info = cdf.cert_info.clone().unwrap_or_default();
                    match &cdf.csr {
                        Some(csr) => {
                            let pem = ggprov_pki::sign_csr(&ca, name.as_str(), csr, &info)
                                .map_err(|e| permanent(e.to_string()))?;
                            (pem, None, Some(ca.certificate_pem))
                        }
                        None => {
                            let minted =
                                ggprov_pki::mint(&ca, name.as_str(), &info).map_err(|e| permanent(e.to_string()))?;
                            (minted.certificate_pem, Some(minted.private_key), Some(ca.certificate_pem))
                        }
                    }
                }
            };
            let key = self.key(name, "certs.zip");
            self.artifacts
                .put(&key, ggprov_pki::certs_zip(&certificate_pem, private_key.as_ref(), ca_pem.as_deref()))
                .await?;
            self.failpoints.check("create.after_certs_bundle")?;
            journal.certificate_pem = Some(certificate_pem);
            journal.ca_certificate_pem = ca_pem;
            journal.certs_key = Some(key);
            self.store.save_journal(name, &journal).await?;
        }
        self.failpoints.check("create.after_certs_journal")?;

        // 3. Register the certificate (a second registration returns the same id).
        if journal.certificate_id.is_none() {
            let status = cdf.certificate_status.unwrap_or(rendered.certificate_status);
            let pem = journal.certificate_pem.as_deref().expect("set above");
            let registered = self.iot.register_certificate(pem, journal.ca_certificate_pem.as_deref(), status).await?;
            self.failpoints.check("create.after_register")?;
            journal.certificate_id = Some(registered.id);
            journal.certificate_arn = Some(registered.arn);
            self.store.save_journal(name, &journal).await?;
        }
        let arn = journal.certificate_arn.clone().expect("set above");

        // 4. Policies on the certificate.
        self.attach_policies(name, &arn, &rendered.policies, false, &mut journal).await?;
        self.attach_policies(name, &arn, &rendered.additional_policies, true, &mut journal).await?;
        self.store.save_journal(name, &journal).await?;
        self.failpoints.check("create.after_policies")?;

        // 5. The certificate on the thing.
        if !journal.principal_attached {
            self.iot.attach_thing_principal(name, &arn).await?;
            journal.principal_attached = true;
            self.store.save_journal(name, &journal).await?;
        }
        self.failpoints.check("create.after_principal")?;

        let mut artifacts = BTreeMap::new();
        if let Some(key) = &journal.certs_key {
            artifacts.insert(
                "certs".to_owned(),
                Artifact { bucket: self.artifacts.bucket().to_owned(), key: key.clone(), created_at: Timestamp::now() },
            );
        }
        Ok(artifacts)
    }

    async fn create(&self, task: &Task, item: &TaskItem<NewCore>) -> Result<(), StepError> {
        let name = &item.name;
        let request = &item.request;
        let mut artifacts = self.provision_thing(item).await?;

        // 6. Installer config.
        let now = Timestamp::now();
        let bucket = self.artifacts.bucket().to_owned();
        if let Some(generator) = &request.config_file_generator {
            if !installer::GENERATORS.contains(&generator.as_str()) {
                return Err(permanent(format!(
                    "Unrecognized generator alias: {generator} (known: {})",
                    installer::GENERATORS.join(", ")
                )));
            }
            let (data_endpoint, credential_endpoint) = self
                .endpoints
                .get_or_try_init(|| async {
                    let data = self.iot.describe_endpoint(EndpointKind::DataAts).await?;
                    let credentials = self.iot.describe_endpoint(EndpointKind::CredentialProvider).await?;
                    Ok::<_, StepError>((data, credentials))
                })
                .await?
                .clone();
            let input = InstallerInput {
                core_name: name.as_str(),
                nucleus_version: &task.core_version,
                region: &self.settings.region,
                role_alias: &self.settings.role_alias,
                data_endpoint: &data_endpoint,
                credential_endpoint: &credential_endpoint,
                root_path: &self.settings.device_root_path,
                provisioning_template: &request.provisioning_template,
                template_parameters: &request.provisioning_parameters,
            };
            let yaml = installer::render(generator, &input).expect("known generator");
            let key = self.key(name, "installerConfig.yml");
            self.artifacts.put(&key, yaml.into_bytes()).await?;
            artifacts.insert("config".to_owned(), Artifact { bucket, key, created_at: now });
        }
        self.failpoints.check("create.after_config")?;

        // 7. Record the core, the item's success and the event in one write.
        let mut core = Core::new(name.clone(), request.provisioning_template.clone(), now);
        core.artifacts = artifacts;
        self.store
            .complete_core_create(&task.id, &core, &Event::core(CORE_CREATED_EVENT, name, &task.id, None))
            .await?;
        tracing::info!(core.name = %name, task.id = %task.id, "core provisioned");
        self.observer.core_provisioned(name, &task.core_version).await;
        Ok(())
    }

    async fn attach_policies(
        &self,
        name: &ThingName,
        certificate_arn: &str,
        policies: &[(String, Option<String>)],
        per_thing: bool,
        journal: &mut ProvisioningJournal,
    ) -> Result<(), StepError> {
        for (policy, document) in policies {
            // A policy with a document in `attachAdditionalPolicies` is created for this thing
            // and deleted with it; other policies are shared and must exist or be creatable.
            let policy_name = if per_thing && document.is_some() { format!("{policy}_{name}") } else { policy.clone() };
            if !self.iot.policy_exists(&policy_name).await? {
                let Some(document) = document else {
                    return Err(permanent(format!(
                        "IoT policy '{policy_name}' does not exist; create it, or give the provisioning template a policy document"
                    )));
                };
                match self.iot.create_policy(&policy_name, document).await {
                    Ok(()) => {
                        if per_thing && !journal.created_policies.contains(&policy_name) {
                            journal.created_policies.push(policy_name.clone());
                        }
                    }
                    Err(CloudError::AlreadyExists { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            self.iot.attach_policy(&policy_name, certificate_arn).await?;
            if !journal.attached_policies.contains(&policy_name) {
                journal.attached_policies.push(policy_name);
            }
        }
        Ok(())
    }

    async fn delete(&self, task: &Task, item: &TaskItem<NewCore>) -> Result<(), StepError> {
        let name = &item.name;
        let Some(core) = self.store.core(name).await? else {
            return Err(permanent(format!("core not found: ggprov has no core named {name}")));
        };
        let options = task.options.clone().unwrap_or_default();
        self.remove_client_devices(task, name, options.deprovision_client_devices.unwrap_or(false)).await?;
        self.failpoints.check("delete.after_client_devices")?;
        ignore_not_found(self.greengrass.delete_core_device(name).await)?;
        self.failpoints.check("delete.after_core_device")?;

        if self.iot.describe_thing(name).await?.is_some() {
            for group in self.iot.list_thing_groups_for_thing(name).await? {
                if group.starts_with(DEPLOYMENT_GROUP_PREFIX) {
                    ignore_not_found(self.iot.remove_thing_from_thing_group(&group, name).await)?;
                }
            }
        }

        let deprovision = options.deprovision_cores.unwrap_or(false);
        if deprovision {
            let journal = self.store.journal(name).await?;
            thing_lifecycle::retire_certificate(self.iot.as_ref(), name, &journal).await?;
            self.failpoints.check("delete.after_certificate")?;
            thing_lifecycle::delete_thing(self.iot.as_ref(), name, &journal).await?;
        }
        self.failpoints.check("delete.after_thing")?;

        self.delete_artifacts(&core.artifacts).await?;
        self.store.complete_core_delete(&task.id, name, &Event::core(CORE_DELETED_EVENT, name, &task.id, None)).await?;
        tracing::info!(core.name = %name, task.id = %task.id, deprovision, "core deleted");
        Ok(())
    }

    async fn delete_artifacts(&self, artifacts: &BTreeMap<String, Artifact>) -> Result<(), StepError> {
        if !self.settings.keep_artifacts {
            for artifact in artifacts.values() {
                self.artifacts.delete(&artifact.key).await?;
            }
        }
        Ok(())
    }

    /// Disassociates every client device of a core (Greengrass's list and ggprov's records,
    /// all pages), deprovisions those ggprov created when asked, and removes their records.
    async fn remove_client_devices(&self, task: &Task, core: &ThingName, deprovision: bool) -> Result<(), StepError> {
        let mut names = match self.greengrass.list_client_devices(core).await {
            Ok(names) => names,
            Err(err) if err.is_not_found() => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        let mut records = Vec::new();
        let mut page = PageRequest::first(1000);
        loop {
            let result = self.store.list_devices_of_core(core, page).await?;
            records.extend(result.items);
            match result.last_evaluated {
                Some(last) => page = PageRequest::after(1000, last),
                None => break,
            }
        }
        names.extend(records.iter().map(|d| d.name.clone()));
        names.sort();
        names.dedup();
        if !names.is_empty() && self.greengrass.get_core_device(core).await?.is_some() {
            for chunk in names.chunks(100) {
                self.greengrass.disassociate_client_devices(core, chunk).await?;
            }
        }
        for device in records {
            self.retire_device(&device, deprovision).await?;
            let event = Event::device(DEVICE_DELETED_EVENT, &device.name, Some(&task.id), None);
            self.store.complete_device_delete(None, &device.name, &event).await?;
        }
        Ok(())
    }

    /// Deprovisions a device's certificate and thing (when asked) and deletes its artifacts.
    async fn retire_device(&self, device: &Device, deprovision: bool) -> Result<(), StepError> {
        if deprovision {
            let journal = self.store.journal(&device.name).await?;
            thing_lifecycle::retire_certificate(self.iot.as_ref(), &device.name, &journal).await?;
            thing_lifecycle::delete_thing(self.iot.as_ref(), &device.name, &journal).await?;
        }
        self.delete_artifacts(&device.artifacts).await
    }

    /// A batch of a device `Create` task: provision each device, associate those provisioned
    /// with the core in one call (per-device errors kept), then record each outcome.
    async fn create_devices(&self, task: &Task, core: &ThingName, names: &[ThingName]) -> Result<(), StepError> {
        let outcomes: Vec<(ThingName, Result<Option<Provisioned>, StepError>)> =
            futures::stream::iter(names.iter().cloned())
                .map(|name| async move {
                    let result = async {
                        let Some(item) = self.store.start_item(&task.id, &name).await? else { return Ok(None) };
                        if item.status.is_terminal() {
                            return Ok(None);
                        }
                        let artifacts = self.provision_thing(&item).await?;
                        Ok(Some((item, artifacts)))
                    }
                    .await;
                    (name, result)
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
        let mut provisioned = Vec::new();
        let mut errors = Vec::new();
        for (name, outcome) in outcomes {
            match outcome {
                Ok(Some(done)) => provisioned.push(done),
                Ok(None) => {}
                Err(StepError::Permanent { message, .. }) => {
                    self.fail_device(task, &name, DEVICE_CREATED_EVENT, &message).await?
                }
                Err(err) => errors.push(Err(err)),
            }
        }
        first_error(errors)?;
        self.failpoints.check("device.after_provisioning")?;
        let mut failed: BTreeMap<ThingName, String> = BTreeMap::new();
        let ready: Vec<ThingName> = provisioned.iter().map(|(item, _)| item.name.clone()).collect();
        for chunk in ready.chunks(100) {
            failed.extend(self.greengrass.associate_client_devices(core, chunk).await?);
        }
        self.failpoints.check("device.after_associate")?;
        for (item, artifacts) in provisioned {
            if let Some(reason) = failed.get(&item.name) {
                let message = format!("Client device cannot be associated with core {core}: {reason}");
                self.fail_device(task, &item.name, DEVICE_CREATED_EVENT, &message).await?;
                continue;
            }
            let now = Timestamp::now();
            let device = Device {
                name: item.name.clone(),
                core_name: core.clone(),
                provisioning_template: item.request.provisioning_template.clone(),
                artifacts,
                created_at: now,
                updated_at: Some(now),
            };
            let event = Event::device(DEVICE_CREATED_EVENT, &item.name, Some(&task.id), None);
            self.store.complete_device_create(&task.id, &device, &event).await?;
        }
        Ok(())
    }

    /// A batch of a device `Delete` task: disassociate them from the core, deprovision when
    /// asked, remove the records.
    async fn delete_devices(&self, task: &Task, core: &ThingName, names: &[ThingName]) -> Result<(), StepError> {
        let mut devices = Vec::new();
        for name in names {
            let Some(item) = self.store.start_item(&task.id, name).await? else { continue };
            if item.status.is_terminal() {
                continue;
            }
            match self.store.device(name).await? {
                Some(device) => devices.push(device),
                None => {
                    self.fail_device(
                        task,
                        name,
                        DEVICE_DELETED_EVENT,
                        &format!("client device not found: ggprov has no client device named {name}"),
                    )
                    .await?
                }
            }
        }
        let associated: Vec<ThingName> = devices.iter().map(|d| d.name.clone()).collect();
        if !associated.is_empty() && self.greengrass.get_core_device(core).await?.is_some() {
            for chunk in associated.chunks(100) {
                self.greengrass.disassociate_client_devices(core, chunk).await?;
            }
        }
        self.failpoints.check("device.after_disassociate")?;
        let deprovision = task.options.as_ref().and_then(|o| o.deprovision_client_devices).unwrap_or(false);
        for device in devices {
            self.retire_device(&device, deprovision).await?;
            let event = Event::device(DEVICE_DELETED_EVENT, &device.name, Some(&task.id), None);
            self.store.complete_device_delete(Some(&task.id), &device.name, &event).await?;
        }
        Ok(())
    }

    async fn fail_device(
        &self,
        task: &Task,
        name: &ThingName,
        detail_type: &str,
        message: &str,
    ) -> Result<(), StepError> {
        tracing::warn!(device.name = %name, task.id = %task.id, reason = %message, "client device item failed");
        let event = Event::device(detail_type, name, Some(&task.id), Some(message));
        self.store.fail_item(&task.id, name, message, Some(&event)).await?;
        Ok(())
    }
}

/// A device item whose thing is provisioned, with its certs artifact.
type Provisioned = (TaskItem<NewCore>, BTreeMap<String, Artifact>);

/// The crash if any, else the first error, else success.
fn first_error(results: Vec<Result<(), StepError>>) -> Result<(), StepError> {
    if let Some(crash) = results.iter().find_map(|r| match r {
        Err(StepError::Crash(point)) => Some(*point),
        _ => None,
    }) {
        return Err(StepError::Crash(crash));
    }
    results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}
