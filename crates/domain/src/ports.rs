//! Port traits: what the domain needs from the outside world. Adapters (SQLite, DynamoDB,
//! the local cloud, AWS) implement them and translate their own errors into these.

use async_trait::async_trait;

use crate::pagination::{Page, PageRequest};
use crate::template::{ComponentName, ComponentVersion, Template, TemplateName};

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
}
