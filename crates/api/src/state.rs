//! Shared application state handed to every handler.

use std::ops::Deref;
use std::sync::Arc;

use ggprov_domain::TemplateService;
use ggprov_domain::core_service::CoreService;
use ggprov_domain::core_task_service::CoreTaskService;
use ggprov_domain::deployment_service::DeploymentService;
use ggprov_domain::device_service::DeviceService;
use ggprov_domain::ports::ReadinessCheck;
use ggprov_domain::provisioning_templates::ProvisioningTemplates;

/// The services and checks the API calls. Built once by the composition root.
pub struct App {
    pub templates: TemplateService,
    pub applications: ggprov_domain::application_service::ApplicationService,
    pub core_tasks: CoreTaskService,
    pub cores: CoreService,
    /// `GET /cores/{name}` bodies, exact per data state.
    pub core_bodies: crate::cores::CoreBodies,
    pub devices: DeviceService,
    /// The certificate inventory and revocation.
    pub certificates: ggprov_domain::certificate_service::CertificateService,
    pub deployments: DeploymentService,
    /// Software update tasks.
    pub software_updates: ggprov_domain::software_update::SoftwareUpdateService,
    /// Rollout actions and retries of deployment tasks.
    pub rollouts: ggprov_domain::rollout_service::Rollouts,
    pub provisioning_templates: ProvisioningTemplates,
    /// EventBridge `source` of the events (`GET /events` shows it).
    pub event_source: String,
    /// Dependencies `GET /ready` checks.
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// The process's metrics, rendered by `GET /metrics`.
    pub metrics: Arc<ggprov_domain::metrics::Metrics>,
    /// Figures read at scrape time.
    pub gauges: Option<Arc<dyn Gauges>>,
    /// Where `Idempotency-Key`s of POST requests are recorded (none: the header is ignored).
    pub idempotency: Option<Arc<dyn ggprov_domain::ports::IdempotencyRecords>>,
    /// Set to `true` when the server stops: open event streams end so shutdown need not wait.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// Figures read when `/metrics` is scraped (queue depth, outbox backlog).
#[async_trait::async_trait]
pub trait Gauges: Send + Sync {
    async fn refresh(&self, metrics: &ggprov_domain::metrics::Metrics);
}

/// Cheap-to-clone handle on [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
