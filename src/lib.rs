//! ggprov: provision and deploy to fleets of AWS IoT Greengrass V2 devices.
//!
//! This crate is the composition root: it reads the configuration, chooses the adapter behind
//! each port and serves the API. `main.rs` only parses the command line.

pub mod artifacts;
pub mod ca;
pub mod cli;
pub mod config;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ggprov_api::{App, AppState, HttpConfig};
use ggprov_domain::TemplateService;
use ggprov_domain::core_service::CoreService;
use ggprov_domain::core_task_service::CoreTaskService;
use ggprov_domain::deployment_service::DeploymentService;
use ggprov_domain::device_service::DeviceService;
use ggprov_domain::ports::{Greengrass, IotRegistry};
use ggprov_domain::provisioning_templates::ProvisioningTemplates;
use ggprov_engine::{
    CoreProvisioner, Deployer, Failpoints, Paced, Pacer, ProvisionerSettings, RetryPolicy, Worker, WorkerSettings,
};
use ggprov_local_cloud::{LocalCloud, LocalCloudSettings};
use ggprov_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use config::Config;

use crate::artifacts::DirectoryArtifacts;
use crate::ca::FileCertificateAuthorities;

/// A built application: adapters wired, listener bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: HttpConfig,
    worker: Arc<Worker>,
    run_worker: bool,
    local_cloud: LocalCloud,
    failpoints: Failpoints,
}

/// Opens the local cloud of a data directory.
pub async fn open_local_cloud(config: &Config) -> anyhow::Result<LocalCloud> {
    let settings = LocalCloudSettings {
        region: config.region.clone(),
        auto_connect: config.local_cloud_auto_connect,
        private_components: config.extra_components.clone(),
    };
    Ok(LocalCloud::open(&config.data_dir.join("local-cloud.sqlite"), settings).await?)
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

impl Application {
    /// Opens the store and the local cloud, wires the adapters and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {} (GGPROV_DATA_DIR)", config.data_dir.display()))?;
        let store = Arc::new(SqliteStore::open(&config.database_path()).await?);
        let cloud = open_local_cloud(config).await?;
        let cas = Arc::new(FileCertificateAuthorities::new(&config.data_dir, config.default_ca.clone()));
        ensure_cas(&cas, &cloud).await?;
        let artifacts = Arc::new(DirectoryArtifacts::new(config.data_dir.join("artifacts")));
        let provisioning_templates = ProvisioningTemplates::new(artifacts.clone());
        let shared_cloud = Arc::new(cloud.clone());
        let failpoints = Failpoints::default();
        let retry = RetryPolicy { attempts: config.call_attempts, base: Duration::from_millis(config.retry_base_ms) };
        // The workers' view of IoT and Greengrass: each call retried on its own when it fails
        // transiently, and paced at the AWS quotas when asked.
        let resilient = Arc::new(Paced {
            iot: shared_cloud.clone(),
            greengrass: shared_cloud.clone(),
            pacer: config.rate_limit.then(|| Pacer::new(0.95)),
            retry,
        });
        let (worker_iot, worker_greengrass): (Arc<dyn IotRegistry>, Arc<dyn Greengrass>) =
            (resilient.clone(), resilient);
        let provisioner = Arc::new(CoreProvisioner::new(
            store.clone(),
            worker_iot.clone(),
            worker_greengrass.clone(),
            cas.clone(),
            artifacts.clone(),
            shared_cloud.clone(),
            failpoints.clone(),
            ProvisionerSettings {
                region: config.region.clone(),
                role_alias: config.role_alias.clone(),
                device_root_path: config.device_root_path.clone(),
                artifacts_prefix: config.artifacts_prefix.clone(),
                keep_artifacts: config.keep_artifacts,
                concurrency: config.item_concurrency,
            },
        ));
        let deployer = Arc::new(Deployer::new(
            store.clone(),
            store.clone(),
            worker_iot.clone(),
            worker_greengrass.clone(),
            shared_cloud.clone(),
            store.clone(),
            config.deployment_batch_size,
        ));
        let worker = Arc::new(Worker::new(
            store.clone(),
            provisioner,
            deployer,
            WorkerSettings {
                concurrency: config.worker_concurrency,
                lease: Duration::from_millis(config.worker_lease_ms),
                max_attempts: config.max_attempts,
                base_backoff: Duration::from_millis(config.retry_base_ms),
                sweep_after: Duration::from_secs(config.sweep_after_secs),
                ..WorkerSettings::default()
            },
        ));
        let app = App {
            templates: TemplateService::new(store.clone(), shared_cloud.clone()),
            core_tasks: CoreTaskService::new(
                store.clone(),
                store.clone(),
                provisioning_templates.clone(),
                cas,
                shared_cloud.clone(),
                config.core_batch_size,
            ),
            cores: CoreService::new(store.clone(), shared_cloud.clone()),
            devices: DeviceService::new(store.clone(), shared_cloud.clone(), shared_cloud, artifacts),
            deployments: DeploymentService::new(store.clone(), store.clone(), store.clone()),
            provisioning_templates,
            event_source: config.event_source.clone(),
            readiness: vec![store],
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (GGPROV_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            state: AppState(Arc::new(app)),
            http: HttpConfig { cors: config.cors.clone(), base_path: config.base_path.clone() },
            worker,
            run_worker: config.worker,
            local_cloud: cloud,
            failpoints,
        })
    }

    /// The address actually bound (the chosen port when `GGPROV_LISTEN` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The worker, for draining the queue deterministically in tests.
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    pub fn failpoints(&self) -> Failpoints {
        self.failpoints.clone()
    }

    pub fn local_cloud(&self) -> LocalCloud {
        self.local_cloud.clone()
    }

    /// Serves (and runs the worker, unless disabled) until `shutdown` completes; then stops
    /// accepting, finishes in-flight requests and jobs, and leaves the rest on the queue.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
        let worker_task = self.run_worker.then(|| {
            let worker = self.worker.clone();
            tokio::spawn(async move { worker.run(worker_stopped).await })
        });
        let extra = ggprov_local_cloud::control_router(self.local_cloud.clone());
        let app = ggprov_api::app(self.state, &self.http, extra);
        let served = axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP");
        let _ = stop_worker.send(true);
        if let Some(task) = worker_task {
            let _ = task.await;
        }
        served
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called
/// (not when the future is first polled), so call it before announcing readiness: a signal
/// sent right after the address is printed must not kill the process uncleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).ok();
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            async fn next(stream: &mut Option<tokio::signal::unix::Signal>) {
                match stream {
                    Some(stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut terminate) => {}
                () = next(&mut interrupt) => {}
            }
            tracing::info!("shutdown requested; finishing in-flight requests and jobs");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing in-flight requests and jobs");
    }
}

/// The OpenAPI document as pretty-printed JSON (what `openapi/openapi.json` holds).
pub fn openapi_json() -> String {
    ggprov_api::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}
