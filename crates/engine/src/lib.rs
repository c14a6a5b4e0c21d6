#![doc = include_str!("../README.md")]

mod deployer;
mod failpoints;
mod paced;
mod provisioner;
mod relay;
mod worker;

pub use deployer::Deployer;
pub use failpoints::Failpoints;
pub use paced::{Paced, Pacer};
pub use provisioner::{CoreProvisioner, ProvisionerSettings, STEPS};
pub use relay::{CursorFeed, OutboxRelay};
pub use worker::{Worker, WorkerSettings};

/// How a transient failure of one IoT or Greengrass call (throttling, an outage) is retried
/// on its own, with jittered exponential backoff, before the step fails.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: std::time::Duration,
}

impl RetryPolicy {
    /// Waits before try `attempt + 1`: `base × 2^(attempt-1)`, at most 5 s, jittered.
    pub(crate) async fn pause(&self, attempt: u32) {
        let delay =
            self.base.saturating_mul(1 << attempt.saturating_sub(1).min(10)).min(std::time::Duration::from_secs(5));
        tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
    }
}

/// How a step or job failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth retrying later (throttling, an outage of the store or the cloud).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help; the item fails with this message.
    #[error("{0}")]
    Permanent(String),
    /// A failpoint fired: behave as if the process died here (no ack, no retry bookkeeping).
    #[error("failpoint {0} fired")]
    Crash(&'static str),
}

impl From<ggprov_domain::ports::StoreError> for StepError {
    fn from(err: ggprov_domain::ports::StoreError) -> Self {
        Self::Transient(format!("store: {err}"))
    }
}

impl From<ggprov_domain::ports::CloudError> for StepError {
    fn from(err: ggprov_domain::ports::CloudError) -> Self {
        if err.is_transient() { Self::Transient(err.to_string()) } else { Self::Permanent(err.to_string()) }
    }
}
