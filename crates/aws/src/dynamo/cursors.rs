//! `IngestCursors` on DynamoDB: `CURSOR#<feed>` / `#CURSOR`, moved forward only (conditional).

use async_trait::async_trait;
use ggprov_domain::ports::{IngestCursors, StoreError};

use super::{DynamoStore, get_n, key, n, unless_condition_failed};

#[async_trait]
impl IngestCursors for DynamoStore {
    async fn ingest_cursor(&self, feed: &str) -> Result<u64, StoreError> {
        let item = self.get(&format!("CURSOR#{feed}"), "#CURSOR").await?;
        Ok(item.map(|i| get_n(&i, "position")).transpose()?.unwrap_or(0))
    }

    async fn save_ingest_cursor(&self, feed: &str, position: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("CURSOR#{feed}"), "#CURSOR")))
            .update_expression("SET #p = :p")
            .condition_expression("attribute_not_exists(#p) OR #p < :p")
            .expression_attribute_names("#p", "position")
            .expression_attribute_values(":p", n(position))
            .send()
            .await;
        // A cursor already further on stays where it is.
        unless_condition_failed(result)
    }
}
