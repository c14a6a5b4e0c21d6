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
    /// The cores' certificate-rotation component (the local cloud simulates it).
    pub rotation: Arc<dyn crate::ports::RotationChannel>,
    /// Publishes the outbox, when the backend has somewhere to publish to.
    pub publisher: Option<Arc<dyn EventPublisher>>,
    /// What `GET /ready` checks.
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// The store, queue and bucket calls the backend's clients made, when it counts them.
    pub store_calls: Option<Arc<crate::metrics::StoreCalls>>,
}

/// A backend that cannot reach a rotation component on the cores yet: every rotation item
/// fails with the reason, and nothing is changed on the thing.
pub struct NoRotationChannel(pub &'static str);

impl NoRotationChannel {
    fn refuse(&self) -> crate::ports::CloudError {
        crate::ports::CloudError::Rejected { api: "RotationChannel", message: self.0.to_owned() }
    }
}

#[async_trait::async_trait]
impl crate::ports::RotationChannel for NoRotationChannel {
    async fn csr(
        &self,
        _core: &crate::thing::ThingName,
        _request: &str,
        _key_algorithm: crate::provisioning::KeyAlgorithm,
    ) -> Result<Option<String>, crate::ports::CloudError> {
        Err(self.refuse())
    }

    async fn deliver(
        &self,
        _core: &crate::thing::ThingName,
        _request: &str,
        _certificate_pem: &str,
        _ca_certificate_pem: Option<&str>,
    ) -> Result<(), crate::ports::CloudError> {
        Err(self.refuse())
    }

    async fn outcome(
        &self,
        _core: &crate::thing::ThingName,
        _request: &str,
    ) -> Result<crate::rotation::RotationOutcome, crate::ports::CloudError> {
        Err(self.refuse())
    }

    fn unavailable(&self) -> Option<&str> {
        Some(self.0)
    }
}

/// Nobody powers on a real core but a person: a backend without simulated cores tells no one.
pub struct NoObserver;

#[async_trait::async_trait]
impl ProvisioningObserver for NoObserver {
    async fn core_provisioned(&self, _name: &crate::thing::ThingName, _nucleus_version: &str) {}
}
