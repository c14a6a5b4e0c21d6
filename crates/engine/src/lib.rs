#![doc = include_str!("../README.md")]

mod deployer;
mod failpoints;
mod provisioner;
mod worker;

pub use deployer::Deployer;
pub use failpoints::Failpoints;
pub use provisioner::{CoreProvisioner, ProvisionerSettings, STEPS};
pub use worker::{Worker, WorkerSettings};

/// How often a transient failure of one item is retried in place (with jittered exponential
/// backoff) before the whole job is handed back to the queue.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: std::time::Duration,
}

impl RetryPolicy {
    /// Runs `step`, retrying transient failures.
    pub(crate) async fn run<T, F, Fut>(&self, mut step: F) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StepError>>,
    {
        let mut attempt = 1;
        loop {
            match step().await {
                Err(StepError::Transient(_)) if attempt < self.attempts => {
                    let delay =
                        self.base.saturating_mul(1 << (attempt - 1).min(10)).min(std::time::Duration::from_secs(5));
                    tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
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
