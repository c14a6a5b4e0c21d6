//! ggprov: provision and deploy to fleets of AWS IoT Greengrass V2 devices.
//!
//! This crate is the composition root: it reads the configuration, chooses the adapter behind
//! each port and serves the API. `main.rs` only parses the command line.

pub mod artifacts;
pub mod auth;
pub mod ca;
pub mod cli;
pub mod config;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ggprov_api::{App, AppState, Gauges, HttpConfig};
use ggprov_domain::TemplateService;
use ggprov_domain::core_service::CoreService;
use ggprov_domain::core_task_service::CoreTaskService;
use ggprov_domain::deployment_service::DeploymentService;
use ggprov_domain::device_service::DeviceService;
use ggprov_domain::metrics::Metrics;
use ggprov_domain::ports::{
    ArtifactStore, CertificateAuthorities, CloudError, CoreStore, EventPublisher, Greengrass, IotRegistry,
    ProvisioningObserver, ReadinessCheck, StatusFeed, TemplateStore, WorkQueue,
};
use ggprov_domain::provisioning_templates::ProvisioningTemplates;
use ggprov_engine::{
    CoreProvisioner, CursorFeed, Deployer, Failpoints, OutboxRelay, Paced, Pacer, ProvisionerSettings, RetryPolicy,
    Worker, WorkerSettings,
};
use ggprov_local_cloud::{LocalCloud, LocalCloudSettings};
use ggprov_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use config::{AwsSettings, Backend, Config, Role};

use crate::artifacts::DirectoryArtifacts;
use crate::ca::FileCertificateAuthorities;

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

/// The adapter behind every port, for one backend.
struct Adapters {
    templates: Arc<dyn TemplateStore>,
    store: Arc<dyn CoreStore>,
    queue: Arc<dyn WorkQueue>,
    artifacts: Arc<dyn ArtifactStore>,
    iot: Arc<dyn IotRegistry>,
    greengrass: Arc<dyn Greengrass>,
    cas: Arc<dyn CertificateAuthorities>,
    feed: Arc<dyn StatusFeed>,
    observer: Arc<dyn ProvisioningObserver>,
    publisher: Option<Arc<dyn EventPublisher>>,
    readiness: Vec<Arc<dyn ReadinessCheck>>,
    local_cloud: Option<LocalCloud>,
}

/// Queue depth and outbox backlog, read when `/metrics` is scraped.
struct QueueAndOutbox {
    queue: Arc<dyn WorkQueue>,
    store: Arc<dyn CoreStore>,
    /// Whether a relay publishes the outbox (otherwise its backlog is not a backlog).
    publishing: bool,
}

#[async_trait::async_trait]
impl Gauges for QueueAndOutbox {
    async fn refresh(&self, metrics: &Metrics) {
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
            Err(err) => tracing::warn!(error = %err, "cannot read the queue depth for /metrics"),
        }
        if self.publishing {
            match self.store.outbox_backlog().await {
                Ok(n) => metrics.set("ggprov_outbox_backlog", &[], n as f64),
                Err(err) => tracing::warn!(error = %err, "cannot read the outbox backlog for /metrics"),
            }
        }
    }
}

/// Nobody powers on a real core but a person: on AWS, provisioning tells no one.
struct NoObserver;

#[async_trait::async_trait]
impl ProvisioningObserver for NoObserver {
    async fn core_provisioned(&self, _name: &ggprov_domain::ThingName, _nucleus_version: &str) {}
}

/// SQLite, files and the local cloud in the data directory.
async fn embedded_adapters(config: &Config) -> anyhow::Result<Adapters> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {} (GGPROV_DATA_DIR)", config.data_dir.display()))?;
    let store = Arc::new(SqliteStore::open(&config.database_path()).await?);
    let cloud = open_local_cloud(config).await?;
    let cas = Arc::new(FileCertificateAuthorities::new(&config.data_dir, config.default_ca.clone()));
    ensure_cas(&cas, &cloud).await?;
    let shared_cloud = Arc::new(cloud.clone());
    Ok(Adapters {
        templates: store.clone(),
        store: store.clone(),
        queue: store.clone(),
        artifacts: Arc::new(DirectoryArtifacts::new(config.data_dir.join("artifacts"))),
        iot: shared_cloud.clone(),
        greengrass: shared_cloud.clone(),
        cas,
        feed: Arc::new(CursorFeed::new(shared_cloud.clone(), store.clone(), "deployment-status")),
        observer: shared_cloud,
        publisher: None,
        readiness: vec![store],
        local_cloud: Some(cloud),
    })
}

