//! What templates and applications share: a head item (`#HEAD`) and one item per version
//! (`V#<version, 10 digits>`) in the record's partition.

use ggprov_domain::PageRequest;
use ggprov_domain::ports::StoreError;

use super::{DynamoStore, Item, Query, get_s, key};

pub(crate) const HEAD: &str = "#HEAD";

pub(crate) fn version_sk(version: u32) -> String {
    format!("V#{version:010}")
}

impl DynamoStore {
    /// One page of a record's versions (one more than asked, for `Page::from_overfetch`).
    pub(crate) async fn version_items(&self, pk: String, page: &PageRequest<u32>) -> Result<Vec<Item>, StoreError> {
        let mut query = Query::partition(None, pk);
        query.prefix = Some("V#".to_owned());
        query.after = page.exclusive_start.map(version_sk);
        query.limit = Some(page.limit as usize + 1);
        self.query(query).await
    }

    /// Deletes every version item of a record (its head stays: the caller deletes it last, so an
    /// interrupted delete leaves a record that a retried delete finishes, never versions without
    /// a head that a new record would show).
    pub(crate) async fn delete_versions(&self, pk: String) -> Result<(), StoreError> {
        let mut query = Query::partition(None, pk);
        query.prefix = Some("V#".to_owned());
        let keys = self
            .query(query)
            .await?
            .iter()
            .map(|item| Ok(key(get_s(item, "pk")?, get_s(item, "sk")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.delete_all(keys).await
    }
}
