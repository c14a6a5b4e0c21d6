//! Simulated core devices: they connect (register with Greengrass) when "powered on", can be
//! disconnected, and are told how their next deployments end.

use async_trait::async_trait;
use ggprov_domain::ports::{CloudError, ProvisioningObserver};
use ggprov_domain::{ThingName, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{LocalCloud, db, not_found, rejected};

/// How a simulated core's deployments end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentOutcome {
    #[default]
    Succeeded,
    Failed,
    NoResponse,
}

impl DeploymentOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::NoResponse => "NO_RESPONSE",
        }
    }
}

/// `PUT /local-cloud/cores/{name}/behavior`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreBehavior {
    #[serde(default)]
    pub deployment_outcome: DeploymentOutcome,
    /// How long the core takes to report an outcome.
    #[serde(default)]
    pub delay_ms: u64,
    /// Deployments with a Docker Compose application fail: its images do not pull.
    #[serde(default)]
    pub image_pull_error: bool,
    /// Deployments that change the nucleus version fail, and the core rolls back to the
    /// nucleus it ran.
    #[serde(default)]
    pub nucleus_update_fails: bool,
    /// Certificate rotations fail: the core cannot use the new certificate and keeps its old one.
    #[serde(default)]
    pub rotation_fails: bool,
}

/// The platforms simulated cores get unless told otherwise, by a hash of the name (FNV-1a):
/// 60 % linux/amd64, 25 % linux/aarch64, 10 % linux/arm, 5 % windows/amd64.
pub(crate) fn default_platform(name: &str) -> (&'static str, &'static str) {
    match ggprov_domain::hash::fnv1a(name.as_bytes()) % 100 {
        0..60 => ("linux", "amd64"),
        60..85 => ("linux", "aarch64"),
        85..95 => ("linux", "arm"),
        _ => ("windows", "amd64"),
    }
}

/// A thing as the simulated registry holds it (`GET /local-cloud/things/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingView {
    pub name: String,
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing_type: Option<String>,
    pub attributes: serde_json::Value,
    pub groups: Vec<String>,
    /// Policies attached to its thing groups: every certificate of the thing has them too
    /// (policy inheritance, for a device whose client id is the thing name).
    #[serde(default)]
    pub inherited_policies: Vec<String>,
    pub principals: Vec<PrincipalView>,
}

/// A certificate attached to a thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalView {
    pub arn: String,
    pub certificate_id: String,
    /// `ACTIVE`, `INACTIVE`, `REVOKED`, or `DELETED` when the certificate no longer exists.
    pub status: String,
    pub policies: Vec<String>,
    /// SHA-256 of the certificate's public key (compare with a rotated core's credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_sha256: Option<String>,
}

const DEFAULT_NUCLEUS: &str = "2.12.0";

/// The ACTIVE certificates attached to a thing (binds: the certificate ARN prefix's length + 1,
/// the prefix, the thing). A certificate is found by its id, the principal's tail, not by
/// building every certificate's ARN: that scanned the whole table once a core (decision 82).
const ACTIVE_CERTIFICATES_OF_THING: &str = "SELECT COUNT(*) AS n FROM thing_principals p \
     JOIN certificates c ON c.id = substr(p.principal, ?) AND p.principal = ? || c.id \
     WHERE p.thing_name = ? AND c.status = 'ACTIVE'";

/// Things provisioned as cores that have not connected (binds: the certificate ARN prefix's
/// length + 1, the prefix, the core policy, the thing-group ARN prefix, the core policy).
const UNCONNECTED_CORES: &str = "SELECT DISTINCT p.thing_name FROM thing_principals p \
     JOIN certificates c ON c.id = substr(p.principal, ?) AND p.principal = ? || c.id AND c.status = 'ACTIVE' \
     WHERE p.thing_name NOT IN (SELECT name FROM core_devices) AND ( \
       EXISTS (SELECT 1 FROM policy_targets t WHERE t.target = p.principal AND t.policy_name = ?) \
       OR EXISTS (SELECT 1 FROM thing_group_members m JOIN policy_targets t ON t.target = ? || m.group_name \
                  WHERE m.thing_name = p.thing_name AND t.policy_name = ?))";

