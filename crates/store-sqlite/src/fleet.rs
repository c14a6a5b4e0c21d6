//! `FleetCounters` on SQLite: one row of counters per template version in `fleet_counters`,
//! moved by the domain's `FleetDelta` in the same transaction as every core change. The
//! recount groups the core rows by their stored deployment class, so no classification rule
//! is restated here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ggprov_domain::cores::{Core, TemplateRef, VersionCounts};
use ggprov_domain::deployment_state::{DeploymentStatus, FleetDelta};
use ggprov_domain::ports::{FleetCounters, StoreError};
use ggprov_domain::software::{SoftwareCounts, SoftwareDelta, SoftwareKey};
use ggprov_domain::{ThingName, Timestamp};
use rusqlite::Connection;

use crate::read_cache::{DbState, KeyedReadCache, WalIndex};
use crate::sql::{Row, query};
use crate::{SqliteStore, unavailable};

/// The fleet and software counters, the latest template versions and core records as last
/// read, each with the state of the database it was read at (see [`crate::read_cache`]): the
/// summaries and single reads stay exact, also with `api` and `worker` processes sharing one
/// data directory, and cost one `pread` of 96 bytes while nothing changes (decision 65).
#[derive(Debug)]
pub(crate) struct ReadModels {
    wal: WalIndex,
    fleet: Cached<BTreeMap<(String, u32), VersionCounts>>,
    software: Cached<BTreeMap<SoftwareKey, SoftwareCounts>>,
    /// Every template's latest version number (the fleet summary's `latestVersion`).
    latest_versions: Cached<Arc<BTreeMap<String, u32>>>,
    /// Latest template versions by name (`GET /templates/{name}`, and every deployment's
    /// template lookup).
    pub(crate) templates: KeyedReadCache<Option<Arc<ggprov_domain::Template>>>,
    /// Core records by name (`GET /cores/{name}`, and every worker step that reads a core).
    pub(crate) cores: KeyedReadCache<Option<Arc<Core>>>,
}

/// Templates and cores kept per database state at most (bounds, not working-set estimates).
const MAX_CACHED_TEMPLATES: usize = 4_096;
const MAX_CACHED_CORES: usize = 16_384;

/// A value and the database state it was read at.
type Cached<T> = Mutex<Option<(DbState, T)>>;

impl ReadModels {
    /// Read models over the database file at `db` (its `-shm` next to it).
    pub(crate) fn over(db: &std::path::Path) -> Self {
        Self {
            wal: WalIndex::over(db),
            fleet: Mutex::default(),
            software: Mutex::default(),
            latest_versions: Mutex::default(),
            templates: KeyedReadCache::new(MAX_CACHED_TEMPLATES),
            cores: KeyedReadCache::new(MAX_CACHED_CORES),
        }
    }

    /// The database's state now (see [`WalIndex::current`]).
    pub(crate) fn current(&self) -> Option<DbState> {
        self.wal.current()
    }

    /// The value of `slot` at the database state now: from memory when it was read at this
    /// state, otherwise from `read`, remembered with the state taken *before* the read (a
    /// commit during the read makes it stale at once).
    async fn read_through<T: Clone>(
        &self,
        slot: &Cached<T>,
        read: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let at = self.current();
        if let Some(at) = at
            && let Some((_, value)) = slot.lock().expect("read model lock").as_ref().filter(|(state, _)| *state == at)
        {
            return Ok(value.clone());
        }
        let value = read.await?;
        if let Some(at) = at {
            *slot.lock().expect("read model lock") = Some((at, value.clone()));
        }
        Ok(value)
    }
}

