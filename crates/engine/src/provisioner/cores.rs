//! The per-core steps of core tasks: provision (Create, over the shared thing steps, then the
//! installer config and the core record) and delete (client devices, core device, groups,
//! certificate and thing when asked, artifacts, record).

use ggprov_domain::cores::{
    Artifact, CORE_CREATED_EVENT, CORE_DELETED_EVENT, Core, DEVICE_DELETED_EVENT, Event, NewCore, Task, TaskItem,
};
use ggprov_domain::pagination::PageRequest;
use ggprov_domain::ports::EndpointKind;
use ggprov_domain::template::DEPLOYMENT_GROUP_PREFIX;
use ggprov_domain::{TaskType, ThingName, Timestamp, thing_lifecycle};
use ggprov_pki::installer::{self, InstallerInput};

use super::{CoreProvisioner, first_error, ignore_not_found, permanent};
use crate::StepError;
use crate::jobs::JobContext;

impl CoreProvisioner {
    pub(super) async fn run_core_items(
        &self,
        task: &Task,
        items: &[ThingName],
        ctx: &JobContext,
    ) -> Result<(), StepError> {
        let results = crate::slots::run_items(items.iter().cloned(), self.settings.concurrency, |name| async move {
            self.run_item(task, &name, ctx).await
        })
        .await;
        first_error(results)
    }

    pub(super) async fn run_item(&self, task: &Task, name: &ThingName, ctx: &JobContext) -> Result<(), StepError> {
        let Some(started) = self.store.start_item(&task.id, name, &ctx.holder, ctx.lease).await? else {
            return Ok(()); // not part of the task (a tampered message): nothing to do
        };
        if !started.won {
            // Ended, or held by another message's live lease (a duplicate job): not ours.
            return Ok(());
        }
        let item = started.item;
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

    pub(super) async fn create(&self, task: &Task, item: &TaskItem<NewCore>) -> Result<(), StepError> {
        let name = &item.name;
        let request = &item.request;
        if let Some(generator) = request.config_file_generator.as_deref().filter(|g| !installer::GENERATORS.contains(g))
        {
            // Refused before anything is provisioned for a core that could not be installed.
            return Err(permanent(format!(
                "Unrecognized generator alias: {generator} (known: {})",
                installer::GENERATORS.join(", ")
            )));
        }
        let (mut artifacts, certificate, journal) = self.provision_thing(item).await?;

        // 6. Installer config.
        let now = Timestamp::now();
        let bucket = self.artifacts.bucket().to_owned();
        if let Some(generator) = &request.config_file_generator {
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

        // 7. Record the core, the item's success, the event and the journal in one write.
        let mut core = Core::new(name.clone(), request.provisioning_template.clone(), now);
        core.artifacts = artifacts;
        core.certificate = Some(certificate);
        core.software = ggprov_domain::software::CoreSoftware::installed(&task.core_version);
        self.store
            .complete_core_create(
                &task.id,
                &core,
                &Event::core(CORE_CREATED_EVENT, name, &task.id, None),
                Some(&journal),
            )
            .await?;
        tracing::info!(core.name = %name, task.id = %task.id, "core provisioned");
        self.observer.core_provisioned(name, &task.core_version).await;
        Ok(())
    }

    pub(super) async fn delete(&self, task: &Task, item: &TaskItem<NewCore>) -> Result<(), StepError> {
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

    /// Disassociates every client device of a core (Greengrass's list and ggprov's records,
    /// all pages), deprovisions those ggprov created when asked, and removes their records.
    pub(super) async fn remove_client_devices(
        &self,
        task: &Task,
        core: &ThingName,
        deprovision: bool,
    ) -> Result<(), StepError> {
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
}
