//! Simulated core devices: they connect (register with Greengrass) when "powered on", can be
//! disconnected, and are told how their next deployments end.

use crate::{LocalCloud, all, execute, exists, not_found, one, params, rejected};
use async_trait::async_trait;
use ggprov_domain::ports::{CloudError, ProvisioningObserver};
use ggprov_domain::{ThingName, Timestamp};
use serde::{Deserialize, Serialize};

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
        let version = nucleus_version.unwrap_or(DEFAULT_NUCLEUS);
        let now = Timestamp::now().as_millis();
        // The check of its certificate and the registration in one write: a certificate
        // revoked meanwhile cannot connect the core.
        self.write(API, |c| {
            let active: i64 =
                c.prepare_cached(ACTIVE_CERTIFICATES_OF_THING)?.query_row(params![id_from, prefix, name.as_str()], |r| r.get(0))?;
            if active == 0 {
                return Err(if exists(c, "SELECT 1 FROM things WHERE name = ?", [name.as_str()])? {
                    rejected(API, format!("core {name} cannot connect: its thing has no ACTIVE certificate attached"))
                } else {
                    not_found(API, format!("thing {name} does not exist"))
                }
                .into());
            }
            let sql = "SELECT os, architecture FROM core_platforms WHERE core_name = ?";
            let (os, architecture) = match one(c, sql, [name.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                Some(platform) => platform,
                None => {
                    let (os, arch) = default_platform(name.as_str());
                    (os.to_owned(), arch.to_owned())
                }
            };
            execute(
                c,
                "INSERT INTO core_devices (name, status, core_version, platform, architecture, last_status_update) \
                 VALUES (?, 'HEALTHY', ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET status = 'HEALTHY', last_status_update = excluded.last_status_update",
                params![name.as_str(), version, os, architecture, now],
            )?;
            execute(
                c,
                "INSERT OR IGNORE INTO installed_components (core_name, name, version) VALUES (?, 'aws.greengrass.Nucleus', ?)",
                [name.as_str(), version],
            )?;
            Ok(())
        })
        .await?;
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
        let rows: Vec<String> = self.read("Connect", |c| {
            let groups = crate::thing_group_arn(self.region(), "");
            let binds = params![id_from, prefix, crate::CORE_POLICY, groups, crate::CORE_POLICY];
            Ok(all(c, UNCONNECTED_CORES, binds, |r| r.get(0))?)
        })?;
        for row in rows {
            if let Ok(name) = ThingName::parse(&row) {
                self.connect_core(&name, None).await?;
            }
        }
        Ok(())
    }

    /// Starts applying pending deployments if the thing is a connected core.
    pub(crate) fn apply_if_connected(&self, name: &ThingName) -> Result<(), CloudError> {
        let connected = self.read("AddThingToThingGroup", |c| {
            Ok(exists(c, "SELECT 1 FROM core_devices WHERE name = ? AND status = 'HEALTHY'", [name.as_str()])?)
        })?;
        if connected {
            self.start_applying(name.as_str().to_owned());
        }
        Ok(())
    }

    /// The core goes offline: Greengrass reports it `UNHEALTHY`.
    pub async fn disconnect_core(&self, name: &ThingName) -> Result<(), CloudError> {
        const API: &str = "Disconnect";
        let updated = self
            .write(API, |c| {
                let sql = "UPDATE core_devices SET status = 'UNHEALTHY', last_status_update = ? WHERE name = ?";
                Ok(execute(c, sql, params![Timestamp::now().as_millis(), name.as_str()])?)
            })
            .await?;
        if updated == 0 {
            return Err(not_found(API, format!("core {name} has never connected")));
        }
        Ok(())
    }

    /// A share (0–1) of the cores registered with Greengrass, by a hash of their names (FNV-1a):
    /// the same share picks the same cores, spread over the name order.
    pub async fn core_share(&self, share: f64) -> Result<Vec<ThingName>, CloudError> {
        let rows: Vec<String> =
            self.read("CoreShare", |c| Ok(all(c, "SELECT name FROM core_devices ORDER BY name", [], |r| r.get(0))?))?;
        let picked = |name: &str| ((ggprov_domain::hash::fnv1a(name.as_bytes()) % 10_000) as f64) < share * 10_000.0;
        Ok(rows.into_iter().filter(|n| picked(n)).filter_map(|n| ThingName::parse(&n).ok()).collect())
    }

    pub async fn set_core_behavior(&self, name: &ThingName, behavior: CoreBehavior) -> Result<(), CloudError> {
        self.write("SetBehavior", |c| {
            execute(
                c,
                "INSERT INTO core_behaviors (core_name, deployment_outcome, delay_ms, image_pull_error, nucleus_update_fails, rotation_fails) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (core_name) DO UPDATE SET deployment_outcome = excluded.deployment_outcome, delay_ms = excluded.delay_ms, \
                 image_pull_error = excluded.image_pull_error, nucleus_update_fails = excluded.nucleus_update_fails, rotation_fails = excluded.rotation_fails",
                params![
                    name.as_str(),
                    behavior.deployment_outcome.as_str(),
                    i64::try_from(behavior.delay_ms).unwrap_or(i64::MAX),
                    behavior.image_pull_error,
                    behavior.nucleus_update_fails,
                    behavior.rotation_fails
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Sets the platform a core reports: now if it is connected, and whenever it connects.
    pub async fn set_core_platform(&self, name: &ThingName, os: &str, architecture: &str) -> Result<(), CloudError> {
        const API: &str = "SetPlatform";
        self.write(API, |c| {
            execute(
                c,
                "INSERT INTO core_platforms (core_name, os, architecture) VALUES (?, ?, ?) \
                 ON CONFLICT (core_name) DO UPDATE SET os = excluded.os, architecture = excluded.architecture",
                [name.as_str(), os, architecture],
            )?;
            let sql = "UPDATE core_devices SET platform = ?, architecture = ? WHERE name = ?";
            execute(c, sql, [os, architecture, name.as_str()])?;
            Ok(())
        })
        .await
    }

    /// The thing with its groups, principals (certificate status) and their policies.
    pub async fn thing_view(&self, name: &ThingName) -> Result<Option<ThingView>, CloudError> {
        const API: &str = "DescribeThing";
        let group_prefix = crate::thing_group_arn(self.region(), "");
        self.read(API, |c| {
            let sql = "SELECT thing_type, attributes FROM things WHERE name = ?";
            let thing = one(c, sql, [name.as_str()], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?)))?;
            let Some((thing_type, attributes)) = thing else {
                return Ok(None);
            };
            let sql = "SELECT group_name FROM thing_group_members WHERE thing_name = ? ORDER BY group_name";
            let groups = all(c, sql, [name.as_str()], |r| r.get(0))?;
            let sql = "SELECT DISTINCT t.policy_name FROM thing_group_members m \
                 JOIN policy_targets t ON t.target = ? || m.group_name \
                 WHERE m.thing_name = ? ORDER BY t.policy_name";
            let inherited_policies = all(c, sql, [group_prefix.as_str(), name.as_str()], |r| r.get(0))?;
            let sql = "SELECT principal FROM thing_principals WHERE thing_name = ? ORDER BY principal";
            let arns: Vec<String> = all(c, sql, [name.as_str()], |r| r.get(0))?;
            let mut principals = Vec::new();
            for arn in arns {
                let certificate_id = arn.rsplit_once(":cert/").map_or_else(String::new, |(_, id)| id.to_owned());
                let sql = "SELECT status, pem FROM certificates WHERE id = ?";
                let certificate =
                    one(c, sql, [&certificate_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let sql = "SELECT policy_name FROM policy_targets WHERE target = ? ORDER BY policy_name";
                let policies = all(c, sql, [&arn], |r| r.get(0))?;
                let (status, public_key_sha256) = match certificate {
                    Some((status, pem)) => (status, ggprov_pki::public_key_sha256(&pem).ok()),
                    None => ("DELETED".to_owned(), None),
                };
                principals.push(PrincipalView { arn, certificate_id, status, policies, public_key_sha256 });
            }
            Ok(Some(ThingView {
                name: name.as_str().to_owned(),
                arn: self.thing_arn(name.as_str()),
                thing_type,
                attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                groups,
                inherited_policies,
                principals,
            }))
        })
    }

    /// Counts of what the simulated registry holds (for tests and the reliability harness).
    pub async fn inventory(&self) -> Result<Inventory, CloudError> {
        self.read("Inventory", |c| {
            let sql = "SELECT (SELECT COUNT(*) FROM things), (SELECT COUNT(*) FROM certificates), \
                 (SELECT COUNT(*) FROM certificates WHERE status = 'ACTIVE'), (SELECT COUNT(*) FROM core_devices), \
                 (SELECT COUNT(*) FROM policies), (SELECT COUNT(*) FROM deployments)";
            let count = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|n| n as u64);
            Ok(c.query_row(sql, [], |r| {
                Ok(Inventory {
                    things: count(r, 0)?,
                    certificates: count(r, 1)?,
                    active_certificates: count(r, 2)?,
                    core_devices: count(r, 3)?,
                    policies: count(r, 4)?,
                    deployments: count(r, 5)?,
                })
            })?)
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
            let nulls = vec![None::<String>; sql.matches('?').count()];
            let plan: Vec<String> = cloud
                .read("Plan", |c| {
                    let mut statement = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = statement.query_map(rusqlite::params_from_iter(&nulls), |r| r.get("detail"))?;
                    Ok(rows.collect::<Result<Vec<String>, _>>()?)
                })
                .expect("plans");
            assert!(plan.iter().any(|step| step.starts_with("SEARCH c USING PRIMARY KEY")), "{sql}: {plan:?}");
            assert!(!plan.iter().any(|step| step == "SCAN c" || step.starts_with("SCAN c ")), "{sql}: {plan:?}");
        }
    }
}
