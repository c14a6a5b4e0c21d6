//! The queue consumer: leases jobs, runs them, acks after the outcome is recorded, retries
//! transient failures with jittered exponential backoff, dead-letters poison jobs.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use ggprov_domain::ErrorChain;
use ggprov_domain::ports::{Delivery, WorkQueue};
use tokio::sync::watch;

use crate::jobs::{JobContext, JobOutcome, JobRegistry};
use crate::{Deployer, OutboxRelay, StepError, Sweeper};

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs processed at once.
    pub concurrency: usize,
    /// How long a job stays invisible to other workers while one works on it.
    pub lease: Duration,
    /// Deliveries before a job is dead-lettered.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Pause between polls of an empty queue.
    pub poll_interval: Duration,
    /// How often the sweeper looks for lost work.
    pub sweep_every: Duration,
    /// How often cores waiting for a deployment outcome are checked against Greengrass.
    pub reconcile_every: Duration,
    /// How often active rollouts are stepped (a wave's last report to the next wave's first
    /// move, and a crossed threshold to the abort, take at most about this long).
    pub rollout_every: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(120),
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            sweep_every: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(30),
            rollout_every: Duration::from_millis(250),
        }
    }
}

/// A queue consumer.
pub struct Worker {
    queue: Arc<dyn WorkQueue>,
    relay: Option<Arc<OutboxRelay>>,
    metrics: Option<Arc<ggprov_domain::metrics::Metrics>>,
    jobs: JobRegistry,
    /// Status ingestion and reconciliation run between jobs.
    deployer: Arc<Deployer>,
    sweeper: Sweeper,
    settings: WorkerSettings,
    /// The jobs in hand that work now (not all waiting out backoffs).
    activity: Arc<crate::slots::Jobs>,
}

impl Worker {
    pub fn new(
        queue: Arc<dyn WorkQueue>,
        jobs: JobRegistry,
        deployer: Arc<Deployer>,
        sweeper: Sweeper,
        settings: WorkerSettings,
    ) -> Self {
        Self { queue, relay: None, metrics: None, jobs, deployer, sweeper, settings, activity: Arc::default() }
    }

    /// Publishes outbox events through `relay` in the worker loop.
    #[must_use]
    pub fn with_relay(mut self, relay: Arc<OutboxRelay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Counts jobs and items in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ggprov_domain::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, delivery: &Delivery, outcome: &str) {
        let Some(metrics) = &self.metrics else { return };
        // Only registered kinds become labels: a message injected into the queue cannot add any.
        let kind = self.jobs.label(&delivery.job.kind);
        metrics.inc("ggprov_jobs_total", &[("kind", kind), ("outcome", outcome)], 1.0);
        let items = delivery.job.payload.get("items").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
        if items > 0 {
            let item_outcome = match outcome {
                "succeeded" => "processed",
                "retried" => "retried",
                _ => "failed",
            };
            metrics.inc("ggprov_items_total", &[("kind", kind), ("outcome", item_outcome)], items as f64);
        }
    }

    /// Publishes pending outbox events (no-op without a relay); returns how many went out.
    pub async fn publish_events(&self) -> Result<usize, StepError> {
        match &self.relay {
            Some(relay) => relay.drain().await,
            None => Ok(0),
        }
    }

    /// Applies reported deployment outcomes (status ingestion).
    pub async fn ingest(&self) -> Result<usize, StepError> {
        self.deployer.ingest().await
    }

    /// One controller step for every active rollout (next wave, abort, completion).
    pub async fn advance_rollouts(&self) -> Result<usize, StepError> {
        self.deployer.advance_rollouts().await
    }

    /// Corrects cores whose deployment outcome was missed.
    pub async fn reconcile(&self) -> Result<usize, StepError> {
        self.deployer.reconcile().await
    }

