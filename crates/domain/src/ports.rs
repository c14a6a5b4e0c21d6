//! Port traits: what the domain needs from the outside world. Adapters (SQLite, DynamoDB,
//! the local cloud, AWS) implement them and translate their own errors into these.

use async_trait::async_trait;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cores::{Core, Device, Event, NewCore, StoredEvent, Task, TaskFamily, TaskItem, TemplateRef, VersionCounts};
use crate::pagination::{Page, PageRequest};
use crate::provisioning::{CertificateStatus, ProvisioningJournal};
use crate::task::TaskId;
use crate::template::{ComponentName, ComponentVersion, Template, TemplateName};
use crate::thing::ThingName;
use crate::time::Timestamp;

/// A boxed error from an adapter, kept for logs; never shown to API clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found the item already there.
    #[error("the item already exists")]
    AlreadyExists,
    /// A conditional write lost a race with another writer; re-read and try again.
    #[error("the item was changed by another writer")]
    Conflict,
    /// An update named an item that does not exist.
    #[error("the item does not exist")]
    NotFound,
    /// The store could not be reached or failed; the operation may be retried later.
    #[error("the store failed: {0}")]
    Unavailable(#[source] BoxError),
}

impl StoreError {
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Self::Unavailable(err.into())
    }
}

/// Persistence of templates and their versions.
///
/// Every version is kept; the latest version is the template's current state. Writes are
/// conditional so that concurrent updates never overwrite each other.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores version 1 of a new template; `AlreadyExists` if the name is taken.
    async fn create_template(&self, template: &Template) -> Result<(), StoreError>;

    /// Stores `template` as the new latest version, on condition that the current latest
    /// version is `template.version - 1` (`Conflict` otherwise, `NotFound` if the template
    /// no longer exists).
    async fn append_template_version(&self, template: &Template) -> Result<(), StoreError>;

    /// The latest version of a template.
    async fn latest_template(&self, name: &TemplateName) -> Result<Option<Template>, StoreError>;

    /// One version of a template.
    async fn template_version(&self, name: &TemplateName, version: u32) -> Result<Option<Template>, StoreError>;

    /// Latest versions of all templates, in byte order of their names.
    async fn list_templates(&self, page: PageRequest<TemplateName>)
    -> Result<Page<Template, TemplateName>, StoreError>;

    /// All versions of one template in ascending numeric order (empty for an unknown template).
    async fn list_template_versions(
        &self,
        name: &TemplateName,
        page: PageRequest<u32>,
    ) -> Result<Page<Template, u32>, StoreError>;

    /// Deletes every version of a template; `false` if it did not exist.
    async fn delete_template(&self, name: &TemplateName) -> Result<bool, StoreError>;
}

/// A dependency the service needs to be ready (store, queue), checked by `GET /ready`.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// A short name for the readiness report, e.g. `store`.
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), BoxError>;
}