/// DynamoDB, SQS, S3, EventBridge, IoT, Greengrass V2 and SSM.
async fn aws_adapters(config: &Config, aws: &AwsSettings) -> anyhow::Result<Adapters> {
    use ggprov_aws as a;
    let sdk = a::sdk_config(config.call_attempts).await;
    let region = sdk.region().map_or_else(|| config.region.clone(), ToString::to_string);
    let dynamo = a::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &aws.table);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut work = (aws.work_queue_url.clone(), aws.work_dlq_url.clone());
    let mut status_queue = aws.status_queue_url.clone();
    let bucket = aws.bucket.clone().unwrap_or_else(|| format!("{}-artifacts", aws.table));
    let mut artifacts = a::S3Artifacts::new(a::s3_client(&sdk), &bucket, aws.kms_key.clone());
    if let Some(secs) = aws.presign_secs {
        artifacts = artifacts.with_download_links(Duration::from_secs(secs));
    }
    if aws.create_resources {
        dynamo.create_table_if_missing().await.context("creating the DynamoDB table")?;
        artifacts.create_bucket_if_missing().await.context("creating the S3 bucket")?;
        if work.0.is_none() || work.1.is_none() {
            let (url, dlq) = a::SqsQueue::create_queues(&sqs, &format!("{}-work", aws.table), config.max_attempts + 2)
                .await
                .context("creating the work queues")?;
            work = (Some(url), Some(dlq));
        }
        if status_queue.is_none() {
            let (url, _) = a::SqsQueue::create_queues(&sqs, &format!("{}-status", aws.table), 10)
                .await
                .context("creating the status queue")?;
            status_queue = Some(url);
        }
    }
    let (Some(work_url), Some(dlq_url)) = work else {
        anyhow::bail!("GGPROV_AWS_WORK_QUEUE_URL and GGPROV_AWS_WORK_DLQ_URL are required with GGPROV_BACKEND=aws");
    };
    // Idle workers wait on the queue a while (ingestion and the event relay run between waits).
    let queue = Arc::new(
        a::SqsQueue::new(sqs.clone(), work_url, dlq_url).with_long_polling(Duration::from_secs(aws.queue_wait_secs)),
    );
    let iot = a::AwsIot::new(aws_sdk_iot::Client::new(&sdk));
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut default_ca = config.default_ca.clone();
    if aws.create_resources {
        ensure_greengrass_policies(&iot).await.context("creating the Greengrass IoT policies")?;
        if default_ca.is_none() {
            default_ca = Some(
                development_ca(&aws_sdk_iot::Client::new(&sdk), &ssm, &aws.table)
                    .await
                    .context("creating the development CA")?,
            );
        }
    }
    let greengrass = Arc::new(a::AwsGreengrass::new(aws_sdk_greengrassv2::Client::new(&sdk), iot.clone(), region));
    let cas = Arc::new(a::SsmCertificateAuthorities::new(iot.clone(), ssm, default_ca));
    let feed: Arc<dyn StatusFeed> = match status_queue {
        Some(url) => Arc::new(a::SqsStatusFeed::new(sqs, url)),
        None => Arc::new(NoStatus),
    };
    let publisher = aws.event_bus.as_ref().map(|bus| -> Arc<dyn EventPublisher> {
        Arc::new(a::EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&sdk), bus, &config.event_source))
    });
    let store = Arc::new(dynamo);
    Ok(Adapters {
        templates: store.clone(),
        store: store.clone(),
        queue: queue.clone(),
        artifacts: Arc::new(artifacts),
        iot: Arc::new(iot),
        greengrass,
        cas,
        feed,
        observer: Arc::new(NoObserver),
        publisher,
        readiness: vec![store, queue],
        local_cloud: None,
    })
}

