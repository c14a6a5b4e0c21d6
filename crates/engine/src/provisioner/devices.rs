//! The steps of client-device tasks: provision each device over the shared thing steps,
//! associate the batch with its core in one call, record each outcome; or disassociate,
//! deprovision when asked and remove the records.

use std::collections::BTreeMap;

use ggprov_domain::cores::{
    Artifact, DEVICE_CREATED_EVENT, DEVICE_DELETED_EVENT, Device, Event, NewCore, Task, TaskItem,
};
use ggprov_domain::{ThingName, Timestamp};

use super::{CoreProvisioner, first_error};
use crate::StepError;
use crate::jobs::JobContext;

/// A device item whose thing is provisioned, with its certs artifact.
/// A provisioned device item: its artifacts, certificate, and the journal its ending saves.
type Provisioned = (
    TaskItem<NewCore>,
    BTreeMap<String, Artifact>,
    ggprov_domain::certificates::CertificateInfo,
    ggprov_domain::provisioning::ProvisioningJournal,
);

impl CoreProvisioner {
    /// A batch of a device `Create` task: provision each device, associate those provisioned
    /// with the core in one call (per-device errors kept), then record each outcome.
    pub(super) async fn create_devices(
        &self,
        task: &Task,
        core: &ThingName,
        names: &[ThingName],
        ctx: &JobContext,
    ) -> Result<(), StepError> {
        let outcomes: Vec<(ThingName, Result<Option<Provisioned>, StepError>)> =
            crate::slots::run_items(names.iter().cloned(), self.settings.concurrency, |name| async move {
                let result = async {
                    let Some(started) = self.store.start_item(&task.id, &name, &ctx.holder, ctx.lease).await? else {
                        return Ok(None);
                    };
                    if !started.won {
                        return Ok(None);
                    }
                    let item = started.item;
                    let (artifacts, certificate, journal) = self.provision_thing(&item).await?;
                    Ok(Some((item, artifacts, certificate, journal)))
                }
                .await;
                (name, result)
            })
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
        let ready: Vec<ThingName> = provisioned.iter().map(|(item, ..)| item.name.clone()).collect();
        for chunk in ready.chunks(100) {
            failed.extend(self.greengrass.associate_client_devices(core, chunk).await?);
        }
        self.failpoints.check("device.after_associate")?;
        for (item, artifacts, certificate, journal) in provisioned {
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
                certificate: Some(certificate),
                created_at: now,
                updated_at: Some(now),
            };
            let event = Event::device(DEVICE_CREATED_EVENT, &item.name, Some(&task.id), None);
            // The journal is saved with the item's end, as for cores (decision 77).
            self.store.complete_device_create(&task.id, &device, &event, Some(&journal)).await?;
        }
        Ok(())
    }

    /// A batch of a device `Delete` task: disassociate them from the core, deprovision when
    /// asked, remove the records.
    pub(super) async fn delete_devices(
        &self,
        task: &Task,
        core: &ThingName,
        names: &[ThingName],
        ctx: &JobContext,
    ) -> Result<(), StepError> {
        let mut devices = Vec::new();
        for name in names {
            let Some(started) = self.store.start_item(&task.id, name, &ctx.holder, ctx.lease).await? else { continue };
            if !started.won {
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

    pub(super) async fn fail_device(
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