/// What can go wrong when calling the cloud (IoT, Greengrass), real or simulated.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The named resource does not exist.
    #[error("{api}: {message}")]
    NotFound { api: &'static str, message: String },
    /// The resource exists already (with this id, when the API says it).
    #[error("{api}: {message}")]
    AlreadyExists { api: &'static str, message: String, resource_id: Option<String> },
    /// The request was refused as invalid or conflicting with the resource's state; retrying
    /// the same request will not help.
    #[error("{api}: {message}")]
    Rejected { api: &'static str, message: String },
    /// The API refused the call for its rate; retry with backoff.
    #[error("throttled by {api}")]
    Throttled { api: &'static str },
    /// The cloud could not be reached or failed.
    #[error("{api} failed: {source}")]
    Unavailable {
        api: &'static str,
        #[source]
        source: BoxError,
    },
}

impl CloudError {
    /// Whether retrying later may succeed (throttling, outages).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// The Greengrass V2 control plane as the domain uses it.
#[async_trait]
pub trait Greengrass: Send + Sync {
    /// Whether `name` at `version` exists in the component catalogue, either as a public
    /// AWS-provided component or as one of the account's private components.
    async fn component_version_exists(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<bool, CloudError>;

    /// The core device registered under this thing name, if any.
    async fn get_core_device(&self, name: &ThingName) -> Result<Option<CoreDevice>, CloudError>;

    /// Unregisters a core device; absent is fine.
    async fn delete_core_device(&self, name: &ThingName) -> Result<(), CloudError>;

    /// Every component installed on the core (all pages).
    async fn list_installed_components(&self, name: &ThingName) -> Result<Vec<InstalledComponent>, CloudError>;

    /// Every deployment in effect on the core (all pages).
    async fn list_effective_deployments(&self, name: &ThingName) -> Result<Vec<EffectiveDeployment>, CloudError>;

    /// Associates client devices with a core (at most 100 a call); returns the devices that
    /// failed, with the reason.
    async fn associate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError>;

    /// Disassociates client devices from a core (at most 100 a call); not associated is fine.
    async fn disassociate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError>;

    /// Every client device associated with the core (all pages).
    async fn list_client_devices(&self, core: &ThingName) -> Result<Vec<ThingName>, CloudError>;

    /// Creates a deployment on a thing group; returns its id.
    async fn create_deployment(&self, request: &DeploymentRequest) -> Result<String, CloudError>;

    /// The newest deployment targeting a thing group, if any.
    async fn find_deployment(&self, thing_group: &str) -> Result<Option<String>, CloudError>;
}

/// A Greengrass deployment to create (`CreateDeployment`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRequest {
    /// Target thing group name.
    pub thing_group: String,
    pub deployment_name: String,
    pub components: BTreeMap<String, ComponentSpec>,
    /// Greengrass `iotJobConfiguration`.
    pub iot_job_configuration: Option<serde_json::Value>,
    pub deployment_policies: Option<serde_json::Value>,
}

/// One component of a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSpec {
    pub version: String,
    pub configuration_update: Option<serde_json::Value>,
    pub run_with: Option<serde_json::Value>,
}

/// A deployment outcome a core reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOutcome {
    /// Position in the feed; the next read starts after it.
    pub position: u64,
    pub core_name: String,
    pub deployment_id: String,
    pub succeeded: bool,
    /// Greengrass detailed status, e.g. `SUCCESSFUL`, `FAILED_ROLLBACK_COMPLETE`.
    pub detailed_status: String,
    pub reason: Option<String>,
    pub time: Timestamp,
}

/// A feed of deployment outcomes read by position (the local cloud's status event log).
#[async_trait]
pub trait PositionedStatusFeed: Send + Sync {
    /// Outcomes after `after`, oldest first.
    async fn deployment_outcomes(&self, after: u64, limit: u32) -> Result<Vec<DeploymentOutcome>, CloudError>;
}

/// What a status message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSignal {
    /// A core reported the outcome of a deployment (Greengrass deployment status events).
    Outcome(DeploymentOutcome),
    /// Something changed on this core (an IoT job execution event): ask Greengrass.
    CoreChanged(ThingName),
}

/// A status message and the receipt that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedStatus {
    pub signal: StatusSignal,
    pub receipt: String,
}

/// Where reported status arrives: the local cloud's feed behind a stored cursor, or an SQS
/// queue fed by EventBridge rules on AWS. At least once: a message not acknowledged comes
/// again, so applying one must be idempotent (stale outcomes are ignored by the store).
#[async_trait]
pub trait StatusFeed: Send + Sync {
    /// Up to `max` messages, oldest first where the source orders them.
    async fn receive(&self, max: u32) -> Result<Vec<ReceivedStatus>, CloudError>;
    /// The messages with these receipts have been applied.
    async fn acknowledge(&self, receipts: &[String]) -> Result<(), CloudError>;
}

