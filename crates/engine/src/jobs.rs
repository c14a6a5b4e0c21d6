//! Every kind of job, registered in one place. A job kind is a [`JobHandler`]: its payload type
//! (which names its kind), what running it does, and what happens when it gives up. The worker
//! only looks a delivery's kind up in the [`JobRegistry`]; the payload is parsed once.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use ggprov_domain::jobs::{DeploymentExpand, JobPayload, TaskBatch};

use crate::{CoreProvisioner, Deployer, StepError};

/// Who runs a job: the queue message (the same across its redeliveries) and how long the
/// items it starts are held for it.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub holder: String,
    pub lease: std::time::Duration,
}

/// One kind of job.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    type Payload: JobPayload;

    /// Does the work; idempotent (a job may be delivered again).
    async fn run(&self, job: &Self::Payload, ctx: &JobContext) -> Result<(), StepError>;

    /// The job failed for good (permanently, or out of attempts): record that on the work it
    /// stood for, so that nothing waits for it forever.
    async fn give_up(&self, job: &Self::Payload, reason: &str) -> Result<(), StepError>;
}

/// What became of one delivery.
#[derive(Debug)]
pub enum JobOutcome {
    Done,
    /// Failed transiently with attempts left: deliver again later.
    Retry(StepError),
    /// Failed for good and its work is marked failed: dead-letter it.
    GaveUp(StepError),
    /// Failed for good, but marking its work failed failed too: leave it leased so it comes
    /// back and gives up again.
    GiveUpFailed {
        error: StepError,
        marking: StepError,
    },
    /// A failpoint fired: stop as if the process died here.
    Crashed(&'static str),
    /// Waiting for someone else: queue the job again after the delay, attempts untouched.
    Wait(std::time::Duration, String),
}

/// A handler with its payload type erased, for the registry.
#[async_trait]
trait ErasedHandler: Send + Sync {
    async fn process(&self, payload: &serde_json::Value, may_retry: bool, ctx: &JobContext) -> JobOutcome;
}

#[async_trait]
impl<H: JobHandler> ErasedHandler for H {
    async fn process(&self, payload: &serde_json::Value, may_retry: bool, ctx: &JobContext) -> JobOutcome {
        let job = match serde_json::from_value::<H::Payload>(payload.clone()) {
            Ok(job) => job,
            Err(err) => {
                return JobOutcome::GaveUp(StepError::permanent(format!("malformed {} job: {err}", H::Payload::KIND)));
            }
        };
        match self.run(&job, ctx).await {
            Ok(()) => JobOutcome::Done,
            Err(StepError::Crash(point)) => JobOutcome::Crashed(point),
            Err(StepError::Waiting { message, after }) => JobOutcome::Wait(after, message),
            Err(err @ StepError::Transient { .. }) if may_retry => JobOutcome::Retry(err),
            Err(error) => match self.give_up(&job, &error.to_string()).await {
                Ok(()) => JobOutcome::GaveUp(error),
                Err(StepError::Crash(point)) => JobOutcome::Crashed(point),
                Err(marking) => JobOutcome::GiveUpFailed { error, marking },
            },
        }
    }
}

/// The job kinds a worker runs, by kind.
#[derive(Default, Clone)]
pub struct JobRegistry {
    handlers: BTreeMap<&'static str, Arc<dyn ErasedHandler>>,
}

impl JobRegistry {
    /// Every job kind ggprov has.
    pub fn standard(provisioner: Arc<CoreProvisioner>, deployer: Arc<Deployer>) -> Self {
        Self::default()
            .register(TaskBatchJob { provisioner, deployer: deployer.clone() })
            .register(ExpandDeploymentJob { deployer })
    }

    #[must_use]
    pub fn register<H: JobHandler>(mut self, handler: H) -> Self {
        self.handlers.insert(H::Payload::KIND, Arc::new(handler));
        self
    }

    /// The kind as a metric label: a registered kind, or `unknown`.
    pub fn label(&self, kind: &str) -> &'static str {
        self.handlers.get_key_value(kind).map_or("unknown", |(k, _)| *k)
    }

    /// Runs a delivered job; an unknown kind gives up at once (there is nothing to mark).
    pub async fn process(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        may_retry: bool,
        ctx: &JobContext,
    ) -> JobOutcome {
        match self.handlers.get(kind) {
            Some(handler) => handler.process(payload, may_retry, ctx).await,
            None => JobOutcome::GaveUp(StepError::permanent(format!("unknown job kind '{kind}'"))),
        }
    }
}

/// A batch of a task's items: provisioning or deleting cores or client devices, or moving
/// cores into a deployment.
struct TaskBatchJob {
    provisioner: Arc<CoreProvisioner>,
    deployer: Arc<Deployer>,
}

#[async_trait]
impl JobHandler for TaskBatchJob {
    type Payload = TaskBatch;

    async fn run(&self, batch: &TaskBatch, ctx: &JobContext) -> Result<(), StepError> {
        self.provisioner.run_batch(batch, &self.deployer, ctx).await
    }

    async fn give_up(&self, batch: &TaskBatch, reason: &str) -> Result<(), StepError> {
        self.provisioner.fail_batch(batch, reason).await
    }
}

/// Expanding a deployment task's targets into cores.
struct ExpandDeploymentJob {
    deployer: Arc<Deployer>,
}

#[async_trait]
impl JobHandler for ExpandDeploymentJob {
    type Payload = DeploymentExpand;

    async fn run(&self, job: &DeploymentExpand, _ctx: &JobContext) -> Result<(), StepError> {
        self.deployer.expand(&job.task_id).await
    }

    async fn give_up(&self, job: &DeploymentExpand, reason: &str) -> Result<(), StepError> {
        self.deployer.give_up(&job.task_id, reason).await
    }
}