/// Adds a delta to the counters, inside the caller's transaction.
pub(crate) fn apply_delta(c: &Connection, delta: &FleetDelta) -> Result<(), StoreError> {
    for ((name, version), d) in delta.iter() {
        query(
            "INSERT INTO fleet_counters (template_name, template_version, desired_in_use, reported_in_use, last_success, last_failed, last_in_progress) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (template_name, template_version) DO UPDATE SET \
             desired_in_use = desired_in_use + excluded.desired_in_use, reported_in_use = reported_in_use + excluded.reported_in_use, \
             last_success = last_success + excluded.last_success, last_failed = last_failed + excluded.last_failed, \
             last_in_progress = last_in_progress + excluded.last_in_progress",
        )
        .bind(name)
        .bind(i64::from(*version))
        .bind(d.desired_in_use)
        .bind(d.reported_in_use)
        .bind(d.last_deployment_success)
        .bind(d.last_deployment_failed)
        .bind(d.last_deployment_in_progress)
        .execute(c)
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Adds a software delta to the software counters, inside the caller's transaction.
pub(crate) fn apply_software_delta(c: &Connection, delta: &SoftwareDelta) -> Result<(), StoreError> {
    for (key, d) in delta.iter() {
        query(
            "INSERT INTO fleet_software (nucleus, version, os, architecture, cores, updating) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (nucleus, version, os, architecture) DO UPDATE SET cores = cores + excluded.cores, \
             updating = updating + excluded.updating",
        )
        .bind(&key.nucleus)
        .bind(&key.version)
        .bind(&key.os)
        .bind(&key.architecture)
        .bind(d.cores)
        .bind(d.updating)
        .execute(c)
        .map_err(unavailable)?;
    }
    Ok(())
}

fn counts_from_rows(rows: &[Row]) -> BTreeMap<(String, u32), VersionCounts> {
    rows.iter()
        .map(|r| {
            let counts = VersionCounts {
                desired_in_use: r.get("desired_in_use"),
                reported_in_use: r.get("reported_in_use"),
                last_deployment_success: r.get("last_success"),
                last_deployment_failed: r.get("last_failed"),
                last_deployment_in_progress: r.get("last_in_progress"),
            };
            ((r.get("template_name"), r.get::<i64>("template_version") as u32), counts)
        })
        .filter(|(_, c)| !c.is_zero())
        .collect()
}

#[async_trait]
impl FleetCounters for SqliteStore {
    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        self.read_models
            .read_through(&self.read_models.fleet, async {
                let rows = query("SELECT * FROM fleet_counters").fetch_all(self.reader()).map_err(unavailable)?;
                Ok(counts_from_rows(&rows))
            })
            .await
    }

    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        let rows = query(
            "WITH desired AS (SELECT desired_name AS template_name, desired_version AS template_version, COUNT(*) AS desired_in_use, \
               SUM(deployment_state = 'success') AS last_success, SUM(deployment_state = 'failed') AS last_failed, \
               SUM(deployment_state = 'in_progress') AS last_in_progress FROM cores GROUP BY 1, 2), \
             reported AS (SELECT reported_name AS template_name, reported_version AS template_version, COUNT(*) AS reported_in_use FROM cores GROUP BY 1, 2), \
             keys AS (SELECT template_name, template_version FROM desired UNION SELECT template_name, template_version FROM reported) \
             SELECT k.template_name, k.template_version, COALESCE(d.desired_in_use, 0) AS desired_in_use, COALESCE(r.reported_in_use, 0) AS reported_in_use, \
               COALESCE(d.last_success, 0) AS last_success, COALESCE(d.last_failed, 0) AS last_failed, COALESCE(d.last_in_progress, 0) AS last_in_progress \
             FROM keys k LEFT JOIN desired d USING (template_name, template_version) LEFT JOIN reported r USING (template_name, template_version)",
        )
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        Ok(counts_from_rows(&rows))
    }

    async fn software_counters(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError> {
        self.read_models
            .read_through(&self.read_models.software, async {
                let rows = query("SELECT * FROM fleet_software WHERE cores != 0 OR updating != 0")
                    .fetch_all(self.reader())
                    .map_err(unavailable)?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let key = SoftwareKey {
                            nucleus: r.get("nucleus"),
                            version: r.get("version"),
                            os: r.get("os"),
                            architecture: r.get("architecture"),
                        };
                        (key, SoftwareCounts { cores: r.get("cores"), updating: r.get("updating") })
                    })
                    .collect())
            })
            .await
    }

    async fn recount_software(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError> {
        let rows = query("SELECT * FROM cores").fetch_all(self.reader()).map_err(unavailable)?;
        let cores = rows.iter().map(crate::rows::core_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(SoftwareDelta::recount(&cores))
    }
}

impl SqliteStore {
    /// Every template's latest version number, answered from memory while the database does
    /// not change (like the summaries).
    pub(crate) async fn all_latest_versions(&self) -> Result<Arc<BTreeMap<String, u32>>, StoreError> {
        self.read_models
            .read_through(&self.read_models.latest_versions, async {
                let rows = query("SELECT name, latest_version FROM template_heads")
                    .fetch_all(self.reader())
                    .map_err(unavailable)?;
                Ok(Arc::new(
                    rows.iter().map(|r| (r.get::<String>("name"), r.get::<i64>("latest_version") as u32)).collect(),
                ))
            })
            .await
    }

    /// Inserts `cores` cores spread over `versions` template versions, 8 nucleus versions and
    /// 4 platforms, with their counters, for benchmarks (one transaction; not used by the
    /// service).
    pub async fn seed_fleet_for_benchmarks(&self, cores: u32, versions: u32) -> Result<(), StoreError> {
        self.write(|c| {
            for i in 0..cores {
                let version = i % versions.max(1) + 1;
                let name =
                    ThingName::parse(&format!("bench-{i:06}")).map_err(|e| StoreError::unavailable(e.to_string()))?;
                let mut core = Core::new(name, "greengrass2_core".into(), Timestamp::from_millis(0).expect("epoch"));
                core.desired = TemplateRef { name: "bench".into(), version };
                core.reported = core.desired.clone();
                core.deployment_status = DeploymentStatus::Successful;
                let (os, architecture) =
                    [("linux", "amd64"), ("linux", "aarch64"), ("linux", "arm"), ("windows", "amd64")]
                        [(i % 4) as usize];
                core.software = ggprov_domain::software::CoreSoftware {
                    nucleus: Some(ggprov_domain::software::NUCLEUS.to_owned()),
                    nucleus_version: Some(format!("2.{}.0", 10 + i % 8)),
                    os: Some(os.to_owned()),
                    architecture: Some(architecture.to_owned()),
                    ..Default::default()
                };
                crate::cores::write_core(c, None, Some(&core))?;
            }
            Ok(())
        })
        .await
    }
}