/// Publishes outbox events to subscribers (EventBridge on AWS).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes the events (at most 10 a call); returns the ids of those that failed and
    /// should be tried again.
    async fn publish(&self, events: &[StoredEvent]) -> Result<Vec<String>, CloudError>;
}

/// A Greengrass core device as Greengrass reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreDevice {
    /// `HEALTHY` or `UNHEALTHY`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status_update_timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A component installed on a core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledComponent {
    pub name: String,
    pub version: String,
}

/// A deployment in effect on a core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveDeployment {
    pub deployment_id: String,
    pub deployment_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_job_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_device_execution_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// A thing as the IoT registry describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingDescription {
    pub name: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_type: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A registered certificate: IoT's id and ARN for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRef {
    pub id: String,
    pub arn: String,
}

/// Which IoT endpoint to describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `iot:Data-ATS`: MQTT and the data plane.
    DataAts,
    /// `iot:CredentialProvider`: the token exchange service.
    CredentialProvider,
}

/// The AWS IoT registry (things, certificates, policies, groups) as the domain uses it.
/// Every call that creates something tolerates a retry: creating what exists reports
/// `AlreadyExists`, registering a certificate again returns the existing registration.
#[async_trait]
pub trait IotRegistry: Send + Sync {
    async fn describe_thing(&self, name: &ThingName) -> Result<Option<ThingDescription>, CloudError>;
    async fn create_thing(
        &self,
        name: &ThingName,
        thing_type: Option<&str>,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), CloudError>;
    /// Fails with `Rejected` while principals are attached; `NotFound` when absent.
    async fn delete_thing(&self, name: &ThingName) -> Result<(), CloudError>;
    async fn list_thing_principals(&self, name: &ThingName) -> Result<Vec<String>, CloudError>;
    async fn attach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError>;
    async fn detach_thing_principal(&self, name: &ThingName, principal_arn: &str) -> Result<(), CloudError>;

    /// Registers a certificate (with its CA's certificate when it has one). Registering the
    /// same certificate again returns the existing id and ARN.
    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: Option<&str>,
        status: CertificateStatus,
    ) -> Result<CertificateRef, CloudError>;
    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> Result<(), CloudError>;
    async fn delete_certificate(&self, certificate_id: &str) -> Result<(), CloudError>;

    async fn policy_exists(&self, name: &str) -> Result<bool, CloudError>;
    async fn create_policy(&self, name: &str, document: &str) -> Result<(), CloudError>;
    async fn delete_policy(&self, name: &str) -> Result<(), CloudError>;
    async fn attach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError>;
    async fn detach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError>;

    async fn list_thing_groups_for_thing(&self, name: &ThingName) -> Result<Vec<String>, CloudError>;
    /// Creates a thing group if it does not exist.
    async fn ensure_thing_group(&self, name: &str) -> Result<(), CloudError>;
    /// Every thing in a group (all pages); `NotFound` for an unknown group.
    async fn list_things_in_thing_group(&self, name: &str) -> Result<Vec<ThingName>, CloudError>;
    /// Adds the thing to a thing group, creating the group when it does not exist yet. A
    /// thing can be in at most 10 groups (`Rejected` beyond).
    async fn add_thing_to_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError>;
    async fn remove_thing_from_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError>;

    async fn describe_endpoint(&self, kind: EndpointKind) -> Result<String, CloudError>;
}

/// Private key material. Its `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    /// The PEM text; for signing and for the certs bundle only, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// A certificate authority ggprov can sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaMaterial {
    pub ca_id: String,
    pub certificate_pem: String,
    pub private_key: SecretPem,
}

/// Where CA certificates and keys come from (files on the embedded default; IoT + SSM on AWS).
#[async_trait]
pub trait CertificateAuthorities: Send + Sync {
    /// The CA with this id, or `None` when ggprov holds no such CA.
    async fn ca(&self, ca_id: &str) -> Result<Option<CaMaterial>, CloudError>;
    /// The CA used when a request names none.
    fn default_ca_id(&self) -> Option<String>;
}

