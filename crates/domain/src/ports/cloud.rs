//! The cloud as the domain uses it: the Greengrass V2 control plane, the IoT registry and the
//! certificate authorities (real on AWS, simulated by the local cloud).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BoxError;
use crate::provisioning::CertificateStatus;
use crate::template::{ComponentName, ComponentVersion};
use crate::thing::ThingName;
use crate::time::Timestamp;

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
    /// The state of what the reads answer now (see [`super::DataState`]); `None`: cannot tell,
    /// or every call must be made (the local cloud while faults or quotas are simulated).
    fn data_state(&self) -> Option<super::DataState> {
        None
    }
    /// Whether `name` at `version` exists in the component catalogue, either as a public
    /// AWS-provided component or as one of the account's private components.
    async fn component_version_exists(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<bool, CloudError>;

    /// The platforms a component version runs on (its recipe's manifests, as
    /// `DescribeComponent` lists them); `None` when the version does not exist.
    async fn component_platforms(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<Option<crate::software::PlatformSupport>, CloudError>;

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

    /// The newest deployment (revision) targeting a thing group with this name, if any.
    async fn find_deployment(&self, thing_group: &str, deployment_name: &str) -> Result<Option<String>, CloudError>;

    /// Creates a private component version from an inline JSON recipe
    /// (`CreateComponentVersion`); `AlreadyExists` when that name and version exist.
    async fn create_component_version(&self, recipe: &serde_json::Value) -> Result<(), CloudError>;

    /// Deletes a private component version (`DeleteComponent`); absent is fine.
    async fn delete_component_version(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<(), CloudError>;
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
    /// `RUNNING`, `ERRORED`, ... when the cloud reports it.
    #[serde(default, rename = "lifecycleState", skip_serializing_if = "Option::is_none")]
    pub lifecycle_state: Option<String>,
    /// The containers an application component runs, when the cloud can tell (the local
    /// cloud simulates them; Greengrass does not report containers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerStatus>,
}

/// One container of an application component on a core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub service: String,
    pub image: String,
    /// `running`, `exited`, ...
    pub state: String,
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
    /// The core's detailed status of an ended execution (`FAILED_ROLLBACK_COMPLETE`, ...),
    /// where the backend knows it: the same text its status feed carries, so a core reads
    /// the same whether the feed or the reconciler saw the outcome first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_status: Option<String>,
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
    /// Sets the certificate `REVOKED` (`UpdateCertificate`): it can never be made ACTIVE
    /// again. Revoking a revoked certificate is fine; `NotFound` when absent.
    async fn revoke_certificate(&self, certificate_id: &str) -> Result<(), CloudError>;

    async fn policy_exists(&self, name: &str) -> Result<bool, CloudError>;
    async fn create_policy(&self, name: &str, document: &str) -> Result<(), CloudError>;
    async fn delete_policy(&self, name: &str) -> Result<(), CloudError>;
    async fn attach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError>;
    async fn detach_policy(&self, name: &str, target_arn: &str) -> Result<(), CloudError>;
    /// Attaches a policy to a thing group (`AttachPolicy` with the group's ARN): every thing in
    /// the group inherits it. Idempotent; `NotFound` when the group or policy is absent.
    async fn attach_policy_to_thing_group(&self, name: &str, group: &str) -> Result<(), CloudError>;

    async fn list_thing_groups_for_thing(&self, name: &ThingName) -> Result<Vec<String>, CloudError>;
    /// Creates a thing group if it does not exist.
    async fn ensure_thing_group(&self, name: &str) -> Result<(), CloudError>;
    /// Every thing in a group (all pages); `NotFound` for an unknown group.
    async fn list_things_in_thing_group(&self, name: &str) -> Result<Vec<ThingName>, CloudError>;
    /// Adds the thing to a thing group, creating the group when it does not exist yet. A
    /// thing can be in at most 10 groups (`Rejected` beyond).
    async fn add_thing_to_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError>;
    async fn remove_thing_from_thing_group(&self, group: &str, name: &ThingName) -> Result<(), CloudError>;
    /// Puts a thing into `add` and takes it out of `remove` (`UpdateThingGroupsForThing`: one
    /// call where the adapter has it; by default one call per group).
    async fn update_thing_groups(
        &self,
        name: &ThingName,
        add: Option<&str>,
        remove: &[String],
    ) -> Result<(), CloudError> {
        update_groups_call_by_call(self, name, add, remove).await
    }

    async fn describe_endpoint(&self, kind: EndpointKind) -> Result<String, CloudError>;

    /// The things a fleet-indexing query selects (`SearchIndex`, every page).
    async fn search_things(&self, query: &str) -> Result<Vec<ThingName>, CloudError>;
    /// Whether a query can be run, with what is wrong (and where) when it cannot. By default
    /// the subset ggprov understands ([`crate::thing_query`]).
    async fn check_thing_query(&self, query: &str) -> Result<(), String> {
        crate::thing_query::ThingQuery::parse(query).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// [`IotRegistry::update_thing_groups`] as one call per group (remove, then add).
pub async fn update_groups_call_by_call<I: IotRegistry + ?Sized>(
    iot: &I,
    name: &ThingName,
    add: Option<&str>,
    remove: &[String],
) -> Result<(), CloudError> {
    for group in remove {
        iot.remove_thing_from_thing_group(group, name).await?;
    }
    match add {
        Some(group) => iot.add_thing_to_thing_group(group, name).await,
        None => Ok(()),
    }
}

/// The channel to a core's certificate-rotation component: the core makes its new key and a
/// CSR itself (the key never leaves it), receives the signed certificate, installs it and
/// restarts the nucleus with it. Every call is idempotent for one `request` (a task id).
#[async_trait]
pub trait RotationChannel: Send + Sync {
    /// The core's CSR for `request`; asks for one the first time. `None` while the core has not
    /// answered yet (ask again later).
    async fn csr(
        &self,
        core: &ThingName,
        request: &str,
        key_algorithm: crate::provisioning::KeyAlgorithm,
    ) -> Result<Option<String>, CloudError>;
    /// Hands the signed certificate (with its CA's) to the core.
    async fn deliver(
        &self,
        core: &ThingName,
        request: &str,
        certificate_pem: &str,
        ca_certificate_pem: Option<&str>,
    ) -> Result<(), CloudError>;
    /// What the core reports about the certificate it was handed.
    async fn outcome(&self, core: &ThingName, request: &str) -> Result<crate::rotation::RotationOutcome, CloudError>;

    /// Why this channel cannot rotate at all (rotation tasks are then refused up front).
    fn unavailable(&self) -> Option<&str> {
        None
    }
}

/// Signs device CSRs with a CA and reads certificates (the PKI, for use cases outside the
/// workers: a client device's certificate by CSR through the API).
pub trait CsrSigner: Send + Sync {
    /// A certificate for the CSR's key, subject the thing name, valid `days`, signed by `ca`;
    /// the error says what is wrong with the CSR.
    fn sign(&self, ca: &CaMaterial, thing: &ThingName, csr_pem: &str, days: u32) -> Result<String, String>;
    /// The certificate's validity (epoch milliseconds) and key algorithm.
    fn describe(&self, certificate_pem: &str) -> Result<(i64, i64, String), String>;
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
    /// Every CA ggprov can sign with, by id.
    async fn ca_ids(&self) -> Result<Vec<String>, CloudError>;
    /// Forgets a CA: its key and its registration (`NotFound` when ggprov holds no such CA).
    /// Callers check first that it signs no ACTIVE certificate and is not the default.
    async fn delete_ca(&self, ca_id: &str) -> Result<(), CloudError>;
}
