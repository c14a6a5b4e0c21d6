//! `Outbox` on DynamoDB: events `EVENTS#<shard>` / `<sequence>#<id>`, unpublished ones also in
//! the sharded sparse listing `gsi3` = `OUTBOX#<shard>` until a relay marks them published.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use ggprov_domain::cores::{Event, StoredEvent};
use ggprov_domain::ports::{Outbox, StoreError};
use ggprov_domain::{Page, PageRequest, Timestamp};

use super::{DynamoStore, Item, Query, SHARDS, doc, get_n, get_s, key, n, s, shard_of, store_error, to_doc};

/// How long an event write may take to become visible (a transaction's retries included).
const STREAM_SETTLE: Duration = Duration::from_secs(3);

fn event_sk(sequence: u64, id: &str) -> String {
    format!("{sequence:020}#{id}")
}

fn stored_event(item: &Item) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: get_s(item, "id")?.to_owned(),
        sequence: get_n(item, "seq")?,
        event: doc(item)?,
        time: Timestamp::from_millis(get_n(item, "time")?).ok_or_else(|| super::corrupt("event time"))?,
    })
}

impl DynamoStore {
    pub(crate) fn event_put(&self, event: &Event, now: Timestamp) -> TransactWriteItem {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Milliseconds × 1000 + a random tie-breaker: ordered by time across shards.
        let sequence = (now.as_millis().max(0) as u64) * 1000 + fastrand::u64(0..1000);
        let shard = shard_of(&id);
        let sk = event_sk(sequence, &id);
        let mut item = key(format!("EVENTS#{shard}"), sk.clone());
        item.insert("id".into(), s(id));
        item.insert("seq".into(), n(sequence));
        item.insert("doc".into(), to_doc(event));
        item.insert("time".into(), n(now.as_millis()));
        item.insert("gsi3pk".into(), s(format!("OUTBOX#{shard}")));
        item.insert("gsi3sk".into(), s(sk));
        TransactWriteItem::builder()
            .put(Put::builder().table_name(&self.table).set_item(Some(item)).build().expect("complete put"))
            .build()
    }
}

#[async_trait]
impl Outbox for DynamoStore {
    async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError> {
        let mut events = Vec::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(None, format!("EVENTS#{shard}"));
            query.before = page.exclusive_start.map(|start| format!("{start:020}"));
            query.forward = false;
            query.limit = Some(page.limit as usize + 1);
            for item in self.query(query).await? {
                events.push(stored_event(&item)?);
            }
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.sequence));
        events.truncate(page.limit as usize + 1);
        Ok(Page::from_overfetch(events, page.limit, |e| e.sequence))
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // Sequences are write times: an event written a moment ago may still be in flight
        // with a lower sequence than one already visible, so only settled events are read.
        let settled = (Timestamp::now().as_millis().max(0) as u64)
            .saturating_sub(self.stream_settle().as_millis() as u64)
            .saturating_mul(1000);
        if settled <= after {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(None, format!("EVENTS#{shard}"));
            query.after = Some(format!("{after:020}#~"));
            query.before = Some(format!("{settled:020}"));
            query.limit = Some(limit as usize);
            for item in self.query(query).await? {
                events.push(stored_event(&item)?);
            }
        }
        events.sort_by_key(|e| e.sequence);
        events.truncate(limit as usize);
        Ok(events)
    }

    fn stream_settle(&self) -> Duration {
        STREAM_SETTLE
    }

    async fn claim_unpublished_events(&self, limit: u32, lease: Duration) -> Result<Vec<StoredEvent>, StoreError> {
        let now = Timestamp::now().as_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut candidates = Vec::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(Some("gsi3"), format!("OUTBOX#{shard}"));
            query.limit = Some(limit as usize);
            candidates.extend(self.query(query).await?);
        }
        candidates.sort_by(|a, b| get_s(a, "sk").unwrap_or_default().cmp(get_s(b, "sk").unwrap_or_default()));
        let mut claimed = Vec::new();
        for item in candidates.into_iter().take(limit as usize) {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(get_s(&item, "pk")?, get_s(&item, "sk")?)))
                .update_expression("SET claimed_until = :until")
                .condition_expression(
                    "attribute_exists(gsi3pk) AND (attribute_not_exists(claimed_until) OR claimed_until <= :now)",
                )
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match result {
                Ok(_) => claimed.push(stored_event(&item)?),
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(store_error(err)),
            }
        }
        Ok(claimed)
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for shard in 0..SHARDS {
            let mut start = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi3")
                    .key_condition_expression("gsi3pk = :pk")
                    .expression_attribute_values(":pk", s(format!("OUTBOX#{shard}")))
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(store_error)?;
                total += u64::try_from(out.count).unwrap_or(0);
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        Ok(total)
    }

    async fn mark_events_published(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        for event in events {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(format!("EVENTS#{}", shard_of(&event.id)), event_sk(event.sequence, &event.id))))
                .update_expression("SET published_at = :now REMOVE gsi3pk, gsi3sk")
                .expression_attribute_values(":now", n(Timestamp::now().as_millis()))
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}
