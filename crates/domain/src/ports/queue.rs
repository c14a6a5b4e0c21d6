//! The durable work queue.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

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
    /// Identifies the message: the same for every delivery of it (a redelivery after a crash),
    /// different for another message with the same payload (a sweeper's re-queue).
    pub message_id: String,
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
    /// Queues the job in hand again as a new job, visible after `delay` (at most 15 minutes),
    /// and removes the one in hand: it waits without spending an attempt. A crash in between
    /// leaves both (jobs are idempotent).
    async fn requeue(&self, delivery: &Delivery, delay: Duration) -> Result<(), StoreError>;
    /// Moves the job in hand to the dead-letter queue with the reason.
    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), StoreError>;
    async fn depth(&self) -> Result<QueueDepth, StoreError>;
    /// Jobs in the dead-letter queue with their last error.
    async fn dead_letters(&self) -> Result<Vec<(Job, String)>, StoreError>;
}
