//! Fleet counters: each core contributes +1 to `desired_in_use` and to one of the
//! last-deployment counters of its desired version, and +1 to `reported_in_use` of its
//! reported version. Every change of a core record moves the counters by the difference of
//! its contribution before and after, in the same transaction.

use std::collections::BTreeMap;

use ggprov_domain::cores::{DeploymentState, VersionCounts};
use ggprov_domain::ports::StoreError;
use sqlx::{Row, Sqlite, Transaction};

use crate::unavailable;

/// What one core adds to the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Contribution {
    desired: (String, i64),
    reported: (String, i64),
    state: DeploymentState,
}

/// The contribution of a core as stored now (inside the transaction).
pub(crate) async fn contribution(
    tx: &mut Transaction<'static, Sqlite>,
    name: &str,
) -> Result<Option<Contribution>, StoreError> {
    let row = sqlx::query("SELECT desired_name, desired_version, reported_name, reported_version, deployment_status FROM cores WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(row.map(|r| Contribution {
        desired: (r.get("desired_name"), r.get("desired_version")),
        reported: (r.get("reported_name"), r.get("reported_version")),
        state: DeploymentState::of(r.get::<&str, _>("deployment_status")),
    }))
}

fn state_column(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::Success => "last_success",
        DeploymentState::Failed => "last_failed",
        DeploymentState::InProgress => "last_in_progress",
    }
}

async fn add(
    tx: &mut Transaction<'static, Sqlite>,
    (name, version): &(String, i64),
    column: &str,
    delta: i64,
) -> Result<(), StoreError> {
    // The column names come from this module only.
    let sql = format!(
        "INSERT INTO fleet_counters (template_name, template_version, {column}) VALUES (?, ?, ?) \
         ON CONFLICT (template_name, template_version) DO UPDATE SET {column} = {column} + excluded.{column}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(version)
        .bind(delta)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Moves the counters from `before` to `after` (either may be absent: a core created or deleted).
pub(crate) async fn apply_delta(
    tx: &mut Transaction<'static, Sqlite>,
    before: Option<&Contribution>,
    after: Option<&Contribution>,
) -> Result<(), StoreError> {
    if before == after {
        return Ok(());
    }
    for (contribution, sign) in [(before, -1), (after, 1)] {
        if let Some(c) = contribution {
            add(tx, &c.desired, "desired_in_use", sign).await?;
            add(tx, &c.desired, state_column(c.state), sign).await?;
            add(tx, &c.reported, "reported_in_use", sign).await?;
        }
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

pub(crate) async fn counters(pool: &sqlx::SqlitePool) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
    let rows = sqlx::query("SELECT * FROM fleet_counters").fetch_all(pool).await.map_err(unavailable)?;
    Ok(counts_from_rows(&rows))
}

/// The counters computed from the core records alone.
pub(crate) async fn recount(pool: &sqlx::SqlitePool) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
    let rows = sqlx::query(
        "WITH desired AS (SELECT desired_name AS template_name, desired_version AS template_version, COUNT(*) AS desired_in_use, \
           SUM(deployment_status IN ('None', 'SUCCESSFUL')) AS last_success, \
           SUM(deployment_status NOT IN ('None', 'SUCCESSFUL', 'IN_PROGRESS')) AS last_failed, \
           SUM(deployment_status = 'IN_PROGRESS') AS last_in_progress FROM cores GROUP BY 1, 2), \
         reported AS (SELECT reported_name AS template_name, reported_version AS template_version, COUNT(*) AS reported_in_use FROM cores GROUP BY 1, 2), \
         keys AS (SELECT template_name, template_version FROM desired UNION SELECT template_name, template_version FROM reported) \
         SELECT k.template_name, k.template_version, COALESCE(d.desired_in_use, 0) AS desired_in_use, COALESCE(r.reported_in_use, 0) AS reported_in_use, \
           COALESCE(d.last_success, 0) AS last_success, COALESCE(d.last_failed, 0) AS last_failed, COALESCE(d.last_in_progress, 0) AS last_in_progress \
         FROM keys k LEFT JOIN desired d USING (template_name, template_version) LEFT JOIN reported r USING (template_name, template_version)",
    )
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok(counts_from_rows(&rows))
}

impl crate::SqliteStore {
    /// Inserts `cores` cores spread over `versions` template versions, with their counters,
    /// for benchmarks (one transaction; not used by the service).
    pub async fn seed_fleet_for_benchmarks(&self, cores: u32, versions: u32) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for i in 0..cores {
            let version = i64::from(i % versions.max(1)) + 1;
            sqlx::query(
                "INSERT INTO cores (name, provisioning_template, desired_name, desired_version, reported_name, reported_version, \
                 deployment_status, artifacts, created_at) VALUES (?, 'greengrass2_core', 'bench', ?, 'bench', ?, 'SUCCESSFUL', '{}', 0)",
            )
            .bind(format!("bench-{i:06}"))
            .bind(version)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            let after = contribution(&mut tx, &format!("bench-{i:06}")).await?;
            apply_delta(&mut tx, None, after.as_ref()).await?;
        }
        tx.commit().await.map_err(unavailable)
    }
}
