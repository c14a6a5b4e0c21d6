//! What a backend hands the composition root: the adapter behind every port, built and
//! bootstrapped by the backend's own constructor (`ggprov_embedded::open`,
//! `ggprov_aws::connect`). The root only picks one and starts roles on it.

use std::sync::Arc;

use crate::ports::{
    ApplicationStore, ArtifactStore, CertificateAuthorities, CoreStore, EventPublisher, Greengrass, IotRegistry,
    ProvisioningObserver, ReadinessCheck, StatusFeed, TemplateStore, WorkQueue,
};

/// The IoT policy the bundled core provisioning template attaches to a core's certificate.
pub const GREENGRASS_CORE_POLICY: &str = "GreengrassV2IoTThingPolicy";
/// The IoT policy that lets a core use the token exchange role alias.
pub const TOKEN_EXCHANGE_POLICY: &str = "GreengrassV2TokenExchangeRoleAliasPolicy";

/// The adapter behind every port, for one backend.
pub struct Adapters {
    pub templates: Arc<dyn TemplateStore>,
    pub applications: Arc<dyn ApplicationStore>,
    /// The region deployments run in (private ECR images of applications must be there).
    pub region: String,
    pub store: Arc<dyn CoreStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub artifacts: Arc<dyn ArtifactStore>,
    /// The IoT registry and Greengrass as the backend offers them (the root adds per-call
    /// retries and pacing on top: one retry layer, decision 44).
    pub iot: Arc<dyn IotRegistry>,
    pub greengrass: Arc<dyn Greengrass>,
    pub cas: Arc<dyn CertificateAuthorities>,
    /// Where reported deployment status arrives.
    pub feed: Arc<dyn StatusFeed>,
    /// Told when a core is provisioned (the local cloud powers simulated cores on).
    pub observer: Arc<dyn ProvisioningObserver>,
    /// Publishes the outbox, when the backend has somewhere to publish to.
    pub publisher: Option<Arc<dyn EventPublisher>>,
    /// What `GET /ready` checks.
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// The store, queue and bucket calls the backend's clients made, when it counts them.
    pub store_calls: Option<Arc<crate::metrics::StoreCalls>>,
}

/// Nobody powers on a real core but a person: a backend without simulated cores tells no one.
pub struct NoObserver;

#[async_trait::async_trait]
impl ProvisioningObserver for NoObserver {
    async fn core_provisioned(&self, _name: &crate::thing::ThingName, _nucleus_version: &str) {}
}
