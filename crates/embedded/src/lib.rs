#![doc = include_str!("../README.md")]

mod artifacts;
mod ca;
mod cursor_feed;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use ggprov_domain::backend::Adapters;
use ggprov_domain::{ComponentName, ComponentVersion};
use ggprov_local_cloud::{LocalCloud, LocalCloudSettings};
use ggprov_store_sqlite::SqliteStore;

pub use artifacts::{ArtifactSync, DirectoryArtifacts};
pub use ca::FileCertificateAuthorities;
pub use cursor_feed::CursorFeed;

/// Where and how the embedded default keeps its state.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    /// Holds `ggprov.sqlite`, `local-cloud.sqlite`, `artifacts/` and `cas/`.
    pub data_dir: PathBuf,
    /// The region the local cloud reports (ARNs, endpoints).
    pub region: String,
    /// Simulated cores connect by themselves once provisioned.
    pub auto_connect: bool,
    /// Private components the local cloud's catalogue offers besides the public ones.
    pub private_components: Vec<(ComponentName, ComponentVersion)>,
    /// The CA used when a request names none (otherwise the one marked default on disk).
    pub default_ca: Option<String>,
    /// How artifacts are made durable.
    pub artifact_sync: ArtifactSync,
}

impl EmbeddedSettings {
    /// The store's database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ggprov.sqlite")
    }
}

/// The embedded default, opened: every adapter, and the local cloud itself (for its control
/// routes and for tests).
pub struct EmbeddedBackend {
    pub adapters: Adapters,
    pub local_cloud: LocalCloud,
}

/// Opens the local cloud of a data directory.
pub async fn open_local_cloud(settings: &EmbeddedSettings) -> anyhow::Result<LocalCloud> {
    let cloud_settings = LocalCloudSettings {
        region: settings.region.clone(),
        auto_connect: settings.auto_connect,
        private_components: settings.private_components.clone(),
    };
    Ok(LocalCloud::open(&settings.data_dir.join("local-cloud.sqlite"), cloud_settings).await?)
}

/// SQLite, files and the local cloud in the data directory, with its bootstrap: the data
/// directory is created, and a development CA minted and registered when none exists.
pub async fn open(settings: &EmbeddedSettings) -> anyhow::Result<EmbeddedBackend> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating the data directory {} (GGPROV_DATA_DIR)", settings.data_dir.display()))?;
    let store = Arc::new(SqliteStore::open(&settings.database_path()).await?);
    let cloud = open_local_cloud(settings).await?;
    let cas = Arc::new(FileCertificateAuthorities::new(&settings.data_dir, settings.default_ca.clone()));
    ensure_cas(&cas, &cloud).await?;
    let cas = Arc::new(ca::RegisteredCas::new((*cas).clone(), cloud.clone()));
    let shared_cloud = Arc::new(cloud.clone());
    let adapters = Adapters {
        templates: store.clone(),
        applications: store.clone(),
        region: settings.region.clone(),
        store: store.clone(),
        queue: store.clone(),
        artifacts: Arc::new(
            DirectoryArtifacts::new(settings.data_dir.join("artifacts")).synced_by(settings.artifact_sync),
        ),
        iot: shared_cloud.clone(),
        greengrass: shared_cloud.clone(),
        cas,
        feed: Arc::new(CursorFeed::new(shared_cloud.clone(), store.clone(), "deployment-status")),
        rotation: shared_cloud.clone(),
        observer: shared_cloud,
        publisher: None,
        readiness: vec![store],
        store_calls: None,
    };
    Ok(EmbeddedBackend { adapters, local_cloud: cloud })
}

/// Registers every CA held with the local cloud, creating a development CA first when none exists.
async fn ensure_cas(cas: &FileCertificateAuthorities, cloud: &LocalCloud) -> anyhow::Result<()> {
    if cas.ids().is_empty() {
        let minted = ggprov_pki::create_ca("ggprov development CA", 3650)?;
        let id = cas.store(&minted.certificate_pem, &minted.private_key, true)?;
        tracing::info!(ca.id = %id, "created the development CA; it signs core and device certificates when a request names no caId");
    }
    for id in cas.ids() {
        if let Some(pem) = cas.certificate(&id) {
            cloud
                .register_ca_certificate(&pem)
                .await
                .with_context(|| format!("registering CA {id} with the local cloud"))?;
        }
    }
    Ok(())
}
