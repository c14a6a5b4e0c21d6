//! ggprov: provision and deploy to fleets of AWS IoT Greengrass V2 devices.
//!
//! This crate is the composition root: it reads the configuration, chooses the adapter behind
//! each port and serves the API. `main.rs` only parses the command line.

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod serve;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ggprov_api::{App, AppState, Gauges, HttpConfig};
use ggprov_aws::AwsBackendSettings;
use ggprov_domain::ErrorChain;
use ggprov_domain::TemplateService;
use ggprov_domain::application_service::ApplicationService;
use ggprov_domain::backend::Adapters;
use ggprov_domain::core_service::CoreService;
use ggprov_domain::core_task_service::CoreTaskService;
use ggprov_domain::deployment_service::DeploymentService;
use ggprov_domain::device_service::DeviceService;
use ggprov_domain::metrics::Metrics;
use ggprov_domain::ports::{Greengrass, IotRegistry, Outbox, WorkQueue};
use ggprov_domain::provisioning_templates::ProvisioningTemplates;
use ggprov_domain::rollout_service::Rollouts;
use ggprov_embedded::EmbeddedSettings;
use ggprov_engine::{
    CoreProvisioner, Deployer, Failpoints, JobRegistry, OutboxRelay, Paced, Pacer, ProvisionerSettings, RetryPolicy,
    Sweeper, Worker, WorkerSettings,
};
use ggprov_local_cloud::LocalCloud;
use tokio::net::TcpListener;

pub use config::{AwsSettings, Backend, Config, Role};

/// A built application: adapters wired, listener bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: HttpConfig,
    worker: Arc<Worker>,
    run_worker: bool,
    grace: Duration,
    local_cloud: Option<LocalCloud>,
    failpoints: Failpoints,
    limits: serve::ConnectionLimits,
    /// The backend's records (the worker role fills in the certificates of older things).
    store: Arc<dyn ggprov_domain::ports::CoreStore>,
}

/// Queue depth and outbox backlog, read when `/metrics` is scraped.
struct QueueAndOutbox {
    queue: Arc<dyn WorkQueue>,
    outbox: Arc<dyn Outbox>,
    /// Whether a relay publishes the outbox (otherwise its backlog is not a backlog).
    publishing: bool,
    /// The backend's store, queue and bucket calls, when it counts them.
    store_calls: Option<Arc<ggprov_domain::metrics::StoreCalls>>,
}

#[async_trait::async_trait]
impl Gauges for QueueAndOutbox {
    async fn refresh(&self, metrics: &Metrics) {
        // Counted before this scrape's own calls below: they show in the next scrape.
        for ((service, operation), calls) in self.store_calls.as_ref().map(|c| c.snapshot()).unwrap_or_default() {
            metrics.set("ggprov_aws_calls_total", &[("service", &service), ("operation", &operation)], calls as f64);
        }
        match self.queue.depth().await {
            Ok(depth) => {
                for (state, n) in [("visible", depth.visible), ("in_flight", depth.in_flight), ("dead", depth.dead)] {
                    metrics.set("ggprov_queue_jobs", &[("state", state)], n as f64);
                }
                let oldest = if depth.visible == 0 { Some(0) } else { depth.oldest_wait_ms };
                if let Some(ms) = oldest {
                    metrics.set("ggprov_queue_oldest_job_age_seconds", &[], ms as f64 / 1000.0);
                }
            }
            Err(err) => tracing::warn!(error = %ErrorChain(&err), "cannot read the queue depth for /metrics"),
        }
        if self.publishing {
            match self.outbox.outbox_backlog().await {
                Ok(n) => metrics.set("ggprov_outbox_backlog", &[], n as f64),
                Err(err) => tracing::warn!(error = %ErrorChain(&err), "cannot read the outbox backlog for /metrics"),
            }
        }
    }
}

/// The embedded default's settings, from the configuration.
pub fn embedded_settings(config: &Config) -> EmbeddedSettings {
    EmbeddedSettings {
        data_dir: config.storage.data_dir.clone(),
        region: config.provisioning.region.clone(),
        auto_connect: config.local_cloud.auto_connect,
        private_components: config.local_cloud.extra_components.clone(),
        default_ca: config.provisioning.default_ca.clone(),
        artifact_sync: config.storage.artifact_sync,
    }
}

/// AWS mode's settings, from the configuration.
fn aws_settings(config: &Config, aws: &AwsSettings) -> AwsBackendSettings {
    AwsBackendSettings {
        resources: aws.clone(),
        region: config.provisioning.region.clone(),
        call_attempts: config.worker.call_attempts,
        max_attempts: config.worker.max_attempts,
        default_ca: config.provisioning.default_ca.clone(),
        event_source: config.provisioning.event_source.clone(),
    }
}

