//! `IdempotencyRecords` on DynamoDB: `IDEMP#<key>` / `#IDEMP` with the request's fingerprint,
//! when it was claimed (`at`), the answer once there is one (`doc`), and a TTL attribute
//! (`expires`, epoch seconds) so that DynamoDB deletes it after the keeping period.

use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::Timestamp;
use ggprov_domain::ports::{IdempotencyClaim, IdempotencyRecords, RecordedResponse, StoreError};

use super::{
    DynamoStore, MAX_TRIES, condition_failed, doc, get_n, get_s, key, n, s, store_error, to_doc,
    unless_condition_failed,
};

const IDEMP: &str = "#IDEMP";

fn idemp_pk(key: &str) -> String {
    format!("IDEMP#{key}")
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdempotencyRecords for DynamoStore {
    async fn begin_idempotent(
        &self,
        idempotency_key: &str,
        fingerprint: &str,
        now: Timestamp,
        pending_for: Duration,
        keep_for: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let now = now.as_millis();
        for _ in 0..MAX_TRIES {
            let existing = self.get(&idemp_pk(idempotency_key), IDEMP).await?;
            let mut condition = ("attribute_not_exists(pk)".to_owned(), None);
            if let Some(item) = &existing {
                let at: i64 = get_n(item, "at")?;
                if now.saturating_sub(at) < ms(keep_for) {
                    if get_s(item, "fp")? != fingerprint {
                        return Ok(IdempotencyClaim::Mismatch);
                    }
                    if item.contains_key("doc") {
                        return Ok(IdempotencyClaim::Replay(doc(item)?));
                    }
                    if now.saturating_sub(at) < ms(pending_for) {
                        return Ok(IdempotencyClaim::InProgress);
                    }
                }
                // Expired, or pending from a process that died: take it over from what was read.
                condition = ("#at = :old".to_owned(), Some(n(at)));
            }
            let mut record = key(idemp_pk(idempotency_key), IDEMP);
            record.insert("fp".into(), s(fingerprint));
            record.insert("at".into(), n(now));
            record.insert("expires".into(), n((now + ms(keep_for)) / 1000));
            let mut put = self.client.put_item().table_name(&self.table).set_item(Some(record));
            put = put.condition_expression(condition.0);
            if let Some(old) = condition.1 {
                put = put.expression_attribute_names("#at", "at").expression_attribute_values(":old", old);
            }
            match put.send().await {
                Ok(_) => return Ok(IdempotencyClaim::Started),
                Err(err) if err.as_service_error().is_some_and(condition_failed) => continue,
                Err(err) => return Err(store_error(err)),
            }
        }
        Ok(IdempotencyClaim::InProgress)
    }

    async fn complete_idempotent(
        &self,
        idempotency_key: &str,
        fingerprint: &str,
        response: &RecordedResponse,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(idemp_pk(idempotency_key), IDEMP)))
            .update_expression("SET doc = :doc")
            .condition_expression("fp = :fp AND attribute_not_exists(doc)")
            .expression_attribute_values(":doc", to_doc(response))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        unless_condition_failed(result)
    }

    async fn abandon_idempotent(&self, idempotency_key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(idemp_pk(idempotency_key), IDEMP)))
            .condition_expression("fp = :fp AND attribute_not_exists(doc)")
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        unless_condition_failed(result)
    }
}
