//! `ProvisioningJournals` on DynamoDB: `JOURNAL#<name>` / `#JOURNAL`, one document per thing.

use async_trait::async_trait;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{ProvisioningJournals, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;

use super::{DynamoStore, doc, key, to_doc};

pub(crate) fn journal_pk(name: &ThingName) -> String {
    format!("JOURNAL#{}", name.as_str())
}

#[async_trait]
impl ProvisioningJournals for DynamoStore {
    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError> {
        match self.get(&journal_pk(name), "#JOURNAL").await? {
            Some(item) => doc(&item),
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &ProvisioningJournal) -> Result<(), StoreError> {
        let mut item = key(journal_pk(name), "#JOURNAL");
        item.insert("doc".into(), to_doc(journal));
        self.put(item).await
    }
}