    /// Consumes jobs until `shutdown` turns true; jobs in hand are finished first, the rest
    /// stay on the queue.
    ///
    /// Up to `concurrency` jobs work at once, and a new one is received as soon as one ends
    /// or waits: a job whose unfinished items all wait out backoffs (calls retried under
    /// throttling) does not count, so it does not hold the others back (`slots`; at most
    /// `STARTED_PER_ACTIVE × concurrency` jobs are in hand). Each job is a task of its own.
    /// The periodic duties (status ingestion, events, reconciliation, the sweeper) run
    /// between receives while the jobs in hand keep running; a rollout step waits until this
    /// worker has no job in hand, so that none of its moves is in flight while a rollout
    /// decides (that drain only happens while a rollout is active).
    pub async fn run(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut last_sweep = tokio::time::Instant::now();
        let mut last_reconcile = tokio::time::Instant::now();
        let mut last_rollout_step = tokio::time::Instant::now();
        let mut jobs = FuturesUnordered::new();
        while !*shutdown.borrow() {
            if let Err(err) = alongside(&mut jobs, self.ingest()).await {
                tracing::warn!(error = %ErrorChain(&err), "status ingestion failed");
            }
            if last_rollout_step.elapsed() >= self.settings.rollout_every {
                last_rollout_step = tokio::time::Instant::now();
                match alongside(&mut jobs, self.deployer.active_rollouts()).await {
                    Ok(active) if active.is_empty() => {}
                    Ok(active) => {
                        while jobs.next().await.is_some() {}
                        self.deployer.advance_rollouts_of(&active).await;
                    }
                    Err(err) => tracing::warn!(error = %ErrorChain(&err), "advancing rollouts failed"),
                }
            }
            if let Err(err) = alongside(&mut jobs, self.publish_events()).await {
                tracing::warn!(error = %ErrorChain(&err), "publishing events failed");
            }
            if last_reconcile.elapsed() >= self.settings.reconcile_every {
                last_reconcile = tokio::time::Instant::now();
                if let Err(err) = alongside(&mut jobs, self.reconcile()).await {
                    tracing::warn!(error = %ErrorChain(&err), "reconciliation failed");
                }
            }
            if last_sweep.elapsed() >= self.settings.sweep_every {
                last_sweep = tokio::time::Instant::now();
                if let Err(err) = alongside(&mut jobs, self.sweep()).await {
                    tracing::warn!(error = %ErrorChain(&err), "sweep failed");
                }
            }
            let concurrency = self.settings.concurrency.max(1);
            let free = concurrency
                .saturating_sub(self.activity.working())
                .min((concurrency * crate::slots::STARTED_PER_ACTIVE).saturating_sub(jobs.len()));
            if free == 0 {
                // Every slot busy: on when one job ends or waits (or to stop).
                tokio::select! {
                    _ = jobs.next() => {}
                    () = self.activity.paused() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            match alongside(&mut jobs, self.queue.receive(free, self.settings.lease)).await {
                Ok(deliveries) if !deliveries.is_empty() => {
                    // Each job is a task of its own, so jobs run on every runtime thread: polled
                    // as one task (this loop's), all of a worker's items shared one thread.
                    jobs.extend(deliveries.into_iter().map(|delivery| {
                        let worker = Arc::clone(self);
                        tokio::spawn(self.activity.run(async move { worker.handle(delivery).await })).map(job_ended)
                    }));
                }
                Ok(_) => {
                    // Nothing visible: on after the poll interval, or as soon as a job ends (what
                    // it set off, an outcome to ingest or an event to publish, is handled at
                    // once, as between the old job rounds), or to stop.
                    tokio::select! {
                        () = tokio::time::sleep(self.settings.poll_interval) => {}
                        Some(()) = jobs.next(), if !jobs.is_empty() => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %ErrorChain(&err), "cannot receive from the work queue");
                    alongside(&mut jobs, tokio::time::sleep(self.settings.poll_interval * 5)).await;
                }
            }
        }
        while jobs.next().await.is_some() {}
        tracing::info!("worker stopped");
    }

    /// Processes jobs until none is visible; returns how many deliveries were handled.
    pub async fn run_until_idle(&self) -> usize {
        let mut handled = 0;
        loop {
            let deliveries = match self.queue.receive(self.settings.concurrency, self.settings.lease).await {
                Ok(d) if !d.is_empty() => d,
                _ => return handled,
            };
            handled += deliveries.len();
            futures::future::join_all(deliveries.into_iter().map(|d| self.handle(d))).await;
        }
    }

    /// Queues again the work whose job was lost (see [`Sweeper`]).
    pub async fn sweep(&self) -> Result<usize, ggprov_domain::ports::StoreError> {
        self.sweeper.sweep().await
    }

    async fn handle(&self, delivery: Delivery) {
        let span = tracing::info_span!("job", job.kind = %delivery.job.kind, job.attempt = delivery.attempt);
        let receipt = delivery.receipt.clone();
        let work = tracing::Instrument::instrument(self.handle_inner(delivery), span);
        // Long jobs keep their lease: it is extended every third of its length, so another
        // worker does not receive the job while this one still works on it.
        let lease = self.settings.lease;
        if lease < Duration::from_secs(3) {
            work.await;
            return;
        }
        let heartbeat = async {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
            loop {
                ticks.tick().await;
                match self.queue.extend_lease(&receipt, lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("the job's lease was lost; another worker may receive it"),
                    Err(err) => tracing::warn!(error = %ErrorChain(&err), "could not extend the job's lease"),
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = heartbeat => {}
        }
    }

    async fn handle_inner(&self, delivery: Delivery) {
        let may_retry = delivery.attempt < self.settings.max_attempts;
        let ctx = JobContext { holder: delivery.message_id.clone(), lease: self.settings.lease };
        let outcome = match self.jobs.process(&delivery.job.kind, &delivery.job.payload, may_retry, &ctx).await {
            JobOutcome::Done => self.queue.ack(&delivery.receipt).await.map(|acked| {
                self.count(&delivery, "succeeded");
                if !acked {
                    tracing::warn!("job finished after its lease expired; another delivery will find it done");
                }
            }),
            JobOutcome::Crashed(point) => {
                tracing::warn!(failpoint = point, "stopping here as if the process died");
                Ok(())
            }
            JobOutcome::Wait(delay, why) => {
                tracing::debug!(reason = %why, wait_ms = delay.as_millis() as u64, "job waits");
                self.count(&delivery, "waiting");
                self.queue.requeue(&delivery, delay).await
            }
            JobOutcome::Retry(err) => {
                let delay = self.backoff(delivery.attempt);
                tracing::info!(error = %ErrorChain(&err), retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                self.count(&delivery, "retried");
                self.queue.retry_later(&delivery.receipt, delay, &err.to_string()).await
            }
            JobOutcome::GaveUp(err) => {
                tracing::error!(error = %ErrorChain(&err), "job dead-lettered");
                self.count(&delivery, "dead_lettered");
                self.queue.dead_letter(&delivery, &err.to_string()).await
            }
            JobOutcome::GiveUpFailed { error, marking } => {
                tracing::error!(
                    error = %ErrorChain(&error),
                    marking = %ErrorChain(&marking),
                    "job failed for good, and its work could not be marked failed; it will come back"
                );
                return; // leave the job leased: it comes back and gives up again
            }
        };
        if let Err(err) = outcome {
            tracing::error!(error = %ErrorChain(&err), "could not record the job's outcome on the queue; it will be delivered again");
        }
    }

    /// `base × 2^(attempt-1)`, capped, jittered over its upper half (a job's redelivery; a
    /// call's retries use full jitter, `RetryPolicy::pause`).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.settings.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.settings.max_backoff);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// A job's task ended. One that panicked or was cancelled (the runtime shutting down) left
/// its delivery leased: it comes back when the lease expires.
fn job_ended(result: Result<(), tokio::task::JoinError>) {
    match result {
        Ok(()) => {}
        Err(err) if err.is_panic() => {
            tracing::error!(error = %err, "a job panicked; its delivery comes back when its lease expires");
        }
        Err(_) => tracing::info!("a job was cancelled by the shutdown; its delivery comes back when its lease expires"),
    }
}

/// Awaits `work` while the jobs in hand keep running (any that end meanwhile are done with).
async fn alongside<J, W>(jobs: &mut FuturesUnordered<J>, work: W) -> W::Output
where
    J: std::future::Future<Output = ()>,
    W: std::future::Future,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            Some(()) = jobs.next(), if !jobs.is_empty() => {}
        }
    }
}
