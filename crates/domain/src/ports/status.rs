//! Where reported deployment status comes from, and where events go.

use async_trait::async_trait;

use super::CloudError;
use crate::cores::StoredEvent;
use crate::thing::ThingName;
use crate::time::Timestamp;

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
    /// The nucleus the deployment brings (filled in by ggprov from the template version, not
    /// by the feed): a successful outcome means the core runs it.
    pub nucleus: Option<crate::software::Nucleus>,
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