impl LocalCloud {
    /// The first two binds of the queries above: where a certificate principal's id starts
    /// (1-based), and the ARN prefix before it.
    fn certificate_principal(&self) -> (i64, String) {
        let prefix = self.cert_arn("");
        (i64::try_from(prefix.len() + 1).unwrap_or(i64::MAX), prefix)
    }

    /// "Powers on" a core: it authenticates with an active certificate attached to its thing
    /// and registers with Greengrass as `HEALTHY`, running the nucleus.
    pub async fn connect_core(&self, name: &ThingName, nucleus_version: Option<&str>) -> Result<(), CloudError> {
        const API: &str = "Connect";
        let (id_from, prefix) = self.certificate_principal();
        let active = sqlx::query(ACTIVE_CERTIFICATES_OF_THING)
            .bind(id_from)
            .bind(prefix)
            .bind(name.as_str())
            .fetch_one(self.pool())
            .await
            .map_err(db(API))?
            .get::<i64, _>("n");
        if active == 0 {
            let exists = sqlx::query("SELECT 1 FROM things WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(self.pool())
                .await
                .map_err(db(API))?;
            return Err(if exists.is_none() {
                not_found(API, format!("thing {name} does not exist"))
            } else {
                rejected(API, format!("core {name} cannot connect: its thing has no ACTIVE certificate attached"))
            });
        }
        let version = nucleus_version.unwrap_or(DEFAULT_NUCLEUS);
        let now = Timestamp::now().as_millis();
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await.map_err(db(API))?;
        let (os, architecture) = match sqlx::query("SELECT os, architecture FROM core_platforms WHERE core_name = ?")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(API))?
        {
            Some(row) => (row.get::<String, _>("os"), row.get::<String, _>("architecture")),
            None => {
                let (os, arch) = default_platform(name.as_str());
                (os.to_owned(), arch.to_owned())
            }
        };
        sqlx::query(
            "INSERT INTO core_devices (name, status, core_version, platform, architecture, last_status_update) \
             VALUES (?, 'HEALTHY', ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET status = 'HEALTHY', last_status_update = excluded.last_status_update",
        )
        .bind(name.as_str())
        .bind(version)
        .bind(os)
        .bind(architecture)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db(API))?;
        sqlx::query("INSERT OR IGNORE INTO installed_components (core_name, name, version) VALUES (?, 'aws.greengrass.Nucleus', ?)")
            .bind(name.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db(API))?;
        tx.commit().await.map_err(db(API))?;
        // A core that comes online applies the deployments of its groups.
        self.start_applying(name.as_str().to_owned());
        Ok(())
    }

    /// Simulated devices boot on their own, whatever happens to ggprov: every thing provisioned
    /// as a core (the core policy on an ACTIVE certificate attached to it, or on one of its
    /// thing groups) that has not
    /// registered with Greengrass yet connects now. Called when the local cloud opens, so a
    /// ggprov that died between recording a core and "powering it on" loses nothing.
    pub(crate) async fn power_on_provisioned_cores(&self) -> Result<(), CloudError> {
        let (id_from, prefix) = self.certificate_principal();
        let rows = sqlx::query(UNCONNECTED_CORES)
            .bind(id_from)
            .bind(prefix)
            .bind(crate::CORE_POLICY)
            .bind(crate::thing_group_arn(self.region(), ""))
            .bind(crate::CORE_POLICY)
            .fetch_all(self.pool())
            .await
            .map_err(db("Connect"))?;
        for row in rows {
            if let Ok(name) = ThingName::parse(row.get::<&str, _>("thing_name")) {
                self.connect_core(&name, None).await?;
            }
        }
        Ok(())
    }

    /// Starts applying pending deployments if the thing is a connected core.
    pub(crate) async fn apply_if_connected(&self, name: &ThingName) -> Result<(), CloudError> {
        let connected = sqlx::query("SELECT 1 FROM core_devices WHERE name = ? AND status = 'HEALTHY'")
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db("AddThingToThingGroup"))?;
        if connected.is_some() {
            self.start_applying(name.as_str().to_owned());
        }
        Ok(())
    }

    /// The core goes offline: Greengrass reports it `UNHEALTHY`.
    pub async fn disconnect_core(&self, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "Disconnect";
        let updated =
            sqlx::query("UPDATE core_devices SET status = 'UNHEALTHY', last_status_update = ? WHERE name = ?")
                .bind(Timestamp::now().as_millis())
                .bind(name.as_str())
                .execute(self.writer())
                .await
                .map_err(db(API))?;
        if updated.rows_affected() == 0 {
            return Err(not_found(API, format!("core {name} has never connected")));
        }
        Ok(())
    }

    /// A share (0–1) of the cores registered with Greengrass, by a hash of their names (FNV-1a):
    /// the same share picks the same cores, spread over the name order.
    pub async fn core_share(&self, share: f64) -> Result<Vec<ThingName>, CloudError> {
        let rows = sqlx::query("SELECT name FROM core_devices ORDER BY name")
            .fetch_all(self.pool())
            .await
            .map_err(db("CoreShare"))?;
        let picked = |name: &str| ((ggprov_domain::hash::fnv1a(name.as_bytes()) % 10_000) as f64) < share * 10_000.0;
        Ok(rows
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .filter(|n| picked(n))
            .filter_map(|n| ThingName::parse(&n).ok())
            .collect())
    }

    pub async fn set_core_behavior(&self, name: &ThingName, behavior: CoreBehavior) -> Result<(), CloudError> {
        sqlx::query(
            "INSERT INTO core_behaviors (core_name, deployment_outcome, delay_ms, image_pull_error, nucleus_update_fails, rotation_fails) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (core_name) DO UPDATE SET deployment_outcome = excluded.deployment_outcome, delay_ms = excluded.delay_ms, \
             image_pull_error = excluded.image_pull_error, nucleus_update_fails = excluded.nucleus_update_fails, rotation_fails = excluded.rotation_fails",
        )
        .bind(name.as_str())
        .bind(behavior.deployment_outcome.as_str())
        .bind(i64::try_from(behavior.delay_ms).unwrap_or(i64::MAX))
        .bind(behavior.image_pull_error)
        .bind(behavior.nucleus_update_fails)
        .bind(behavior.rotation_fails)
        .execute(self.writer())
        .await
        .map_err(db("SetBehavior"))?;
        Ok(())
    }

    /// Sets the platform a core reports: now if it is connected, and whenever it connects.
    pub async fn set_core_platform(&self, name: &ThingName, os: &str, architecture: &str) -> Result<(), CloudError> {
        const API: &str = "SetPlatform";
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await.map_err(db(API))?;
        sqlx::query(
            "INSERT INTO core_platforms (core_name, os, architecture) VALUES (?, ?, ?) \
             ON CONFLICT (core_name) DO UPDATE SET os = excluded.os, architecture = excluded.architecture",
        )
        .bind(name.as_str())
        .bind(os)
        .bind(architecture)
        .execute(&mut *tx)
        .await
        .map_err(db(API))?;
        sqlx::query("UPDATE core_devices SET platform = ?, architecture = ? WHERE name = ?")
            .bind(os)
            .bind(architecture)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(API))?;
        tx.commit().await.map_err(db(API))
    }

    /// The thing with its groups, principals (certificate status) and their policies.
    pub async fn thing_view(&self, name: &ThingName) -> Result<Option<ThingView>, CloudError> {
        const API: &str = "DescribeThing";
        let pool = self.pool();
        let Some(thing) = sqlx::query("SELECT thing_type, attributes FROM things WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db(API))?
        else {
            return Ok(None);
        };
        let groups = sqlx::query("SELECT group_name FROM thing_group_members WHERE thing_name = ? ORDER BY group_name")
            .bind(name.as_str())
            .fetch_all(pool)
            .await
            .map_err(db(API))?
            .iter()
            .map(|r| r.get("group_name"))
            .collect();
        let inherited_policies = sqlx::query(
            "SELECT DISTINCT t.policy_name FROM thing_group_members m \
             JOIN policy_targets t ON t.target = ? || m.group_name \
             WHERE m.thing_name = ? ORDER BY t.policy_name",
        )
        .bind(crate::thing_group_arn(self.region(), ""))
        .bind(name.as_str())
        .fetch_all(pool)
        .await
        .map_err(db(API))?
        .iter()
        .map(|r| r.get("policy_name"))
        .collect();
        let mut principals = Vec::new();
        let rows = sqlx::query("SELECT principal FROM thing_principals WHERE thing_name = ? ORDER BY principal")
            .bind(name.as_str())
            .fetch_all(pool)
            .await
            .map_err(db(API))?;
        for row in rows {
            let arn: String = row.get("principal");
            let certificate_id = arn.rsplit_once(":cert/").map_or_else(String::new, |(_, id)| id.to_owned());
            let certificate = sqlx::query("SELECT status, pem FROM certificates WHERE id = ?")
                .bind(&certificate_id)
                .fetch_optional(pool)
                .await
                .map_err(db(API))?;
            let status = certificate.as_ref().map_or_else(|| "DELETED".to_owned(), |r| r.get("status"));
            let public_key_sha256 =
                certificate.and_then(|r| ggprov_pki::public_key_sha256(r.get::<&str, _>("pem")).ok());
            let policies = sqlx::query("SELECT policy_name FROM policy_targets WHERE target = ? ORDER BY policy_name")
                .bind(&arn)
                .fetch_all(pool)
                .await
                .map_err(db(API))?
                .iter()
                .map(|r| r.get("policy_name"))
                .collect();
            principals.push(PrincipalView { arn, certificate_id, status, policies, public_key_sha256 });
        }
        Ok(Some(ThingView {
            name: name.as_str().to_owned(),
            arn: self.thing_arn(name.as_str()),
            thing_type: thing.get("thing_type"),
            attributes: serde_json::from_str(thing.get::<&str, _>("attributes")).unwrap_or_default(),
            groups,
            inherited_policies,
            principals,
        }))
    }

    /// Counts of what the simulated registry holds (for tests and the reliability harness).
    pub async fn inventory(&self) -> Result<Inventory, CloudError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM things) AS things, (SELECT COUNT(*) FROM certificates) AS certificates, \
             (SELECT COUNT(*) FROM certificates WHERE status = 'ACTIVE') AS active_certificates, \
             (SELECT COUNT(*) FROM core_devices) AS core_devices, (SELECT COUNT(*) FROM policies) AS policies, \
             (SELECT COUNT(*) FROM deployments) AS deployments",
        )
        .fetch_one(self.pool())
        .await
        .map_err(db("Inventory"))?;
        Ok(Inventory {
            things: row.get::<i64, _>("things") as u64,
            certificates: row.get::<i64, _>("certificates") as u64,
            active_certificates: row.get::<i64, _>("active_certificates") as u64,
            core_devices: row.get::<i64, _>("core_devices") as u64,
            policies: row.get::<i64, _>("policies") as u64,
            deployments: row.get::<i64, _>("deployments") as u64,
        })
    }
}

