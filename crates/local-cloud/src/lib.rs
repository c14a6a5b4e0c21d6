#![doc = include_str!("../README.md")]

mod catalogue;
mod control;
mod deployments;
mod faults;
mod greengrass;
mod iot;
mod rotation;
mod simulation;

use std::path::Path;
use std::sync::Arc;

use ggprov_domain::ports::CloudError;
use ggprov_domain::{ComponentName, ComponentVersion, Timestamp};
use ggprov_store_sqlite::inline::Database;
pub(crate) use ggprov_store_sqlite::inline::{all, execute, exists, one};
pub(crate) use rusqlite::{Connection, params};

pub use catalogue::ComponentCatalogue;
pub use control::control_router;
pub use deployments::{DeployedComponent, DeploymentStatusEvent};
pub use faults::{FaultSettings, quota};
pub use rotation::DeviceCredentials;
pub use simulation::{CoreBehavior, DeploymentOutcome, Inventory, PrincipalView, ThingView};

/// The account id the local cloud's ARNs carry (moto's default, too).
pub const ACCOUNT_ID: &str = "123456789012";

/// The ARN of a thing group (`AttachPolicy` and deployments target it).
pub(crate) fn thing_group_arn(region: &str, group: &str) -> String {
    format!("arn:aws:iot:{region}:{ACCOUNT_ID}:thinggroup/{group}")
}

/// Settings of the local cloud.
#[derive(Debug, Clone)]
pub struct LocalCloudSettings {
    pub region: String,
    /// Provisioned cores connect to Greengrass by themselves (`GGPROV_LOCAL_CLOUD_AUTO_CONNECT`).
    pub auto_connect: bool,
    /// The account's own components, accepted beside the public ones.
    pub private_components: Vec<(ComponentName, ComponentVersion)>,
}

/// The simulated AWS IoT + Greengrass V2 control planes, persisted in their own SQLite file.
#[derive(Clone)]
pub struct LocalCloud {
    inner: Arc<Inner>,
}

struct Inner {
    /// Run on the calling thread (decision 86): one write connection, so writers queue for
    /// it rather than sleep in SQLite's busy handler, and its page cache survives its own
    /// commits (decision 82).
    db: Database,
    catalogue: ComponentCatalogue,
    settings: LocalCloudSettings,
    faults: faults::Faults,
    /// Greengrass's answers about core devices, exact per database state (`GET /cores/{name}`
    /// asks three of them on every read).
    reads: greengrass::DeviceReads,
}

impl std::fmt::Debug for LocalCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCloud").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

/// Why the local cloud could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the local cloud database {path}: {source}")]
pub struct OpenError {
    path: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The token-exchange role alias and the policies every Greengrass core needs, created on
/// first start (on AWS, the `CloudFormation` stack creates them).
pub const TOKEN_EXCHANGE_ROLE_ALIAS: &str = "GreengrassV2TokenExchangeRoleAlias";
pub use ggprov_domain::backend::GREENGRASS_CORE_POLICY as CORE_POLICY;
pub use ggprov_domain::backend::TOKEN_EXCHANGE_POLICY;

impl LocalCloud {
    /// Opens (creating if needed) the local cloud's database and applies its migrations.
    pub async fn open(path: &Path, settings: LocalCloudSettings) -> Result<Self, OpenError> {
        let display = path.display().to_string();
        let err = |source: Box<dyn std::error::Error + Send + Sync>| OpenError { path: display.clone(), source };
        let db = Database::open_migrated(path, &MIGRATOR).await.map_err(|failure| err(failure.into()))?;
        let mut catalogue = ComponentCatalogue::public();
        catalogue.extend(settings.private_components.iter().cloned());
        let reads = greengrass::DeviceReads::over(path);
        let cloud =
            Self { inner: Arc::new(Inner { db, catalogue, settings, faults: faults::Faults::default(), reads }) };
        cloud.bootstrap().await.map_err(|e| err(e.into()))?;
        if cloud.inner.settings.auto_connect {
            cloud.power_on_provisioned_cores().await.map_err(|e| err(e.into()))?;
        }
        Ok(cloud)
    }

