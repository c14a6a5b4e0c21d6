//! `Outbox` on SQLite: events in `outbox` by sequence, claimed by relays for a lease.

use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::cores::StoredEvent;
use ggprov_domain::ports::{Outbox, StoreError};
use ggprov_domain::{Page, PageRequest, Timestamp};

use crate::rows::event_from_row;
use crate::sql::query;
use crate::{SqliteStore, unavailable};

#[async_trait]
impl Outbox for SqliteStore {
    async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError> {
        let before = page.exclusive_start.map_or(i64::MAX, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let rows = query("SELECT sequence, id, detail_type, detail, created_at FROM outbox WHERE sequence < ? ORDER BY sequence DESC LIMIT ?")
            .bind(before)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::from_overfetch(events, page.limit, |e| e.sequence))
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // Sequences are assigned by the one writer SQLite allows at a time, so they follow
        // commit order: nothing can appear later below a sequence already seen.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = query("SELECT sequence, id, detail_type, detail, created_at FROM outbox WHERE sequence > ? ORDER BY sequence LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn claim_unpublished_events(&self, limit: u32, lease: Duration) -> Result<Vec<StoredEvent>, StoreError> {
        let now = Timestamp::now().as_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.write(|c| {
            let rows = query(
                "UPDATE outbox SET claimed_until = ? WHERE sequence IN (SELECT sequence FROM outbox WHERE published_at IS NULL \
                 AND COALESCE(claimed_until, 0) <= ? ORDER BY sequence LIMIT ?) RETURNING sequence, id, detail_type, detail, created_at",
            )
            .bind(until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(c)
            .map_err(unavailable)?;
                    let mut events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
            events.sort_by_key(|e| e.sequence);
            Ok(events)
        })
        .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let row = query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
            .fetch_one(self.reader())
            .map_err(unavailable)?;
        Ok(row.get::<i64>("n") as u64)
    }

    async fn mark_events_published(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let now = Timestamp::now().as_millis();
        self.write(|c| {
            for event in events {
                query("UPDATE outbox SET published_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(&event.id)
                    .execute(c)
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }
}