/// Development on AWS (`GGPROV_AWS_CREATE_RESOURCES`): the IoT policies the bundled core
/// template attaches, as the embedded default's local cloud has them. Production gets them from
/// `infra/` (`CreateGreengrassPolicies`).
async fn ensure_greengrass_policies(iot: &ggprov_aws::AwsIot) -> anyhow::Result<()> {
    let core = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive", "greengrass:*"], "Resource": "*"}]});
    let token = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "iot:AssumeRoleWithCertificate", "Resource": "*"}]});
    for (name, document) in
        [(ggprov_local_cloud::CORE_POLICY, core), (ggprov_local_cloud::TOKEN_EXCHANGE_POLICY, token)]
    {
        if !iot.policy_exists(name).await? {
            match iot.create_policy(name, &document.to_string()).await {
                Ok(()) | Err(CloudError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

/// Development on AWS without `GGPROV_DEFAULT_CA`: a development CA, CDF style (certificate
/// registered with IoT, key in SSM as `cdf-ca-key-<id>`), made once per table and remembered
/// in the SSM parameter `ggprov-<table>-development-ca`.
async fn development_ca(iot: &aws_sdk_iot::Client, ssm: &aws_sdk_ssm::Client, table: &str) -> anyhow::Result<String> {
    let marker = format!("ggprov-{table}-development-ca");
    if let Ok(out) = ssm.get_parameter().name(&marker).send().await
        && let Some(id) = out.parameter.and_then(|p| p.value)
    {
        return Ok(id);
    }
    let minted = ggprov_pki::create_ca("ggprov development CA", 3650)?;
    let id = iot
        .register_ca_certificate()
        .ca_certificate(&minted.certificate_pem)
        .certificate_mode(aws_sdk_iot::types::CertificateMode::SniOnly)
        .set_as_active(true)
        .send()
        .await
        .context("RegisterCACertificate")?
        .certificate_id
        .context("RegisterCACertificate answered no id")?;
    ssm.put_parameter()
        .name(ggprov_aws::SsmCertificateAuthorities::key_parameter(&id))
        .value(minted.private_key.expose())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .context("PutParameter of the CA key")?;
    ssm.put_parameter()
        .name(&marker)
        .value(&id)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("PutParameter {marker}"))?;
    tracing::info!(ca.id = %id, "created the development CA (IoT + SSM); it signs certificates when a request names no caId");
    Ok(id)
}

/// No status queue configured: outcomes come from reconciliation alone.
struct NoStatus;

#[async_trait::async_trait]
impl StatusFeed for NoStatus {
    async fn receive(&self, _max: u32) -> Result<Vec<ggprov_domain::ports::ReceivedStatus>, CloudError> {
        Ok(Vec::new())
    }

    async fn acknowledge(&self, _receipts: &[String]) -> Result<(), CloudError> {
        Ok(())
    }
}

impl Application {
    /// Opens the store and the cloud of the configured backend, wires the adapters and binds
    /// the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let adapters = match &config.backend {
            Backend::Embedded => embedded_adapters(config).await?,
            Backend::Aws(aws) => aws_adapters(config, aws).await?,
        };
        let Adapters {
            templates,
            store,
            queue,
            artifacts,
            iot,
            greengrass,
            cas,
            feed,
            observer,
            publisher,
            readiness,
            local_cloud,
        } = adapters;
        let provisioning_templates = ProvisioningTemplates::new(artifacts.clone());
        let failpoints = Failpoints::default();
        let metrics = Arc::new(Metrics::new());
        let gauges: Arc<dyn Gauges> =
            Arc::new(QueueAndOutbox { queue: queue.clone(), store: store.clone(), publishing: publisher.is_some() });
        let retry = RetryPolicy { attempts: config.call_attempts, base: Duration::from_millis(config.retry_base_ms) };
        // The workers' view of IoT and Greengrass: each call retried on its own when it fails
        // transiently, and paced at the AWS quotas when asked.
        let resilient = Arc::new(Paced {
            iot: iot.clone(),
            greengrass: greengrass.clone(),
            pacer: config.rate_limit.clone().map(|quotas| Pacer::with_quotas(0.95, quotas)),
            retry,
            metrics: Some(metrics.clone()),
        });
        let (worker_iot, worker_greengrass): (Arc<dyn IotRegistry>, Arc<dyn Greengrass>) =
            (resilient.clone(), resilient);
        let provisioner = Arc::new(CoreProvisioner::new(
            store.clone(),
            worker_iot.clone(),
            worker_greengrass.clone(),
            cas.clone(),
            artifacts.clone(),
            observer,
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
            templates.clone(),
            worker_iot.clone(),
            worker_greengrass.clone(),
            feed,
            queue.clone(),
            config.deployment_batch_size,
        ));
        let mut worker = Worker::new(
            queue.clone(),
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
        );
        worker = worker.with_metrics(metrics.clone());
        if let Some(publisher) = publisher {
            worker = worker.with_relay(Arc::new(OutboxRelay::new(store.clone(), publisher)));
        }
        let app = App {
            templates: TemplateService::new(templates.clone(), greengrass.clone()),
            core_tasks: CoreTaskService::new(
                store.clone(),
                queue.clone(),
                provisioning_templates.clone(),
                cas,
                greengrass.clone(),
                config.core_batch_size,
            ),
            cores: CoreService::new(store.clone(), greengrass.clone()).with_download_links(artifacts.clone()),
            devices: DeviceService::new(store.clone(), worker_iot, worker_greengrass, artifacts),
            deployments: DeploymentService::new(store.clone(), templates, queue),
            provisioning_templates,
            event_source: config.event_source.clone(),
            readiness,
            metrics,
            gauges: Some(gauges),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (GGPROV_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            state: AppState(Arc::new(app)),
            http: HttpConfig {
                cors: config.cors.clone(),
                base_path: config.base_path.clone(),
                auth: auth::authenticator(&config.auth),
                operations_only: config.role == Role::Worker,
            },
            worker: Arc::new(worker),
            run_worker: config.worker && config.role != Role::Api,
            grace: Duration::from_secs(config.shutdown_grace_secs),
            local_cloud,
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
        let extra = self.local_cloud.clone().map(ggprov_local_cloud::control_router).unwrap_or_default();
        let app = ggprov_api::app(self.state, &self.http, extra);
        let mut serve_stopped = stopped;
        let mut server = tokio::spawn(
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async move {
                    let _ = serve_stopped.wait_for(|stop| *stop).await;
                })
                .into_future(),
        );
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
        // Stop accepting; let in-flight requests and jobs finish within the grace period.
        let _ = stop.send(true);
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
    ggprov_api::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}
