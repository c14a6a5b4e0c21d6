//! The outbox relay: publishes the events written with state changes.

use std::sync::Arc;
use std::time::Duration;

use ggprov_domain::ports::{EventPublisher, Outbox};

use crate::StepError;

/// Publishes outbox events: claims a batch, publishes it 10 at a time, marks what went out.
/// An event whose publication failed stays unpublished and is claimed again after the lease.
pub struct OutboxRelay {
    store: Arc<dyn Outbox>,
    publisher: Arc<dyn EventPublisher>,
    lease: Duration,
}

impl OutboxRelay {
    pub fn new(store: Arc<dyn Outbox>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { store, publisher, lease: Duration::from_secs(60) }
    }

    /// Publishes until nothing unpublished is left to claim; returns how many were published.
    pub async fn drain(&self) -> Result<usize, StepError> {
        let mut published = 0;
        loop {
            let claimed = self.store.claim_unpublished_events(100, self.lease).await?;
            if claimed.is_empty() {
                return Ok(published);
            }
            let mut failures = 0;
            for chunk in claimed.chunks(10) {
                let failed = self.publisher.publish(chunk).await?;
                let done: Vec<_> = chunk.iter().filter(|e| !failed.contains(&e.id)).cloned().collect();
                failures += failed.len();
                self.store.mark_events_published(&done).await?;
                published += done.len();
            }
            if failures > 0 {
                tracing::warn!(
                    failures,
                    "some events were not accepted; they will be published again after their claim lapses"
                );
                return Ok(published);
            }
        }
    }
}
