//! Status feeds and the outbox relay: the two streams that connect ggprov's store to the
//! world outside the request path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::ports::{
    CloudError, CoreStore, EventPublisher, PositionedStatusFeed, ReceivedStatus, StatusFeed, StatusSignal,
};

use crate::StepError;

/// A positioned feed (the local cloud's status log) read behind a cursor kept in the store:
/// acknowledging moves the cursor past the acknowledged positions.
pub struct CursorFeed {
    feed: Arc<dyn PositionedStatusFeed>,
    store: Arc<dyn CoreStore>,
    name: &'static str,
}

impl CursorFeed {
    pub fn new(feed: Arc<dyn PositionedStatusFeed>, store: Arc<dyn CoreStore>, name: &'static str) -> Self {
        Self { feed, store, name }
    }
}

fn store_failed(err: ggprov_domain::ports::StoreError) -> CloudError {
    CloudError::Unavailable { api: "ingest cursor", source: Box::new(err) }
}

#[async_trait]
impl StatusFeed for CursorFeed {
    async fn receive(&self, max: u32) -> Result<Vec<ReceivedStatus>, CloudError> {
        let cursor = self.store.ingest_cursor(self.name).await.map_err(store_failed)?;
        Ok(self
            .feed
            .deployment_outcomes(cursor, max)
            .await?
            .into_iter()
            .map(|outcome| ReceivedStatus {
                receipt: outcome.position.to_string(),
                signal: StatusSignal::Outcome(outcome),
            })
            .collect())
    }

    async fn acknowledge(&self, receipts: &[String]) -> Result<(), CloudError> {
        let Some(last) = receipts.iter().filter_map(|r| r.parse::<u64>().ok()).max() else { return Ok(()) };
        self.store.save_ingest_cursor(self.name, last).await.map_err(store_failed)
    }
}

/// Publishes outbox events: claims a batch, publishes it 10 at a time, marks what went out.
/// An event whose publication failed stays unpublished and is claimed again after the lease.
pub struct OutboxRelay {
    store: Arc<dyn CoreStore>,
    publisher: Arc<dyn EventPublisher>,
    lease: Duration,
}

impl OutboxRelay {
    pub fn new(store: Arc<dyn CoreStore>, publisher: Arc<dyn EventPublisher>) -> Self {
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
