//! `Greengrass` on the local cloud: the component catalogue and core devices.

use async_trait::async_trait;
use std::collections::BTreeMap;

use crate::{LocalCloud, all, execute, exists, one, params};
use ggprov_domain::ports::{
    CloudError, ContainerStatus, CoreDevice, DeploymentOutcome, DeploymentRequest, EffectiveDeployment, Greengrass,
    InstalledComponent, PositionedStatusFeed,
};
use ggprov_domain::{ComponentName, ComponentVersion, ThingName, Timestamp};
use ggprov_store_sqlite::read_cache::{KeyedReadCache, WalIndex};

#[async_trait]
impl Greengrass for LocalCloud {
    /// The database's state, while no fault or quota is simulated: then every call must be
    /// made, to be counted and perhaps refused.
    fn data_state(&self) -> Option<ggprov_domain::ports::DataState> {
        let faults = self.faults();
        if faults.quotas || faults.throttle_rate > 0.0 || faults.error_rate > 0.0 {
            return None;
        }
        self.inner.reads.current()
    }

    async fn component_version_exists(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<bool, CloudError> {
        const API: &str = "DescribeComponent";
        self.admit(API)?;
        if self.inner.catalogue.contains(name.as_str(), version.as_str()) {
            return Ok(true);
        }
        self.read(API, |c| {
            let sql = "SELECT 1 FROM private_components WHERE name = ? AND version = ?";
            Ok(exists(c, sql, [name.as_str(), version.as_str()])?)
        })
    }

    async fn component_platforms(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<Option<ggprov_domain::software::PlatformSupport>, CloudError> {
        if let Some(support) = self.inner.catalogue.platforms(name.as_str(), version.as_str()) {
            self.admit("DescribeComponent")?;
            return Ok(Some(support));
        }
        // The account's own components run anywhere here.
        Ok(self.component_version_exists(name, version).await?.then(Default::default))
    }

    async fn create_component_version(&self, recipe: &serde_json::Value) -> Result<(), CloudError> {
        const API: &str = "CreateComponentVersion";
        self.admit(API)?;
        let field = |name: &str| recipe.get(name).and_then(serde_json::Value::as_str);
        let (Some(name), Some(version)) = (field("ComponentName"), field("ComponentVersion")) else {
            return Err(crate::rejected(API, "the recipe needs ComponentName and ComponentVersion".to_owned()));
        };
        if field("RecipeFormatVersion") != Some("2020-01-25") {
            return Err(crate::rejected(API, "RecipeFormatVersion must be 2020-01-25".to_owned()));
        }
        if self.inner.catalogue.contains(name, version) || name.starts_with("aws.greengrass.") {
            return Err(crate::rejected(API, format!("{name} is a public component name")));
        }
        let inserted = self
            .write(API, |c| {
                let sql =
                    "INSERT OR IGNORE INTO private_components (name, version, recipe, created_at) VALUES (?, ?, ?, ?)";
                Ok(execute(c, sql, params![name, version, recipe.to_string(), Timestamp::now().as_millis()])?)
            })
            .await?;
        if inserted == 0 {
            return Err(CloudError::AlreadyExists {
                api: API,
                message: format!("component {name} version {version} already exists"),
                resource_id: None,
            });
        }
        Ok(())
    }

    async fn delete_component_version(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<(), CloudError> {
        const API: &str = "DeleteComponent";
        self.admit(API)?;
        self.write(API, |c| {
            let sql = "DELETE FROM private_components WHERE name = ? AND version = ?";
            Ok(execute(c, sql, [name.as_str(), version.as_str()]).map(drop)?)
        })
        .await
    }

    async fn get_core_device(&self, name: &ThingName) -> Result<Option<CoreDevice>, CloudError> {
        const API: &str = "GetCoreDevice";
        self.admit(API)?;
        let reads = &self.inner.reads;
        let at = reads.wal.current();
        if let Some(known) = reads.devices.get(at, name.as_str()) {
            return Ok(known);
        }
        let device = self.read(API, |c| {
            let sql =
                "SELECT status, core_version, platform, architecture, last_status_update FROM core_devices WHERE name = ?";
            Ok(one(c, sql, [name.as_str()], |r| {
                Ok(CoreDevice {
                    status: r.get("status")?,
                    core_version: r.get("core_version")?,
                    platform: r.get("platform")?,
                    architecture: r.get("architecture")?,
                    last_status_update_timestamp: Timestamp::from_millis(r.get("last_status_update")?),
                    tags: Default::default(),
                })
            })?)
        })?;
        reads.devices.put(at, name.as_str(), device.clone());
        Ok(device)
    }

    async fn delete_core_device(&self, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "DeleteCoreDevice";
        self.admit(API)?;
        self.write(API, |c| {
            for sql in [
                "DELETE FROM core_devices WHERE name = ?",
                "DELETE FROM installed_components WHERE core_name = ?",
                "DELETE FROM core_behaviors WHERE core_name = ?",
                "DELETE FROM containers WHERE core_name = ?",
                "DELETE FROM deployment_executions WHERE core_name = ?",
                "DELETE FROM client_device_associations WHERE core_name = ?",
            ] {
                execute(c, sql, [name.as_str()])?;
            }
            Ok(())
        })
        .await
    }

    async fn list_installed_components(&self, name: &ThingName) -> Result<Vec<InstalledComponent>, CloudError> {
        const API: &str = "ListInstalledComponents";
        self.admit(API)?;
        let reads = &self.inner.reads;
        let at = reads.wal.current();
        if let Some(known) = reads.installed.get(at, name.as_str()) {
            return Ok(known);
        }
        let (rows, containers) = self.read(API, |c| {
            let sql = "SELECT name, version FROM installed_components WHERE core_name = ? ORDER BY name";
            let rows: Vec<(String, String)> = all(c, sql, [name.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let sql = "SELECT component, service, image, state FROM containers WHERE core_name = ? ORDER BY component, service";
            let containers: Vec<(String, ContainerStatus)> = all(c, sql, [name.as_str()], |r| {
                Ok((
                    r.get("component")?,
                    ContainerStatus { service: r.get("service")?, image: r.get("image")?, state: r.get("state")? },
                ))
            })?;
            Ok((rows, containers))
        })?;
        let installed: Vec<InstalledComponent> = rows
            .into_iter()
            .map(|(component, version)| {
                let containers: Vec<ContainerStatus> =
                    containers.iter().filter(|(c, _)| *c == component).map(|(_, status)| status.clone()).collect();
                InstalledComponent { name: component, version, lifecycle_state: Some("RUNNING".to_owned()), containers }
            })
            .collect();
        reads.installed.put(at, name.as_str(), installed.clone());
        Ok(installed)
    }

    async fn list_effective_deployments(&self, name: &ThingName) -> Result<Vec<EffectiveDeployment>, CloudError> {
        self.admit("ListEffectiveDeployments")?;
        let reads = &self.inner.reads;
        let at = reads.wal.current();
        if let Some(known) = reads.effective.get(at, name.as_str()) {
            return Ok(known);
        }
        let effective = self.effective_deployments(name)?;
        reads.effective.put(at, name.as_str(), effective.clone());
        Ok(effective)
    }

    async fn associate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError> {
        const API: &str = "BatchAssociateClientDeviceWithCoreDevice";
        self.admit(API)?;
        self.check_batch(API, core, devices)?;
        self.write(API, |c| {
            let mut failed = Vec::new();
            for device in devices {
                if !exists(c, "SELECT 1 FROM things WHERE name = ?", [device.as_str()])? {
                    failed.push((device.clone(), format!("ResourceNotFoundException: thing {device} does not exist")));
                    continue;
                }
                execute(
                    c,
                    "INSERT OR IGNORE INTO client_device_associations (core_name, thing_name, associated_at) VALUES (?, ?, ?)",
                    params![core.as_str(), device.as_str(), Timestamp::now().as_millis()],
                )?;
            }
            Ok(failed)
        })
        .await
    }

    async fn disassociate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError> {
        const API: &str = "BatchDisassociateClientDeviceFromCoreDevice";
        self.admit(API)?;
        self.check_batch(API, core, devices)?;
        self.write(API, |c| {
            for device in devices {
                let sql = "DELETE FROM client_device_associations WHERE core_name = ? AND thing_name = ?";
                execute(c, sql, [core.as_str(), device.as_str()])?;
            }
            Ok(Vec::new())
        })
        .await
    }

    async fn create_deployment(&self, request: &DeploymentRequest) -> Result<String, CloudError> {
        let components: BTreeMap<String, crate::DeployedComponent> = request
            .components
            .iter()
            .map(|(name, spec)| {
                let component = crate::DeployedComponent {
                    component_version: spec.version.clone(),
                    configuration_update: spec.configuration_update.clone(),
                    run_with: spec.run_with.clone(),
                };
                (name.clone(), component)
            })
            .collect();
        LocalCloud::create_deployment(self, &request.thing_group, &request.deployment_name, &components).await
    }

    async fn find_deployment(&self, thing_group: &str, deployment_name: &str) -> Result<Option<String>, CloudError> {
        const API: &str = "ListDeployments";
        self.admit(API)?;
        self.read(API, |c| {
            let sql =
                "SELECT id FROM deployments WHERE group_name = ? AND name = ? ORDER BY created_at DESC, id LIMIT 1";
            Ok(one(c, sql, [thing_group, deployment_name], |r| r.get(0))?)
        })
    }

    async fn list_client_devices(&self, core: &ThingName) -> Result<Vec<ThingName>, CloudError> {
        const API: &str = "ListClientDevicesAssociatedWithCoreDevice";
        self.admit(API)?;
        let rows: Vec<String> = self.read(API, |c| {
            let sql = "SELECT thing_name FROM client_device_associations WHERE core_name = ? ORDER BY thing_name";
            Ok(all(c, sql, [core.as_str()], |r| r.get(0))?)
        })?;
        rows.iter().map(|n| ThingName::parse(n).map_err(|e| crate::rejected(API, e.to_string()))).collect()
    }
}

impl LocalCloud {
    /// Batch calls take 1 to 100 devices and need a registered core device.
    fn check_batch(&self, api: &'static str, core: &ThingName, devices: &[ThingName]) -> Result<(), CloudError> {
        if devices.is_empty() || devices.len() > 100 {
            return Err(crate::rejected(
                api,
                format!("{} entries; a batch holds 1 to 100 client devices", devices.len()),
            ));
        }
        let registered =
            self.read(api, |c| Ok(exists(c, "SELECT 1 FROM core_devices WHERE name = ?", [core.as_str()])?))?;
        if !registered {
            return Err(crate::not_found(api, format!("core device {core} is not registered with Greengrass")));
        }
        Ok(())
    }
}

#[async_trait]
impl PositionedStatusFeed for LocalCloud {
    async fn deployment_outcomes(&self, after: u64, limit: u32) -> Result<Vec<DeploymentOutcome>, CloudError> {
        Ok(self
            .deployment_status_events(after, limit)
            .await?
            .into_iter()
            .map(|e| DeploymentOutcome {
                position: e.sequence,
                core_name: e.core_name,
                deployment_id: e.deployment_id,
                succeeded: e.status == "SUCCEEDED",
                detailed_status: e.detailed_status,
                reason: e.reason,
                time: e.time,
                nucleus: None,
            })
            .collect())
    }
}

/// Core devices kept per database state at most (a bound, not a working-set estimate).
const MAX_CACHED_DEVICES: usize = 16_384;

/// The answers of `GetCoreDevice`, `ListInstalledComponents` and `ListEffectiveDeployments` by
/// core, exact per state of the local cloud's database (any commit empties them): the calls are
/// still admitted (counted, throttled by the simulated quotas) one by one.
pub(crate) struct DeviceReads {
    wal: WalIndex,
    devices: KeyedReadCache<Option<CoreDevice>>,
    installed: KeyedReadCache<Vec<InstalledComponent>>,
    effective: KeyedReadCache<Vec<EffectiveDeployment>>,
}

impl DeviceReads {
    pub(crate) fn over(db: &std::path::Path) -> Self {
        Self {
            wal: WalIndex::over(db),
            devices: KeyedReadCache::new(MAX_CACHED_DEVICES),
            installed: KeyedReadCache::new(MAX_CACHED_DEVICES),
            effective: KeyedReadCache::new(MAX_CACHED_DEVICES),
        }
    }

    pub(crate) fn current(&self) -> Option<ggprov_store_sqlite::read_cache::DbState> {
        self.wal.current()
    }
}