/// Storage of artifacts (certs bundles, installer configs, provisioning templates).
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// The bucket name shown in artifact records.
    fn bucket(&self) -> &str;
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes; absent is fine.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// A time-limited download link, when the store offers them and they are enabled.
    async fn download_url(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

/// A unit of work on the queue: its kind and a small JSON payload (ids only, never secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub payload: serde_json::Value,
}

/// A job handed to a worker under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub job: Job,
    /// Identifies this lease; acking with an expired receipt fails.
    pub receipt: String,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// Counts of jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub dead: u64,
    /// How long the oldest waiting job has waited, when the queue can tell (SQS cannot cheaply).
    pub oldest_wait_ms: Option<u64>,
}

/// A durable at-least-once work queue with leases (SQLite on the embedded default, SQS on AWS).
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), StoreError>;
    /// Up to `max` visible jobs, each leased for `lease` (invisible to others meanwhile).
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, StoreError>;
    /// The job is done: delete it. `Ok(false)` when the lease had been lost (another worker may have it).
    async fn ack(&self, receipt: &str) -> Result<bool, StoreError>;
    /// Makes the job visible again after `delay`, recording why.
    async fn retry_later(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), StoreError>;
    /// Keeps a job in hand invisible for `lease` from now (long work); `Ok(false)` when the
    /// lease had been lost.
    async fn extend_lease(&self, receipt: &str, lease: Duration) -> Result<bool, StoreError>;
    /// Moves the job in hand to the dead-letter queue with the reason.
    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), StoreError>;
    async fn depth(&self) -> Result<QueueDepth, StoreError>;
    /// Jobs in the dead-letter queue with their last error.
    async fn dead_letters(&self) -> Result<Vec<(Job, String)>, StoreError>;
}

/// Which cores to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreFilter {
    pub template_name: Option<String>,
    pub template_version: Option<u32>,
    pub failed_only: bool,
}

/// Persistence of core tasks, cores, provisioning journals and the event outbox.
#[async_trait]
pub trait CoreStore: Send + Sync {
    /// Stores a new task with its items (all `Waiting`).
    async fn create_task(&self, task: &Task) -> Result<(), StoreError>;
    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// The task with its derived status but without its items (what a worker needs per batch).
    async fn task_header(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// Tasks of one family by id, without their items.
    async fn list_tasks(&self, family: TaskFamily, page: PageRequest<TaskId>)
    -> Result<Page<Task, TaskId>, StoreError>;
    /// Marks a `Waiting` item `InProgress` and returns it (also when already started or ended).
    async fn start_item(&self, task: &TaskId, name: &ThingName) -> Result<Option<TaskItem<NewCore>>, StoreError>;
    /// Ends an item with `Failure`, writing its event (if any) in the same transaction.
    async fn fail_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        message: &str,
        event: Option<&Event>,
    ) -> Result<(), StoreError>;
    /// Ends a `Create` item: upserts the core (keeping its template state when it exists),
    /// marks the item `Success` and writes the event, in one transaction.
    async fn complete_core_create(&self, task: &TaskId, core: &Core, event: &Event) -> Result<(), StoreError>;
    /// Ends a `Delete` item: removes the core and its journal, marks the item `Success`
    /// and writes the event, in one transaction.
    async fn complete_core_delete(&self, task: &TaskId, name: &ThingName, event: &Event) -> Result<(), StoreError>;

    /// Ends a device `Create` item: upserts the device, marks the item `Success` and writes
    /// the event, in one transaction.
    async fn complete_device_create(&self, task: &TaskId, device: &Device, event: &Event) -> Result<(), StoreError>;
    /// Removes a device and its journal with its event; ends the item when a task did it.
    async fn complete_device_delete(
        &self,
        task: Option<&TaskId>,
        name: &ThingName,
        event: &Event,
    ) -> Result<(), StoreError>;
    async fn device(&self, name: &ThingName) -> Result<Option<Device>, StoreError>;
    /// The client devices ggprov associated with a core, by name.
    async fn list_devices_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, StoreError>;

