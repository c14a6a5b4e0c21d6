//! The local cloud's positioned status log as a `StatusFeed`, behind a cursor in the store.

use std::sync::Arc;

use async_trait::async_trait;
use ggprov_domain::ports::{
    CloudError, IngestCursors, PositionedStatusFeed, ReceivedStatus, StatusFeed, StatusSignal, StoreError,
};

/// A positioned feed (the local cloud's status log) read behind a cursor kept in the store:
/// acknowledging moves the cursor past the acknowledged positions.
pub struct CursorFeed {
    feed: Arc<dyn PositionedStatusFeed>,
    store: Arc<dyn IngestCursors>,
    name: &'static str,
}

impl CursorFeed {
    pub fn new(feed: Arc<dyn PositionedStatusFeed>, store: Arc<dyn IngestCursors>, name: &'static str) -> Self {
        Self { feed, store, name }
    }
}

fn store_failed(err: StoreError) -> CloudError {
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
