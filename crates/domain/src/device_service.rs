//! Client devices: reading them and deleting one directly (`DELETE /devices/{name}`).

use std::sync::Arc;

use crate::cores::{DEVICE_DELETED_EVENT, Device, Event};
use crate::pagination::{Page, PageRequest};
use crate::ports::{ArtifactStore, CloudError, CoreStore, Greengrass, IotRegistry, StoreError};
use crate::thing::ThingName;
use crate::thing_lifecycle;

/// Errors of device operations.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("client device '{0}' does not exist")]
    NotFound(ThingName),
    #[error("could not remove client device '{name}': {source}")]
    Cloud {
        name: ThingName,
        #[source]
        source: CloudError,
    },
    /// A device task's open item owns the device now.
    #[error(
        "client device '{name}' is being worked on by task {task}; wait until that task ends (GET /deviceTasks/{task}), then delete it"
    )]
    Busy { name: ThingName, task: crate::task::TaskId },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Client-device use cases for the API.
#[derive(Clone)]
pub struct DeviceService {
    store: Arc<dyn CoreStore>,
    iot: Arc<dyn IotRegistry>,
    greengrass: Arc<dyn Greengrass>,
    artifacts: Arc<dyn ArtifactStore>,
}

impl DeviceService {
    pub fn new(
        store: Arc<dyn CoreStore>,
        iot: Arc<dyn IotRegistry>,
        greengrass: Arc<dyn Greengrass>,
        artifacts: Arc<dyn ArtifactStore>,
    ) -> Self {
        Self { store, iot, greengrass, artifacts }
    }

    pub async fn get(&self, name: &ThingName) -> Result<Device, DeviceError> {
        self.store.device(name).await?.ok_or_else(|| DeviceError::NotFound(name.clone()))
    }

    pub async fn list_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, DeviceError> {
        Ok(self.store.list_devices_of_core(core, page).await?)
    }

    /// Disassociates the device from its core and deprovisions it (each when asked), then
    /// removes its record and artifacts and emits `Device Deleted Event`.
    pub async fn delete(&self, name: &ThingName, deprovision: bool, disassociate: bool) -> Result<(), DeviceError> {
        let device = self.get(name).await?;
        if let Some(task) = self.store.open_claim(name).await? {
            return Err(DeviceError::Busy { name: name.clone(), task });
        }
        let cloud = |source: CloudError| DeviceError::Cloud { name: name.clone(), source };
        if disassociate {
            let failed = self
                .greengrass
                .disassociate_client_devices(&device.core_name, std::slice::from_ref(name))
                .await
                .map_err(cloud)?;
            if let Some((_, reason)) = failed.into_iter().next() {
                return Err(cloud(CloudError::Rejected {
                    api: "BatchDisassociateClientDeviceFromCoreDevice",
                    message: reason,
                }));
            }
        }
        if deprovision {
            let journal = self.store.journal(name).await?;
            thing_lifecycle::retire_certificate(self.iot.as_ref(), name, &journal).await.map_err(cloud)?;
            thing_lifecycle::delete_thing(self.iot.as_ref(), name, &journal).await.map_err(cloud)?;
        }
        for artifact in device.artifacts.values() {
            self.artifacts.delete(&artifact.key).await?;
        }
        self.store.complete_device_delete(None, name, &Event::device(DEVICE_DELETED_EVENT, name, None, None)).await?;
        Ok(())
    }
}
