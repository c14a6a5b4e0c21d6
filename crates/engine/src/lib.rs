#![doc = include_str!("../README.md")]

mod deployer;
mod failpoints;
mod provisioner;
mod worker;

pub use deployer::Deployer;
pub use failpoints::Failpoints;
pub use provisioner::{CoreProvisioner, ProvisionerSettings, STEPS};
pub use worker::{Worker, WorkerSettings};

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
