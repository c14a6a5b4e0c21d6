//! `WorkQueue` on SQLite: jobs leased for a while, deleted on ack, retried after a delay,
//! moved to the dead-letter state when they keep failing.

use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::Timestamp;
use ggprov_domain::ports::{Delivery, Job, QueueDepth, StoreError, WorkQueue};

use crate::sql::query;
use crate::{SqliteStore, unavailable};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A receipt is `<job id>:<lease id>`.
fn parse_receipt(receipt: &str) -> Result<(i64, &str), StoreError> {
    let (id, lease) =
        receipt.split_once(':').ok_or_else(|| StoreError::unavailable(format!("malformed receipt {receipt}")))?;
    Ok((id.parse().map_err(|_| StoreError::unavailable(format!("malformed receipt {receipt}")))?, lease))
}

#[async_trait]
impl WorkQueue for SqliteStore {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let now = Timestamp::now().as_millis();
        self.write(|c| {
            for job in jobs {
                query("INSERT INTO jobs (kind, payload, visible_at, created_at) VALUES (?, ?, ?, ?)")
                    .bind(&job.kind)
                    .bind(job.payload.to_string())
                    .bind(now)
                    .bind(now)
                    .execute(c)
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = Timestamp::now().as_millis();
        self.write(|c| {
            let rows = query("SELECT id, kind, payload, attempts FROM jobs WHERE dead = 0 AND visible_at <= ? ORDER BY visible_at, id LIMIT ?")
                .bind(now)
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .fetch_all(c)
                .map_err(unavailable)?;
            let mut deliveries = Vec::with_capacity(rows.len());
            for row in rows {
                let id: i64 = row.get("id");
                let lease_id = ggprov_domain::TaskId::generate().as_str().to_owned();
                query("UPDATE jobs SET lease = ?, visible_at = ?, attempts = attempts + 1 WHERE id = ?")
                    .bind(&lease_id)
                    .bind(now.saturating_add(millis(lease)))
                    .bind(id)
                    .execute(c)
                    .map_err(unavailable)?;
                let payload: String = row.get("payload");
                deliveries.push(Delivery {
                    job: Job {
                        kind: row.get("kind"),
                        payload: serde_json::from_str(&payload).map_err(StoreError::unavailable)?,
                    },
                    receipt: format!("{id}:{lease_id}"),
                    message_id: id.to_string(),
                    attempt: u32::try_from(row.get::<i64>("attempts") + 1).unwrap_or(u32::MAX),
                });
            }
            Ok(deliveries)
        })
        .await
    }

    async fn ack(&self, receipt: &str) -> Result<bool, StoreError> {
        let (id, lease) = parse_receipt(receipt)?;
        let deleted = query("DELETE FROM jobs WHERE id = ? AND lease = ?")
            .bind(id)
            .bind(lease)
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn retry_later(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), StoreError> {
        let (id, lease) = parse_receipt(receipt)?;
        query("UPDATE jobs SET visible_at = ?, lease = NULL, last_error = ? WHERE id = ? AND lease = ?")
            .bind(Timestamp::now().as_millis().saturating_add(millis(delay)))
            .bind(error)
            .bind(id)
            .bind(lease)
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn requeue(&self, delivery: &Delivery, delay: Duration) -> Result<(), StoreError> {
        // One transaction: the job in hand becomes a new job, its attempts afresh.
        let (id, lease) = parse_receipt(&delivery.receipt)?;
        let now = Timestamp::now().as_millis();
        self.write(|c| {
            let taken = query("DELETE FROM jobs WHERE id = ? AND lease = ?")
                .bind(id)
                .bind(lease)
                .execute(c)
                .map_err(unavailable)?;
            if taken.rows_affected() == 1 {
                query("INSERT INTO jobs (kind, payload, visible_at, created_at) VALUES (?, ?, ?, ?)")
                    .bind(&delivery.job.kind)
                    .bind(delivery.job.payload.to_string())
                    .bind(now.saturating_add(millis(delay.min(Duration::from_secs(900)))))
                    .bind(now)
                    .execute(c)
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn extend_lease(&self, receipt: &str, lease: Duration) -> Result<bool, StoreError> {
        let (id, lease_id) = parse_receipt(receipt)?;
        let extended = query("UPDATE jobs SET visible_at = ? WHERE id = ? AND lease = ? AND dead = 0")
            .bind(Timestamp::now().as_millis().saturating_add(millis(lease)))
            .bind(id)
            .bind(lease_id)
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(extended.rows_affected() == 1)
    }

    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), StoreError> {
        let (id, lease) = parse_receipt(&delivery.receipt)?;
        query("UPDATE jobs SET dead = 1, lease = NULL, last_error = ? WHERE id = ? AND lease = ?")
            .bind(error)
            .bind(id)
            .bind(lease)
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let row = query(
            "SELECT COALESCE(SUM(dead = 0 AND visible_at <= ?1), 0) AS visible, COALESCE(SUM(dead = 0 AND visible_at > ?1), 0) AS in_flight, \
             COALESCE(SUM(dead = 1), 0) AS dead, MIN(CASE WHEN dead = 0 AND visible_at <= ?1 THEN created_at END) AS oldest FROM jobs",
        )
        .bind(Timestamp::now().as_millis())
        .fetch_one(self.reader())
        .map_err(unavailable)?;
        Ok(QueueDepth {
            visible: row.get::<i64>("visible") as u64,
            in_flight: row.get::<i64>("in_flight") as u64,
            dead: row.get::<i64>("dead") as u64,
            oldest_wait_ms: row
                .get::<Option<i64>>("oldest")
                .map(|created| Timestamp::now().as_millis().saturating_sub(created).max(0) as u64),
        })
    }

    async fn dead_letters(&self) -> Result<Vec<(Job, String)>, StoreError> {
        let rows = query("SELECT kind, payload, last_error FROM jobs WHERE dead = 1 ORDER BY id")
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let payload: String = r.get("payload");
                Ok((
                    Job {
                        kind: r.get("kind"),
                        payload: serde_json::from_str(&payload).map_err(StoreError::unavailable)?,
                    },
                    r.get::<Option<String>>("last_error").unwrap_or_default(),
                ))
            })
            .collect()
    }
}