    async fn bootstrap(&self) -> Result<(), CloudError> {
        let now = Timestamp::now().as_millis();
        let region = &self.inner.settings.region;
        let role_arn = format!("arn:aws:iam::{ACCOUNT_ID}:role/GreengrassV2TokenExchangeRole");
        let alias_arn = format!("arn:aws:iot:{region}:{ACCOUNT_ID}:rolealias/{TOKEN_EXCHANGE_ROLE_ALIAS}");
        let tes_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": alias_arn}]
        });
        let core_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["iot:Publish", "iot:Subscribe", "iot:Receive", "iot:Connect", "greengrass:*"], "Resource": "*"}
            ]
        });
        self.write("Bootstrap", |c| {
            execute(
                c,
                "INSERT OR IGNORE INTO role_aliases (alias, role_arn, created_at) VALUES (?, ?, ?)",
                params![TOKEN_EXCHANGE_ROLE_ALIAS, role_arn, now],
            )?;
            for (name, document) in [(TOKEN_EXCHANGE_POLICY, tes_policy), (CORE_POLICY, core_policy)] {
                execute(
                    c,
                    "INSERT OR IGNORE INTO policies (name, document, created_at) VALUES (?, ?, ?)",
                    params![name, document.to_string(), now],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` on a read connection; a failure of the database is an outage of `api`.
    pub(crate) fn read<T>(
        &self,
        api: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, Fail>,
    ) -> Result<T, CloudError> {
        self.inner.db.read(f).map_err(|e| e.into_cloud(api))
    }

    /// Runs `f` in a write transaction, committed when it returns `Ok` (an `Err`, the
    /// simulated API's refusal included, rolls it back).
    pub(crate) async fn write<T>(
        &self,
        api: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, Fail>,
    ) -> Result<T, CloudError> {
        self.inner.db.write(|tx| f(tx)).await.map_err(|e| e.into_cloud(api))
    }

    pub(crate) fn region(&self) -> &str {
        &self.inner.settings.region
    }

    /// Sets the faults to inject.
    pub fn set_faults(&self, settings: FaultSettings) {
        self.inner.faults.set(settings);
    }

    pub fn faults(&self) -> FaultSettings {
        self.inner.faults.get()
    }

    /// Calls received per simulated API since start (throttled ones included).
    pub fn api_calls(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.inner.faults.calls()
    }

    pub(crate) fn admit(&self, api: &'static str) -> Result<(), CloudError> {
        self.inner.faults.admit(api)
    }

    pub(crate) fn thing_arn(&self, name: &str) -> String {
        format!("arn:aws:iot:{}:{ACCOUNT_ID}:thing/{name}", self.region())
    }

    pub(crate) fn cert_arn(&self, id: &str) -> String {
        format!("arn:aws:iot:{}:{ACCOUNT_ID}:cert/{id}", self.region())
    }
}

/// Why a database closure stopped: the simulated API's own answer, or a failure of the
/// database (an outage of the simulated API).
pub(crate) enum Fail {
    Cloud(CloudError),
    Db(rusqlite::Error),
}

impl From<CloudError> for Fail {
    fn from(err: CloudError) -> Self {
        Self::Cloud(err)
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(err: rusqlite::Error) -> Self {
        Self::Db(err)
    }
}

impl Fail {
    fn into_cloud(self, api: &'static str) -> CloudError {
        match self {
            Self::Cloud(err) => err,
            Self::Db(err) => CloudError::Unavailable { api, source: Box::new(err) },
        }
    }
}

pub(crate) fn not_found(api: &'static str, message: impl Into<String>) -> CloudError {
    CloudError::NotFound { api, message: message.into() }
}

pub(crate) fn already_exists(api: &'static str, message: impl Into<String>) -> CloudError {
    CloudError::AlreadyExists { api, message: message.into(), resource_id: None }
}

pub(crate) fn rejected(api: &'static str, message: impl Into<String>) -> CloudError {
    CloudError::Rejected { api, message: message.into() }
}