/// Counts of simulated resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub things: u64,
    pub certificates: u64,
    pub active_certificates: u64,
    pub core_devices: u64,
    pub policies: u64,
    pub deployments: u64,
}

#[async_trait]
impl ProvisioningObserver for LocalCloud {
    async fn core_provisioned(&self, name: &ThingName, nucleus_version: &str) {
        if !self.inner.settings.auto_connect {
            return;
        }
        if let Err(err) = self.connect_core(name, Some(nucleus_version)).await {
            tracing::warn!(core.name = %name, error = %err, "simulated core could not connect");
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// Each core's power-on asks for its thing's ACTIVE certificates. Joined on a built ARN,
    /// the query read every certificate: 10,000 cores cost twice the CPU a core of 3,000 did.
    #[tokio::test]
    async fn certificates_are_looked_up_by_id_never_scanned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = crate::LocalCloudSettings {
            region: "eu-west-1".into(),
            auto_connect: false,
            private_components: Vec::new(),
        };
        let cloud = LocalCloud::open(&dir.path().join("cloud.sqlite"), settings).await.expect("opens");
        for sql in [ACTIVE_CERTIFICATES_OF_THING, UNCONNECTED_CORES] {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..sql.matches('?').count() {
                query = query.bind(None::<String>);
            }
            let plan: Vec<String> =
                query.fetch_all(cloud.pool()).await.expect("plans").iter().map(|r| r.get("detail")).collect();
            assert!(plan.iter().any(|step| step.starts_with("SEARCH c USING PRIMARY KEY")), "{sql}: {plan:?}");
            assert!(!plan.iter().any(|step| step == "SCAN c" || step.starts_with("SCAN c ")), "{sql}: {plan:?}");
        }
    }
}
