//! `FleetCounters` on SQLite: one row of counters per template version in `fleet_counters`,
//! moved by the domain's `FleetDelta` in the same transaction as every core change. The
//! recount groups the core rows by their stored deployment class, so no classification rule
//! is restated here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ggprov_domain::cores::{Core, TemplateRef, VersionCounts};
use ggprov_domain::deployment_state::{DeploymentStatus, FleetDelta};
use ggprov_domain::ports::{FleetCounters, StoreError};
use ggprov_domain::software::{SoftwareCounts, SoftwareDelta, SoftwareKey};
use ggprov_domain::{ThingName, Timestamp};
use sqlx::{Row, Sqlite, Transaction};

use crate::{SqliteStore, unavailable};

/// Adds a delta to the counters, inside the caller's transaction.
pub(crate) async fn apply_delta(tx: &mut Transaction<'static, Sqlite>, delta: &FleetDelta) -> Result<(), StoreError> {
    for ((name, version), d) in delta.iter() {
        sqlx::query(
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
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Adds a software delta to the software counters, inside the caller's transaction.
pub(crate) async fn apply_software_delta(
    tx: &mut Transaction<'static, Sqlite>,
    delta: &SoftwareDelta,
) -> Result<(), StoreError> {
    for (key, d) in delta.iter() {
        sqlx::query(
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
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

fn counts_from_rows(rows: &[sqlx::sqlite::SqliteRow]) -> BTreeMap<(String, u32), VersionCounts> {
    rows.iter()
        .map(|r| {
            let counts = VersionCounts {
                desired_in_use: r.get("desired_in_use"),
                reported_in_use: r.get("reported_in_use"),
                last_deployment_success: r.get("last_success"),
                last_deployment_failed: r.get("last_failed"),
                last_deployment_in_progress: r.get("last_in_progress"),
            };
            ((r.get("template_name"), r.get::<i64, _>("template_version") as u32), counts)
        })
        .filter(|(_, c)| !c.is_zero())
        .collect()
}

#[async_trait]
impl FleetCounters for SqliteStore {
    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        let rows = sqlx::query("SELECT * FROM fleet_counters").fetch_all(&self.pool).await.map_err(unavailable)?;
        Ok(counts_from_rows(&rows))
    }

    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        let rows = sqlx::query(
            "WITH desired AS (SELECT desired_name AS template_name, desired_version AS template_version, COUNT(*) AS desired_in_use, \
               SUM(deployment_state = 'success') AS last_success, SUM(deployment_state = 'failed') AS last_failed, \
               SUM(deployment_state = 'in_progress') AS last_in_progress FROM cores GROUP BY 1, 2), \
             reported AS (SELECT reported_name AS template_name, reported_version AS template_version, COUNT(*) AS reported_in_use FROM cores GROUP BY 1, 2), \
             keys AS (SELECT template_name, template_version FROM desired UNION SELECT template_name, template_version FROM reported) \
             SELECT k.template_name, k.template_version, COALESCE(d.desired_in_use, 0) AS desired_in_use, COALESCE(r.reported_in_use, 0) AS reported_in_use, \
               COALESCE(d.last_success, 0) AS last_success, COALESCE(d.last_failed, 0) AS last_failed, COALESCE(d.last_in_progress, 0) AS last_in_progress \
             FROM keys k LEFT JOIN desired d USING (template_name, template_version) LEFT JOIN reported r USING (template_name, template_version)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(counts_from_rows(&rows))
    }

    async fn software_counters(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError> {
        let rows = sqlx::query("SELECT * FROM fleet_software WHERE cores != 0 OR updating != 0")
            .fetch_all(&self.pool)
            .await
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
    }

    async fn recount_software(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError> {
        let rows = sqlx::query("SELECT * FROM cores").fetch_all(&self.pool).await.map_err(unavailable)?;
        let cores = rows.iter().map(crate::rows::core_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(SoftwareDelta::recount(&cores))
    }
}

impl SqliteStore {
    /// Inserts `cores` cores spread over `versions` template versions, with their counters,
    /// for benchmarks (one transaction; not used by the service).
    pub async fn seed_fleet_for_benchmarks(&self, cores: u32, versions: u32) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for i in 0..cores {
            let version = i % versions.max(1) + 1;
            let name =
                ThingName::parse(&format!("bench-{i:06}")).map_err(|e| StoreError::unavailable(e.to_string()))?;
            let mut core = Core::new(name, "greengrass2_core".into(), Timestamp::from_millis(0).expect("epoch"));
            core.desired = TemplateRef { name: "bench".into(), version };
            core.reported = core.desired.clone();
            core.deployment_status = DeploymentStatus::Successful;
            crate::cores::write_core(&mut tx, None, Some(&core)).await?;
        }
        tx.commit().await.map_err(unavailable)
    }
}
