#![doc = include_str!("../README.md")]

mod backfill;
mod deployer;
mod failpoints;
pub mod jobs;
mod paced;
mod provisioner;
mod relay;
mod slots;
mod sweeper;
mod worker;

use ggprov_domain::ports::BoxError;

pub use backfill::backfill_certificates;
pub use deployer::Deployer;
pub use failpoints::Failpoints;
pub use jobs::{JobContext, JobHandler, JobOutcome, JobRegistry};
pub use paced::{Paced, Pacer};
pub use provisioner::{CoreProvisioner, ProvisionerSettings, STEPS};
pub use relay::OutboxRelay;
pub use sweeper::Sweeper;
pub use worker::{Worker, WorkerSettings};

/// How a transient failure of one IoT or Greengrass call (throttling, an outage) is retried
/// on its own, with jittered exponential backoff, before the step fails.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: std::time::Duration,
}

impl RetryPolicy {
    /// The longest wait between two tries, as a multiple of `base` (and never over 5 s).
    pub const CAP_BASES: u32 = 8;

    /// Waits before try `attempt + 1`: `base × 2^(attempt-1)`, at most `CAP_BASES × base`
    /// and 5 s, jittered. The cap keeps a rare long run of failures (a call failing six
    /// times in a row) from doubling its wait each time: the item waiting it out is often
    /// the last of its task, so the task's end waits for it.
    pub(crate) async fn pause(&self, attempt: u32) {
        let delay = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(10))
            .min(self.base.saturating_mul(Self::CAP_BASES))
            .min(std::time::Duration::from_secs(5));
        // The item's slot goes to another item meanwhile (`slots`).
        slots::idle(tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64() * 0.5))).await;
    }
}

/// How a step or job failed. The message is what a failed item records; the source, when
/// there is one, is kept for the log line that reports the failure (`ErrorChain`).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth retrying later (throttling, an outage of the store or the cloud).
    #[error("{message}")]
    Transient {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Retrying will not help; the item fails with this message.
    #[error("{message}")]
    Permanent {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A failpoint fired: behave as if the process died here (no ack, no retry bookkeeping).
    #[error("failpoint {0} fired")]
    Crash(&'static str),
    /// Nothing failed: the work waits for someone else (a core's answer). The job comes back
    /// after `after` as a new job, without spending an attempt.
    #[error("{message}")]
    Waiting { message: String, after: std::time::Duration },
}

impl StepError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient { message: message.into(), source: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent { message: message.into(), source: None }
    }
}

impl From<ggprov_domain::ports::StoreError> for StepError {
    fn from(err: ggprov_domain::ports::StoreError) -> Self {
        Self::Transient { message: format!("store: {err}"), source: Some(Box::new(err)) }
    }
}

impl From<ggprov_domain::ports::CloudError> for StepError {
    fn from(err: ggprov_domain::ports::CloudError) -> Self {
        let message = err.to_string();
        if err.is_transient() {
            Self::Transient { message, source: Some(Box::new(err)) }
        } else {
            Self::Permanent { message, source: Some(Box::new(err)) }
        }
    }
}
