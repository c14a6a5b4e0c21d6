//! The workers' calls to IoT and Greengrass, made resilient: each call is retried on its own
//! when it fails transiently (throttling, an outage) with jittered exponential backoff, as the
//! AWS SDKs do, and optionally paced so that each API runs at a share of its AWS quota without
//! being throttled. A decorator over the IoT and Greengrass ports.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::ports::{
    CertificateRef, CloudError, CoreDevice, DeploymentRequest, EffectiveDeployment, EndpointKind, Greengrass,
    InstalledComponent, IotRegistry, ThingDescription,
};
use ggprov_domain::provisioning::CertificateStatus;
use ggprov_domain::{ComponentName, ComponentVersion, ThingName};
use tokio::time::Instant;

/// Paces calls per API, adapting to throttling (AIMD): each API starts at `share` of its quota
/// (the account's, or AWS's default); a throttled call cuts its rate to [`Pacer::DECREASE`] of
/// what it was (down to [`Pacer::FLOOR`] of the start), and every call that is not throttled
/// adds [`Pacer::INCREASE`] of the start back, up to the start. One overload cuts once: a call
/// sent before the last cut was paced at the old rate, so its throttling says nothing new (as
/// TCP cuts once per round trip). An account whose real quota is
/// lower than configured (or shared with other clients) settles just under it instead of being
/// throttled on every other call; when the pressure goes, the rate recovers.
pub struct Pacer {
    /// Share of each API's quota to use, e.g. 0.95.
    share: f64,
    /// The account's quotas where they differ from AWS's defaults (calls per second).
    quotas: BTreeMap<String, f64>,
    apis: Mutex<HashMap<&'static str, ApiPace>>,
}

/// One API's pace.
struct ApiPace {
    /// The configured rate: `share` of the quota (calls per second).
    ceiling: f64,
    /// The rate now.
    rate: f64,
    /// When the next call may start.
    next_free: Instant,
    /// When the rate was last cut for throttling.
    cut_at: Option<Instant>,
}

impl Pacer {
    /// The factor a throttled call multiplies its API's rate by.
    pub const DECREASE: f64 = 0.9;
    /// The share of the configured rate that a call not throttled adds back.
    pub const INCREASE: f64 = 0.03;
    /// The lowest rate, as a share of the configured one.
    pub const FLOOR: f64 = 0.05;

    pub fn new(share: f64) -> Self {
        Self::with_quotas(share, BTreeMap::new())
    }

    /// Paces at `share` of `quotas` for the APIs named there, of the AWS defaults for others.
    pub fn with_quotas(share: f64, quotas: BTreeMap<String, f64>) -> Self {
        Self { share, quotas, apis: Mutex::new(HashMap::new()) }
    }

    fn pace<'a>(&self, apis: &'a mut HashMap<&'static str, ApiPace>, api: &'static str) -> &'a mut ApiPace {
        apis.entry(api).or_insert_with(|| {
            let quota = self.quotas.get(api).copied().unwrap_or_else(|| ggprov_domain::quotas::aws_default_rate(api));
            let ceiling = quota * self.share;
            ApiPace { ceiling, rate: ceiling, next_free: Instant::now(), cut_at: None }
        })
    }

    /// Waits for this call's slot; returns when the call is sent.
    async fn slot(&self, api: &'static str) -> Instant {
        let at = {
            let mut apis = self.apis.lock().expect("pacer lock");
            let pace = self.pace(&mut apis, api);
            let now = Instant::now();
            let slot = pace.next_free.max(now);
            pace.next_free = slot + Duration::from_secs_f64(1.0 / pace.rate);
            slot
        };
        tokio::time::sleep_until(at).await;
        at
    }

    /// Adapts the API's rate to how its call, sent at `sent`, went.
    fn observe(&self, api: &'static str, throttled: bool, sent: Instant) {
        let mut apis = self.apis.lock().expect("pacer lock");
        let pace = self.pace(&mut apis, api);
        if throttled {
            if pace.cut_at.is_none_or(|cut| sent >= cut) {
                pace.rate = (pace.rate * Self::DECREASE).max(pace.ceiling * Self::FLOOR);
                pace.cut_at = Some(Instant::now());
            }
        } else {
            pace.rate = (pace.rate + pace.ceiling * Self::INCREASE).min(pace.ceiling);
        }
    }

    /// The API's rate now (calls per second), for tests and figures.
    pub fn rate(&self, api: &'static str) -> f64 {
        let mut apis = self.apis.lock().expect("pacer lock");
        self.pace(&mut apis, api).rate
    }
}