impl Application {
    /// Opens the store and the cloud of the configured backend, wires the adapters and binds
    /// the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let (adapters, local_cloud) = match &config.storage.backend {
            Backend::Embedded => {
                let embedded = ggprov_embedded::open(&embedded_settings(config)).await?;
                (embedded.adapters, Some(embedded.local_cloud))
            }
            Backend::Aws(aws) => (ggprov_aws::connect(&aws_settings(config, aws)).await?, None),
        };
        let Adapters {
            templates,
            applications,
            region,
            store,
            queue,
            artifacts,
            iot,
            greengrass,
            cas,
            feed,
            observer,
            rotation,
            publisher,
            readiness,
            store_calls,
        } = adapters;
        let provisioning_templates = ProvisioningTemplates::new(artifacts.clone());
        let failpoints = Failpoints::default();
        let metrics = Arc::new(Metrics::new());
        let gauges: Arc<dyn Gauges> = Arc::new(QueueAndOutbox {
            queue: queue.clone(),
            outbox: store.clone(),
            publishing: publisher.is_some(),
            store_calls,
        });
        let retry = RetryPolicy { attempts: config.worker.call_attempts, base: config.worker.retry_base };
        // The workers' view of IoT and Greengrass: each call retried on its own when it fails
        // transiently, and paced at the AWS quotas when asked.
        let resilient = Arc::new(
            Paced::new(iot.clone(), greengrass.clone(), retry)
                .paced(config.pacing().map(|quotas| Pacer::with_quotas(0.95, quotas)))
                .counted(metrics.clone()),
        );
        let (worker_iot, worker_greengrass): (Arc<dyn IotRegistry>, Arc<dyn Greengrass>) =
            (resilient.clone(), resilient);
        // Request handlers' view: the same per-call retries, never paced (a request must not
        // wait behind a worker's quota budget). This is the only retry layer: the backends'
        // IoT and Greengrass clients make one attempt per call (decision 44).
        let api_greengrass: Arc<dyn Greengrass> = Arc::new(Paced::new(iot.clone(), greengrass.clone(), retry));
        let provisioner = Arc::new(
            CoreProvisioner::new(
                store.clone(),
                worker_iot.clone(),
                worker_greengrass.clone(),
                cas.clone(),
                artifacts.clone(),
                observer,
                failpoints.clone(),
                ProvisionerSettings {
                    region: config.provisioning.region.clone(),
                    role_alias: config.provisioning.role_alias.clone(),
                    device_root_path: config.provisioning.device_root_path.clone(),
                    artifacts_prefix: config.provisioning.artifacts_prefix.clone(),
                    keep_artifacts: config.provisioning.keep_artifacts,
                    concurrency: config.worker.item_concurrency,
                },
            )
            .with_rotation(rotation.clone()),
        );
        let deployer = Arc::new(Deployer::new(
            store.clone(),
            templates.clone(),
            worker_iot.clone(),
            worker_greengrass.clone(),
            feed,
            queue.clone(),
            config.worker.deployment_batch_size,
        ));
        let sweeper = Sweeper::new(
            store.clone(),
            store.clone(),
            queue.clone(),
            config.worker.core_batch_size,
            config.worker.sweep_after(),
        );
        let mut worker = Worker::new(
            queue.clone(),
            JobRegistry::standard(provisioner, deployer.clone()),
            deployer,
            sweeper,
            WorkerSettings {
                concurrency: config.worker.concurrency,
                lease: config.worker.lease,
                max_attempts: config.worker.max_attempts,
                base_backoff: config.worker.retry_base,
                max_backoff: config::worker::MAX_BACKOFF,
                ..WorkerSettings::default()
            },
        );
        worker = worker.with_metrics(metrics.clone());
        if let Some(publisher) = publisher {
            worker = worker.with_relay(Arc::new(OutboxRelay::new(store.clone(), publisher)));
        }
        let deployments = DeploymentService::new(store.clone(), templates.clone(), queue.clone(), worker_iot.clone());
        let software_updates = ggprov_domain::software_update::SoftwareUpdateService::new(
            store.clone(),
            templates.clone(),
            worker_greengrass.clone(),
            worker_iot.clone(),
            deployments.clone(),
        );
        let core_tasks = CoreTaskService::new(
            store.clone(),
            queue.clone(),
            provisioning_templates.clone(),
            cas.clone(),
            api_greengrass.clone(),
            config.worker.core_batch_size,
        );
        let app = App {
            templates: TemplateService::new(templates.clone(), api_greengrass.clone()),
            applications: ApplicationService::new(
                applications,
                templates.clone(),
                artifacts.clone(),
                api_greengrass.clone(),
                region,
                config.provisioning.application_prefix.clone(),
            ),
            core_tasks: core_tasks.clone(),
            cores: CoreService::new(store.clone(), api_greengrass).with_download_links(artifacts.clone()),
            core_bodies: ggprov_api::CoreBodies::new(ggprov_api::MAX_CACHED_CORE_BODIES),
            devices: DeviceService::new(store.clone(), worker_iot.clone(), worker_greengrass, artifacts),
            certificates: ggprov_domain::certificate_service::CertificateService::new(
                store.clone(),
                worker_iot.clone(),
                cas,
                core_tasks,
                Arc::new(ggprov_pki::Signer),
            )
            .without_rotation(rotation.unavailable().map(str::to_owned)),
            deployments,
            software_updates,
            rollouts: Rollouts::new(store.clone(), queue, config.worker.deployment_batch_size as usize),
            provisioning_templates,
            event_source: config.provisioning.event_source.clone(),
            readiness,
            metrics,
            gauges: Some(gauges),
            idempotency: Some(store.clone()),
            stopping: tokio::sync::watch::Sender::new(false),
        };
        let listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("listening on {} (GGPROV_LISTEN)", config.http.listen))?;
        Ok(Self {
            listener,
            state: AppState(Arc::new(app)),
            http: HttpConfig {
                cors: config.http.cors.clone(),
                base_path: config.http.base_path.clone(),
                auth: auth::authenticator(&config.auth),
                operations_only: config.worker.role == Role::Worker,
                request_timeout: config.http.request_timeout,
            },
            limits: serve::ConnectionLimits {
                max_connections: config.http.max_connections,
                header_read_timeout: config.http.header_read_timeout,
            },
            worker: Arc::new(worker),
            run_worker: config.worker.enabled && config.worker.role != Role::Api,
            grace: config.http.shutdown_grace,
            local_cloud,
            failpoints,
            store,
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

    /// The local cloud (embedded default only).
    pub fn local_cloud(&self) -> LocalCloud {
        self.local_cloud.clone().expect("the local cloud exists on the embedded default only")
    }

    /// Serves (and runs the worker, unless disabled) until `shutdown` completes; then stops
    /// accepting, finishes in-flight requests and jobs, and leaves the rest on the queue.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker_task = self.run_worker.then(|| {
            let worker = self.worker.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move { worker.run(stopped).await })
        });
        if self.run_worker {
            // Once per start, beside the work: things from before the certificate inventory.
            let store = self.store.clone();
            tokio::spawn(async move {
                match ggprov_engine::backfill_certificates(store.as_ref()).await {
                    Ok(0) => {}
                    Ok(filled) => tracing::info!(filled, "certificates of earlier things added to the inventory"),
                    Err(err) => {
                        tracing::warn!(error = %ggprov_domain::ErrorChain(&err), "filling in earlier certificates failed; the next start tries again")
                    }
                }
            });
        }
        let extra = self.local_cloud.clone().map(ggprov_local_cloud::control_router).unwrap_or_default();
        let streams = self.state.stopping.clone();
        let mut make = ggprov_api::app(self.state, &self.http, extra);
        let app = tower::Service::<()>::call(&mut make, ()).await.unwrap_or_else(|never| match never {});
        let mut serve_stopped = stopped;
        let mut server = tokio::spawn(serve::serve(self.listener, app, self.limits, async move {
            let _ = serve_stopped.wait_for(|stop| *stop).await;
        }));
        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                let _ = stop.send(true);
                if let Some(task) = worker_task {
                    let _ = task.await;
                }
                return result.context("the HTTP server task")?.context("serving HTTP");
            }
        }
        // Stop accepting; end event streams; let in-flight requests and jobs finish within the
        // grace period.
        let _ = stop.send(true);
        streams.send_replace(true);
        let drained = tokio::time::timeout(self.grace, async {
            let served = server.await;
            if let Some(task) = worker_task {
                let _ = task.await;
            }
            served
        })
        .await;
        match drained {
            Ok(served) => served.context("the HTTP server task")?.context("serving HTTP"),
            Err(_) => {
                tracing::warn!(
                    grace_secs = self.grace.as_secs(),
                    "grace period over: leaving unfinished jobs to the queue (they return after their lease)"
                );
                Ok(())
            }
        }
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
    serde_json::to_string_pretty(&ggprov_api::openapi()).expect("the OpenAPI document serialises")
}
