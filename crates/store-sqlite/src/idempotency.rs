//! `IdempotencyRecords` on SQLite: one row per key, claimed and answered under `BEGIN IMMEDIATE`.

use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::Timestamp;
use ggprov_domain::ports::{IdempotencyClaim, IdempotencyRecords, RecordedResponse, StoreError};

use crate::rows::corrupt;
use crate::sql::query;
use crate::{SqliteStore, unavailable};

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdempotencyRecords for SqliteStore {
    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        pending_for: Duration,
        keep_for: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let now = now.as_millis();
        self.write(|c| {
            query("DELETE FROM idempotency_keys WHERE created_at < ?")
                .bind(now.saturating_sub(ms(keep_for)))
                .execute(c)
                .map_err(unavailable)?;
            let row = query("SELECT fingerprint, response, created_at FROM idempotency_keys WHERE key = ?")
                .bind(key)
                .fetch_optional(c)
                .map_err(unavailable)?;
            if let Some(row) = row {
                let recorded: Option<String> = row.get("response");
                let created_at: i64 = row.get("created_at");
                if row.get_str("fingerprint") != fingerprint {
                    return Ok(IdempotencyClaim::Mismatch);
                }
                if let Some(text) = recorded {
                    return Ok(IdempotencyClaim::Replay(serde_json::from_str(&text).map_err(corrupt)?));
                }
                if now.saturating_sub(created_at) < ms(pending_for) {
                    return Ok(IdempotencyClaim::InProgress);
                }
            }
            query(
                "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES (?, ?, NULL, ?) \
                 ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, response = NULL, created_at = excluded.created_at",
            )
            .bind(key)
            .bind(fingerprint)
            .bind(now)
            .execute(c)
            .map_err(unavailable)?;
            Ok(IdempotencyClaim::Started)
        })
        .await
    }

    async fn complete_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &RecordedResponse,
    ) -> Result<(), StoreError> {
        query("UPDATE idempotency_keys SET response = ? WHERE key = ? AND fingerprint = ? AND response IS NULL")
            .bind(serde_json::to_string(response).expect("responses serialise"))
            .bind(key)
            .bind(fingerprint)
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        query("DELETE FROM idempotency_keys WHERE key = ? AND fingerprint = ? AND response IS NULL")
            .bind(key)
            .bind(fingerprint)
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