/// How each API's calls went lately: the share that failed transiently, over about the last
/// [`ApiHealth::WINDOW`] calls (the mean until then, an exponential average after).
#[derive(Default)]
pub(crate) struct ApiHealth(Mutex<HashMap<&'static str, Health>>);

#[derive(Default, Clone, Copy)]
struct Health {
    calls: u32,
    failing: f64,
}

impl ApiHealth {
    /// Calls the failing share is averaged over.
    pub(crate) const WINDOW: u32 = 32;
    /// Calls to see before an API is taken to answer: a lone call's failure says nothing.
    pub(crate) const EVIDENCE: u32 = 16;

    /// Records a call's outcome; returns the API's state after it.
    pub(crate) fn observe(&self, api: &'static str, failed: bool) -> crate::ApiState {
        let mut apis = self.0.lock().expect("health lock");
        let health = apis.entry(api).or_default();
        health.calls = health.calls.saturating_add(1);
        let weight = f64::from(health.calls.min(Self::WINDOW));
        health.failing += (f64::from(u8::from(failed)) - health.failing) / weight;
        if health.calls >= Self::EVIDENCE && health.failing < 0.5 {
            crate::ApiState::Answering
        } else {
            crate::ApiState::Failing
        }
    }
}

/// IoT and Greengrass with per-call retries and optional pacing.
pub struct Paced {
    iot: Arc<dyn IotRegistry>,
    greengrass: Arc<dyn Greengrass>,
    pacer: Option<Pacer>,
    retry: crate::RetryPolicy,
    /// Counts every call by API and outcome (`ggprov_cloud_calls_total`).
    metrics: Option<Arc<ggprov_domain::metrics::Metrics>>,
    /// Sets how long a failed call's retries may wait.
    health: ApiHealth,
}

impl Paced {
    /// Retries the calls of `iot` and `greengrass` under `retry`, unpaced and uncounted.
    pub fn new(iot: Arc<dyn IotRegistry>, greengrass: Arc<dyn Greengrass>, retry: crate::RetryPolicy) -> Self {
        Self { iot, greengrass, pacer: None, retry, metrics: None, health: ApiHealth::default() }
    }

    /// Paces the calls with `pacer`.
    #[must_use]
    pub fn paced(mut self, pacer: Option<Pacer>) -> Self {
        self.pacer = pacer;
        self
    }

    /// Counts the calls in `metrics`.
    #[must_use]
    pub fn counted(mut self, metrics: Arc<ggprov_domain::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, api: &'static str, result: Result<(), &CloudError>) {
        if let Some(metrics) = &self.metrics {
            let outcome = match result {
                Ok(()) => "ok",
                Err(CloudError::Throttled { .. }) => "throttled",
                Err(err) if err.is_not_found() => "ok", // an answer, not a failure
                Err(_) => "error",
            };
            metrics.inc("ggprov_cloud_calls_total", &[("api", api), ("outcome", outcome)], 1.0);
        }
    }
}

macro_rules! paced {
    ($self:ident, $api:literal, $call:expr) => {{
        let mut attempt = 1;
        loop {
            let sent = match &$self.pacer {
                Some(pacer) => pacer.slot($api).await,
                None => Instant::now(),
            };
            let result = $call.await;
            $self.count($api, result.as_ref().map(|_| ()));
            if let Some(pacer) = &$self.pacer {
                pacer.observe($api, matches!(result, Err(CloudError::Throttled { .. })), sent);
            }
            let failed = matches!(&result, Err(err) if err.is_transient());
            let api = $self.health.observe($api, failed);
            match result {
                Err(_) if failed && attempt < $self.retry.attempts => {
                    $self.retry.pause(attempt, api).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

#[async_trait]
impl IotRegistry for Paced {
    async fn describe_thing(&self, name: &ThingName) -> Result<Option<ThingDescription>, CloudError> {
        paced!(self, "DescribeThing", self.iot.describe_thing(name))
    }
    async fn create_thing(
        &self,
        name: &ThingName,
        thing_type: Option<&str>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        paced!(self, "CreateThing", self.iot.create_thing(name, thing_type, attributes))
    }
    async fn delete_thing(&self, name: &ThingName) -> Result<(), CloudError> {
        paced!(self, "DeleteThing", self.iot.delete_thing(name))
    }
    async fn list_thing_principals(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        paced!(self, "ListThingPrincipals", self.iot.list_thing_principals(name))
    }
    async fn attach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        paced!(self, "AttachThingPrincipal", self.iot.attach_thing_principal(name, principal_arn))
    }
    async fn detach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError> {
        paced!(self, "DetachThingPrincipal", self.iot.detach_thing_principal(name, principal_arn))
    }
    async fn register_certificate(
        &self,
        pem: &str,
        ca: Option<&str>,
        status: CertificateStatus,
    ) -> Result<CertificateRef, CloudError> {
        paced!(self, "RegisterCertificate", self.iot.register_certificate(pem, ca, status))
    }
    async fn update_certificate_status(&self, id: &str, status: CertificateStatus) -> Result<(), CloudError> {
        paced!(self, "UpdateCertificate", self.iot.update_certificate_status(id, status))
    }
    async fn delete_certificate(&self, id: &str) -> Result<(), CloudError> {
        paced!(self, "DeleteCertificate", self.iot.delete_certificate(id))
    }
    async fn revoke_certificate(&self, id: &str) -> Result<(), CloudError> {
        paced!(self, "UpdateCertificate", self.iot.revoke_certificate(id))
    }
    async fn policy_exists(&self, name: &str) -> Result<bool, CloudError> {
        paced!(self, "GetPolicy", self.iot.policy_exists(name))
    }
    async fn create_policy(&self, name: &str, document: &str) -> Result<(), CloudError> {
        paced!(self, "CreatePolicy", self.iot.create_policy(name, document))
    }
    async fn delete_policy(&self, name: &str) -> Result<(), CloudError> {
        paced!(self, "DeletePolicy", self.iot.delete_policy(name))
    }
    async fn attach_policy(&self, name: &str, target: &str) -> Result<(), CloudError> {
        paced!(self, "AttachPolicy", self.iot.attach_policy(name, target))
    }
    async fn attach_policy_to_thing_group(&self, name: &str, group: &str) -> Result<(), CloudError> {
        paced!(self, "AttachPolicy", self.iot.attach_policy_to_thing_group(name, group))
    }
    async fn detach_policy(&self, name: &str, target: &str) -> Result<(), CloudError> {
        paced!(self, "DetachPolicy", self.iot.detach_policy(name, target))
    }
    async fn list_thing_groups_for_thing(&self, name: &ThingName) -> Result<Vec<String>, CloudError> {
        paced!(self, "ListThingGroupsForThing", self.iot.list_thing_groups_for_thing(name))
    }
    async fn ensure_thing_group(&self, name: &str) -> Result<(), CloudError> {
        paced!(self, "CreateThingGroup", self.iot.ensure_thing_group(name))
    }
    async fn list_things_in_thing_group(&self, name: &str) -> Result<Vec<ThingName>, CloudError> {
        paced!(self, "ListThingsInThingGroup", self.iot.list_things_in_thing_group(name))
    }
    async fn add_thing_to_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        paced!(self, "AddThingToThingGroup", self.iot.add_thing_to_thing_group(group, name))
    }
    async fn remove_thing_from_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError> {
        paced!(self, "RemoveThingFromThingGroup", self.iot.remove_thing_from_thing_group(group, name))
    }
    async fn describe_endpoint(&self, kind: EndpointKind) -> Result<String, CloudError> {
        paced!(self, "DescribeEndpoint", self.iot.describe_endpoint(kind))
    }
    async fn update_thing_groups(
        &self,
        name: &ThingName,
        add: Option<&str>,
        remove: &[String],
    ) -> Result<(), CloudError> {
        paced!(self, "UpdateThingGroupsForThing", self.iot.update_thing_groups(name, add, remove))
    }
    async fn search_things(&self, query: &str) -> Result<Vec<ThingName>, CloudError> {
        paced!(self, "SearchIndex", self.iot.search_things(query))
    }
    async fn check_thing_query(&self, query: &str) -> Result<(), String> {
        self.iot.check_thing_query(query).await
    }
}

#[async_trait]
impl Greengrass for Paced {
    fn data_state(&self) -> Option<ggprov_domain::ports::DataState> {
        self.greengrass.data_state()
    }
    async fn create_component_version(&self, recipe: &serde_json::Value) -> Result<(), CloudError> {
        paced!(self, "CreateComponentVersion", self.greengrass.create_component_version(recipe))
    }
    async fn delete_component_version(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<(), CloudError> {
        paced!(self, "DeleteComponent", self.greengrass.delete_component_version(name, version))
    }
    async fn component_version_exists(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<bool, CloudError> {
        paced!(self, "DescribeComponent", self.greengrass.component_version_exists(name, version))
    }
    async fn component_platforms(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<Option<ggprov_domain::software::PlatformSupport>, CloudError> {
        paced!(self, "DescribeComponent", self.greengrass.component_platforms(name, version))
    }
    async fn get_core_device(&self, name: &ThingName) -> Result<Option<CoreDevice>, CloudError> {
        paced!(self, "GetCoreDevice", self.greengrass.get_core_device(name))
    }
    async fn delete_core_device(&self, name: &ThingName) -> Result<(), CloudError> {
        paced!(self, "DeleteCoreDevice", self.greengrass.delete_core_device(name))
    }
    async fn list_installed_components(&self, name: &ThingName) -> Result<Vec<InstalledComponent>, CloudError> {
        paced!(self, "ListInstalledComponents", self.greengrass.list_installed_components(name))
    }
    async fn list_effective_deployments(&self, name: &ThingName) -> Result<Vec<EffectiveDeployment>, CloudError> {
        paced!(self, "ListEffectiveDeployments", self.greengrass.list_effective_deployments(name))
    }
    async fn associate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError> {
        paced!(
            self,
            "BatchAssociateClientDeviceWithCoreDevice",
            self.greengrass.associate_client_devices(core, devices)
        )
    }
    async fn disassociate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError> {
        paced!(
            self,
            "BatchDisassociateClientDeviceFromCoreDevice",
            self.greengrass.disassociate_client_devices(core, devices)
        )
    }
    async fn list_client_devices(&self, core: &ThingName) -> Result<Vec<ThingName>, CloudError> {
        paced!(self, "ListClientDevicesAssociatedWithCoreDevice", self.greengrass.list_client_devices(core))
    }
    async fn create_deployment(&self, request: &DeploymentRequest) -> Result<String, CloudError> {
        paced!(self, "CreateDeployment", self.greengrass.create_deployment(request))
    }
    async fn find_deployment(&self, thing_group: &str, deployment_name: &str) -> Result<Option<String>, CloudError> {
        paced!(self, "ListDeployments", self.greengrass.find_deployment(thing_group, deployment_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_at_the_share_of_the_quota() {
        let pacer = Pacer::new(1.0);
        let start = Instant::now();
        for _ in 0..11 {
            pacer.slot("RegisterCertificate").await;
        }
        // 10/s: the 11th call waits for the second slot-second.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        let other = Instant::now();
        pacer.slot("CreateThing").await;
        assert_eq!(other.elapsed(), Duration::ZERO, "APIs are paced independently");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_are_a_random_share_of_a_ceiling_that_doubles_up_to_its_cap() {
        use crate::ApiState::{Answering, Failing};
        let policy = crate::RetryPolicy { attempts: 10, base: Duration::from_millis(100) };
        let ceilings = [
            (1, Failing, 100),
            (3, Failing, 400),
            (4, Failing, 800),
            (9, Failing, 800),
            (1, Answering, 100),
            (2, Answering, 200),
            (5, Answering, 200),
        ];
        for (attempt, api, ceiling) in ceilings {
            let ceiling = Duration::from_millis(ceiling);
            assert_eq!(policy.ceiling(attempt, api), ceiling, "attempt {attempt}, {api:?}");
            let (mut total, mut longest, mut shortest) = (Duration::ZERO, Duration::ZERO, Duration::MAX);
            for _ in 0..400 {
                let start = Instant::now();
                policy.pause(attempt, api).await;
                let waited = start.elapsed();
                total += waited;
                longest = longest.max(waited);
                shortest = shortest.min(waited);
            }
            // Full jitter: uniform over the whole window, so half the ceiling on average
            // (400 draws: the mean leaves 0.42..0.58 of it once in about 10^7 runs).
            let mean = total / 400;
            assert!(longest <= ceiling, "attempt {attempt} waited {longest:?}, over {ceiling:?}");
            assert!(shortest < ceiling / 10, "attempt {attempt}: no wait near zero ({shortest:?})");
            assert!(
                mean >= ceiling.mul_f64(0.42) && mean <= ceiling.mul_f64(0.58),
                "attempt {attempt}: mean wait {mean:?} for a ceiling of {ceiling:?}"
            );
        }
        let start = Instant::now();
        crate::RetryPolicy { attempts: 10, base: Duration::from_secs(2) }.pause(9, Failing).await;
        assert!(start.elapsed() <= Duration::from_secs(5), "never more than 5 s");
    }

    #[test]
    fn an_api_answers_once_enough_calls_show_most_of_them_answered() {
        use crate::ApiState::{Answering, Failing};
        let health = ApiHealth::default();
        // A lone call, or a few, say nothing: a failure may be an outage.
        for _ in 1..ApiHealth::EVIDENCE {
            assert_eq!(health.observe("CreateThing", false), Failing);
        }
        assert_eq!(health.observe("CreateThing", false), Answering);
        // One call in four failing (the fault run's 24 %) is bad luck: still answering.
        for i in 0..200 {
            assert_eq!(health.observe("CreateThing", i % 4 == 0), Answering, "call {i}");
        }
        // An outage: within the window, the API counts as failing, and stays so.
        let turned = (1..=ApiHealth::WINDOW).find(|_| health.observe("CreateThing", true) == Failing);
        assert!(turned.is_some_and(|calls| calls <= ApiHealth::WINDOW / 2), "{turned:?}");
        for _ in 0..100 {
            assert_eq!(health.observe("CreateThing", true), Failing);
        }
        // When it comes back, most calls answered again turn it back.
        let recovered = (1..=ApiHealth::WINDOW).find(|_| health.observe("CreateThing", false) == Answering);
        assert!(recovered.is_some(), "still failing after {} answered calls", ApiHealth::WINDOW);
        // APIs are told apart.
        assert_eq!(health.observe("RegisterCertificate", false), Failing, "a first call to another API");
    }

    #[test]
    fn throttling_cuts_the_rate_and_calls_that_pass_bring_it_back_to_the_configured_one() {
        let pacer = Pacer::new(1.0);
        assert_eq!(pacer.rate("RegisterCertificate"), 10.0);
        let before = Instant::now();
        pacer.observe("RegisterCertificate", true, Instant::now());
        assert!((pacer.rate("RegisterCertificate") - 9.0).abs() < 1e-9, "multiplicative decrease");
        // Calls sent before the cut went out at the old rate: their throttling cuts no further.
        pacer.observe("RegisterCertificate", true, before);
        assert!((pacer.rate("RegisterCertificate") - 9.0).abs() < 1e-9, "one cut per overload");
        for _ in 0..1_000 {
            pacer.observe("RegisterCertificate", true, Instant::now());
        }
        assert!((pacer.rate("RegisterCertificate") - 0.5).abs() < 1e-9, "never below the floor");
        pacer.observe("RegisterCertificate", false, Instant::now());
        assert!((pacer.rate("RegisterCertificate") - 0.8).abs() < 1e-9, "additive increase");
        for _ in 0..1_000 {
            pacer.observe("RegisterCertificate", false, Instant::now());
        }
        assert_eq!(pacer.rate("RegisterCertificate"), 10.0, "never above the configured rate");
        assert_eq!(pacer.rate("CreateThing"), 100.0, "APIs adapt independently");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_api_is_paced_at_its_reduced_rate() {
        let pacer = Pacer::with_quotas(1.0, BTreeMap::from([("RegisterCertificate".to_owned(), 4.0)]));
        pacer.observe("RegisterCertificate", true, Instant::now());
        tokio::time::advance(Duration::from_millis(1)).await;
        pacer.observe("RegisterCertificate", true, Instant::now());
        let rate = pacer.rate("RegisterCertificate");
        let start = Instant::now();
        for _ in 0..3 {
            pacer.slot("RegisterCertificate").await;
        }
        // Two intervals at the reduced rate (the paused clock counts whole milliseconds).
        let expected = 2.0 / rate;
        assert!((start.elapsed().as_secs_f64() - expected).abs() < 0.002, "{:?} vs {expected} s", start.elapsed());
        assert!(expected > 2.0 / 4.0, "slower than the configured 4/s");
    }
}