    async fn core(&self, name: &ThingName) -> Result<Option<Core>, StoreError>;
    async fn list_cores(
        &self,
        filter: &CoreFilter,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Core, ThingName>, StoreError>;

    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError>;
    async fn save_journal(&self, name: &ThingName, journal: &ProvisioningJournal) -> Result<(), StoreError>;

    /// Deployment tasks created before `before` whose targets were never expanded (for the sweeper).
    async fn unexpanded_deployment_tasks(&self, before: Timestamp) -> Result<Vec<TaskId>, StoreError>;

    /// Items not ended, of tasks created before `before` (for the sweeper).
    async fn unfinished_items(&self, before: Timestamp) -> Result<Vec<(TaskId, ThingName)>, StoreError>;

    /// Outbox events, newest first.
    async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError>;
    /// Up to `limit` unpublished events, oldest first, each claimed for `lease` so that
    /// concurrent relays do not publish the same event twice.
    async fn claim_unpublished_events(&self, limit: u32, lease: Duration) -> Result<Vec<StoredEvent>, StoreError>;
    /// Marks events published.
    async fn mark_events_published(&self, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// How many events are not published yet.
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;

    /// Items of a task by name (deployment records of a deployment task).
    async fn task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError>;
    /// The deployment-task records of a core, by task id.
    async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError>;
    /// Records the cores a deployment task targets (items `Waiting`) and its event, once;
    /// `false` when it was expanded already.
    async fn expand_deployment_task(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        batch_size: u32,
        event: &Event,
    ) -> Result<bool, StoreError>;
    /// Ends a deployment task that matched nothing.
    async fn fail_deployment_task(&self, task: &TaskId, message: &str) -> Result<(), StoreError>;

    /// The Greengrass deployment of a template version, if created.
    async fn template_deployment(&self, template: &TemplateRef) -> Result<Option<String>, StoreError>;
    /// Records it; returns the id recorded (the earlier one if another writer won).
    async fn save_template_deployment(
        &self,
        template: &TemplateRef,
        thing_group: &str,
        deployment_id: &str,
    ) -> Result<String, StoreError>;
    /// The template version a Greengrass deployment deploys.
    async fn template_of_deployment(&self, deployment_id: &str) -> Result<Option<TemplateRef>, StoreError>;

    /// Ends a deployment item with success: the core's desired template is set and its
    /// deployment marked in progress, counters moving in the same transaction.
    async fn complete_deployment_item(
        &self,
        task: &TaskId,
        core: &ThingName,
        template: &TemplateRef,
        deployment_id: &str,
    ) -> Result<(), StoreError>;
    /// Ends a deployment item with failure; the core (if any) records `Failure` and the message.
    async fn fail_deployment_item(&self, task: &TaskId, core: &ThingName, message: &str) -> Result<(), StoreError>;
    /// Applies a reported outcome (unless stale) with its event; `false` when ignored.
    async fn apply_deployment_outcome(
        &self,
        outcome: &DeploymentOutcome,
        template: &TemplateRef,
        event: &Event,
    ) -> Result<bool, StoreError>;
    /// Cores whose deployment is in progress (for the reconciler).
    async fn cores_in_progress(&self) -> Result<Vec<Core>, StoreError>;

    /// The fleet counters by template and version.
    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError>;
    /// The same, counted from the core records.
    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError>;

    async fn ingest_cursor(&self, feed: &str) -> Result<u64, StoreError>;
    async fn save_ingest_cursor(&self, feed: &str, position: u64) -> Result<(), StoreError>;
}

/// Told when a core has been provisioned. The local cloud uses it to "power on" simulated
/// cores; on AWS nothing listens (a person installs the core software).
#[async_trait]
pub trait ProvisioningObserver: Send + Sync {
    async fn core_provisioned(&self, name: &ThingName, nucleus_version: &str);
}
