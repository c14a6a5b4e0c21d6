//! Reading cores: the stored record plus live data from Greengrass.

use std::sync::Arc;

use serde::Serialize;

use crate::cores::{Core, StoredEvent};
use crate::pagination::{Page, PageRequest};
use crate::ports::{
    CoreDevice, CoreFilter, CoreStore, EffectiveDeployment, Greengrass, InstalledComponent, StoreError,
};
use crate::thing::ThingName;

/// The live `device` block of `GET /cores/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// `HEALTHY`, `UNHEALTHY`, or `UNKNOWN` when Greengrass has no such core or could not be asked.
    pub status: String,
    pub device: Option<CoreDevice>,
    pub installed_components: Vec<InstalledComponent>,
    pub effective_deployments: Vec<EffectiveDeployment>,
}

impl DeviceInfo {
    fn unknown() -> Self {
        Self {
            status: "UNKNOWN".to_owned(),
            device: None,
            installed_components: Vec::new(),
            effective_deployments: Vec::new(),
        }
    }
}

/// Core read use cases.
#[derive(Clone)]
pub struct CoreService {
    store: Arc<dyn CoreStore>,
    greengrass: Arc<dyn Greengrass>,
    artifacts: Option<Arc<dyn crate::ports::ArtifactStore>>,
}

impl CoreService {
    pub fn new(store: Arc<dyn CoreStore>, greengrass: Arc<dyn Greengrass>) -> Self {
        Self { store, greengrass, artifacts: None }
    }

    /// Offers the artifact store's download links (presigned S3 URLs) with a core's artifacts.
    #[must_use]
    pub fn with_download_links(mut self, artifacts: Arc<dyn crate::ports::ArtifactStore>) -> Self {
        self.artifacts = Some(artifacts);
        self
    }

    /// Download links of a core's artifacts by artifact name (empty when not offered). A link
    /// that cannot be made is left out, never failing the read.
    pub async fn download_links(&self, core: &crate::cores::Core) -> std::collections::BTreeMap<String, String> {
        let mut links = std::collections::BTreeMap::new();
        let Some(store) = &self.artifacts else { return links };
        for (name, artifact) in &core.artifacts {
            match store.download_url(&artifact.key).await {
                Ok(Some(url)) => {
                    links.insert(name.clone(), url);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(core.name = %core.name, artifact = %name, error = %err, "no download link"),
            }
        }
        links
    }

    /// The core and what Greengrass knows of it now. Greengrass failures never fail the read:
    /// the device is then `UNKNOWN`.
    pub async fn get(&self, name: &ThingName) -> Result<Option<(Core, DeviceInfo)>, StoreError> {
        Ok(self.get_exact(name).await?.map(|(core, device, _)| (core, device)))
    }

    /// As [`Self::get`], and whether the answer is exact: `false` when Greengrass could not be
    /// asked and the device reads `UNKNOWN` for that reason (not to be remembered).
    pub async fn get_exact(&self, name: &ThingName) -> Result<Option<(Core, DeviceInfo, bool)>, StoreError> {
        let Some(core) = self.store.core(name).await? else { return Ok(None) };
        let (device, exact) = match self.device_info(name).await {
            Ok(info) => (info, true),
            Err(err) => {
                tracing::warn!(core.name = %name, error = %err, "Greengrass lookup failed; reporting the device as UNKNOWN");
                (DeviceInfo::unknown(), false)
            }
        };
        Ok(Some((core, device, exact)))
    }

    /// The state of everything [`Self::get`] reads (the records and Greengrass), when both
    /// backends can tell it: equal states mean equal answers (see [`crate::ports::DataState`]).
    pub fn data_state(&self) -> Option<(crate::ports::DataState, crate::ports::DataState)> {
        Some((self.store.data_state()?, self.greengrass.data_state()?))
    }

    /// The three Greengrass reads run at once (one round trip instead of two on AWS); when
    /// Greengrass has no such core device the other two answers are not used.
    async fn device_info(&self, name: &ThingName) -> Result<DeviceInfo, crate::ports::CloudError> {
        let (device, installed, effective) = futures::future::join3(
            self.greengrass.get_core_device(name),
            self.greengrass.list_installed_components(name),
            self.greengrass.list_effective_deployments(name),
        )
        .await;
        let Some(device) = device? else { return Ok(DeviceInfo::unknown()) };
        Ok(DeviceInfo {
            status: device.status.clone(),
            installed_components: installed?,
            effective_deployments: effective?,
            device: Some(device),
        })
    }

    pub async fn list(
        &self,
        filter: &CoreFilter,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Core, ThingName>, StoreError> {
        self.store.list_cores(filter, page).await
    }

    pub async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError> {
        self.store.events(page).await
    }

    /// Events after a sequence, oldest first (see [`crate::ports::Outbox::events_after`]).
    pub async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_after(after, limit).await
    }

    /// See [`crate::ports::Outbox::stream_settle`].
    pub fn stream_settle(&self) -> std::time::Duration {
        self.store.stream_settle()
    }
}
