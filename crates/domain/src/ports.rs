//! Port traits: what the domain needs from the outside world. Adapters (SQLite, DynamoDB,
//! the local cloud, AWS) implement them and translate their own errors into these.
//!
//! One file per concern: [`records`] (the store, split by capability), `queue`, `cloud`
//! (IoT, Greengrass, CAs), `status` (reported status and event publishing), `artifacts`,
//! `idempotency`; everything is re-exported here.

mod artifacts;
mod cloud;
mod idempotency;
mod queue;
pub mod records;
mod status;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::application::{Application, ApplicationName};
use crate::cores::Event;
use crate::pagination::{Page, PageRequest};
use crate::task::TaskId;
use crate::template::{Template, TemplateName};
use crate::thing::{ThingKind, ThingName};

pub use artifacts::ArtifactStore;

/// An opaque token of the data behind a backend's reads (on the embedded default, SQLite's
/// WAL-index header): two equal tokens mean no write was committed in between, so a value built
/// from reads taken after the first is still exact. Backends that cannot tell answer `None`.
pub type DataState = [u8; 96];
pub use cloud::{
    CaMaterial, CertificateAuthorities, CertificateRef, CloudError, ComponentSpec, ContainerStatus, CoreDevice,
    CsrSigner, DeploymentRequest, EffectiveDeployment, EndpointKind, Greengrass, InstalledComponent, IotRegistry,
    RotationChannel, SecretPem, ThingDescription, update_groups_call_by_call,
};
pub use idempotency::{IdempotencyClaim, IdempotencyRecords, RecordedResponse};
pub use queue::{Delivery, Job, QueueDepth, WorkQueue};
pub use records::{
    CertificateInventory, CoreFilter, CoreRecords, CoreStore, DeploymentRecords, DeviceRecords, FleetCounters,
    IngestCursors, Outbox, ProvisioningJournals, RolloutRecords, SoftwareUpdateRecords, StartedItem, TaskStore,
};
pub use status::{DeploymentOutcome, EventPublisher, PositionedStatusFeed, ReceivedStatus, StatusFeed, StatusSignal};

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
    /// The backend cannot store this input (a record or key over its limit); retrying the
    /// same input cannot help. The text names the limit.
    #[error("{0}")]
    TooLarge(String),
    /// A new task names a thing that already has an open item (one owner per thing).
    #[error("'{name}' is being worked on by task {task}")]
    Claimed { name: ThingName, task: TaskId },
    /// A new task would make a thing of one kind the other kind (a core is never a device).
    #[error("'{name}' is a {is}")]
    OtherKind { name: ThingName, is: ThingKind },
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

    /// The latest version number of each of `names` that exists (what the fleet summary shows
    /// as `latestVersion`). By default one [`Self::latest_template`] read each.
    async fn latest_versions(&self, names: &[TemplateName]) -> Result<BTreeMap<String, u32>, StoreError> {
        let mut versions = BTreeMap::new();
        for name in names {
            if let Some(template) = self.latest_template(name).await? {
                versions.insert(name.as_str().to_owned(), template.version);
            }
        }
        Ok(versions)
    }

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

/// Persistence of Docker Compose applications and their versions (like templates: every
/// version kept, conditional appends). The event of a version is written with the change that
/// makes it true, in one transaction.
#[async_trait]
pub trait ApplicationStore: Send + Sync {
    /// Stores version 1 of a new application; `AlreadyExists` if the name is taken.
    async fn create_application(&self, app: &Application) -> Result<(), StoreError>;
    /// Stores the next version (the latest must be `app.version - 1`): `Conflict` when another
    /// writer took that number, `NotFound` when the application is gone.
    async fn append_application_version(&self, app: &Application) -> Result<(), StoreError>;
    /// Replaces a pending version with its published form and writes `event`, on condition
    /// that the application is not being deleted.
    async fn publish_application_version(&self, app: &Application, event: &Event) -> Result<Publication, StoreError>;
    async fn latest_application(&self, name: &ApplicationName) -> Result<Option<Application>, StoreError>;
    async fn application_version(
        &self,
        name: &ApplicationName,
        version: u32,
    ) -> Result<Option<Application>, StoreError>;
    /// Latest versions by name.
    async fn list_applications(
        &self,
        page: PageRequest<ApplicationName>,
    ) -> Result<Page<Application, ApplicationName>, StoreError>;
    async fn list_application_versions(
        &self,
        name: &ApplicationName,
        page: PageRequest<u32>,
    ) -> Result<Page<Application, u32>, StoreError>;
    /// Marks the application as being deleted (again, after an interrupted delete, is fine)
    /// and answers its latest version number, now final: from here on appends are
    /// `NotFound` and publishes `Gone`. `None` if it does not exist.
    async fn begin_application_delete(&self, name: &ApplicationName) -> Result<Option<u32>, StoreError>;
    /// Deletes every version of an application marked by `begin_application_delete` and
    /// writes `event`; `false` if it did not exist, `Conflict` if it was not marked.
    async fn delete_application(&self, name: &ApplicationName, event: &Event) -> Result<bool, StoreError>;
}

/// What `publish_application_version` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// This call published the version (and wrote its event).
    Published,
    /// Another request had published it first.
    AlreadyPublished,
    /// The application is being deleted or is gone: whatever the caller created for this
    /// version must be removed again.
    Gone,
}

/// A dependency the service needs to be ready (store, queue), checked by `GET /ready`.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// A short name for the readiness report, e.g. `store`.
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), BoxError>;
}

/// Told when a core has been provisioned. The local cloud uses it to "power on" simulated
/// cores; on AWS nothing listens (a person installs the core software).
#[async_trait]
pub trait ProvisioningObserver: Send + Sync {
    async fn core_provisioned(&self, name: &ThingName, nucleus_version: &str);
}
