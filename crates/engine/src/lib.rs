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
    /// The longest wait, in bases, of a call whose API answers most calls: its run of
    /// failures is bad luck (random throttling, one bad host), not an outage.
    pub const ANSWERING_CAP_BASES: u32 = 2;

    /// Waits before try `attempt + 1`: a uniformly random share of `base × 2^(attempt-1)`,
    /// itself at most `CAP_BASES × base` (`ANSWERING_CAP_BASES` while the API answers most
    /// calls) and 5 s ("full jitter", as the AWS SDKs' standard retry mode does).
    ///
    /// The caps keep a rare run of failures (a call failing five times in a row, one call in
    /// 1,300 at 24 % failing calls) from doubling its wait each time: the item waiting it out
    /// is often the last of its task, so the task's end waits for it. Exponential growth is
    /// for an API that is down or overloaded, which the caller tells by how its other calls
    /// go (decision 91).
    pub(crate) async fn pause(&self, attempt: u32, api: ApiState) {
        // The item's slot goes to another item meanwhile (`slots`).
        slots::idle(tokio::time::sleep(self.ceiling(attempt, api).mul_f64(fastrand::f64()))).await;
    }

    /// The longest wait before try `attempt + 1`.
    pub(crate) fn ceiling(&self, attempt: u32, api: ApiState) -> std::time::Duration {
        let cap = match api {
            ApiState::Answering => Self::ANSWERING_CAP_BASES,
            ApiState::Failing => Self::CAP_BASES,
        };
        self.base
            .saturating_mul(1 << attempt.saturating_sub(1).min(10))
            .min(self.base.saturating_mul(cap))
            .min(std::time::Duration::from_secs(5))
    }
}

/// How the API a failed call went to is doing, as its recent calls tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiState {
    /// Most of its recent calls were answered.
    Answering,
    /// Half or more failed, or too few were made to tell: it may be down or overloaded.
    Failing,
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
