//! `IngestCursors` on SQLite: one position per feed, only ever moved forward.

use async_trait::async_trait;
use ggprov_domain::ports::{IngestCursors, StoreError};

use crate::sql::query;
use crate::{SqliteStore, unavailable};

#[async_trait]
impl IngestCursors for SqliteStore {
    async fn ingest_cursor(&self, feed: &str) -> Result<u64, StoreError> {
        let row = query("SELECT position FROM ingest_cursors WHERE feed = ?")
            .bind(feed)
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        Ok(row.map_or(0, |r| r.get::<i64>("position") as u64))
    }

    async fn save_ingest_cursor(&self, feed: &str, position: u64) -> Result<(), StoreError> {
        query("INSERT INTO ingest_cursors (feed, position) VALUES (?, ?) ON CONFLICT (feed) DO UPDATE SET position = MAX(position, excluded.position)")
            .bind(feed)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute_write(&self.db).await
            .map_err(unavailable)?;
        Ok(())
    }
}
