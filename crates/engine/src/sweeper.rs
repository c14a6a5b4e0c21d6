//! The sweeper: finds work whose job was lost (an enqueue that failed after the task was
//! stored, a job dead-lettered by a crash loop) and queues it again.

use std::sync::Arc;
use std::time::Duration;

use ggprov_domain::Timestamp;
use ggprov_domain::jobs::{DeploymentExpand, JobPayload, TaskBatch};
use ggprov_domain::ports::{DeploymentRecords, StoreError, TaskStore, WorkQueue};

/// Queues again the items left unfinished past a threshold.
pub struct Sweeper {
    tasks: Arc<dyn TaskStore>,
    deployments: Arc<dyn DeploymentRecords>,
    queue: Arc<dyn WorkQueue>,
    /// Items per re-queued batch (the configured core batch size).
    batch_size: usize,
    /// How long an item may stay unfinished before it counts as lost.
    after: Duration,
}

impl Sweeper {
    pub fn new(
        tasks: Arc<dyn TaskStore>,
        deployments: Arc<dyn DeploymentRecords>,
        queue: Arc<dyn WorkQueue>,
        batch_size: usize,
        after: Duration,
    ) -> Self {
        Self { tasks, deployments, queue, batch_size: batch_size.max(1), after }
    }

    /// Queues again the items unfinished for longer than the threshold that no live lease holds
    /// (each at most once per threshold period), and the deployment tasks never expanded;
    /// returns how many jobs it queued.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now();
        let cutoff =
            Timestamp::from_millis(now.as_millis() - i64::try_from(self.after.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(now);
        let stale = self.tasks.take_stale_items(cutoff, now).await?;
        let mut batches: Vec<TaskBatch> = Vec::new();
        for (task_id, name) in stale {
            match batches.last_mut() {
                Some(batch) if batch.task_id == task_id && batch.items.len() < self.batch_size => {
                    batch.items.push(name)
                }
                _ => batches.push(TaskBatch { task_id, items: vec![name] }),
            }
        }
        let mut jobs: Vec<_> = batches.iter().map(JobPayload::job).collect();
        for task_id in self.deployments.unexpanded_deployment_tasks(cutoff).await? {
            jobs.push(DeploymentExpand { task_id }.job());
        }
        if !jobs.is_empty() {
            tracing::warn!(jobs = jobs.len(), "re-queueing unfinished work");
            self.queue.enqueue(&jobs).await?;
        }
        Ok(jobs.len())
    }
}
