//! `ProvisioningJournals` on DynamoDB: `JOURNAL#<name>` / `#JOURNAL`, one document per thing.

use async_trait::async_trait;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{ProvisioningJournals, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::{DynamoStore, Item, doc, key, n, opt_n, store_error, to_doc};

pub(crate) fn journal_pk(name: &ThingName) -> String {
    format!("JOURNAL#{}", name.as_str())
}

#[async_trait]
impl ProvisioningJournals for DynamoStore {
    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError> {
        match self.get(&journal_pk(name), "#JOURNAL").await? {
            Some(item) => {
                let mut journal: ProvisioningJournal = doc(&item)?;
                // Journals written before revisions were kept count as revision 1.
                journal.rev = opt_n(&item, "rev")?.unwrap_or(1);
                Ok(journal)
            }
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &mut ProvisioningJournal) -> Result<(), StoreError> {
        let (item, condition, values) = journal_put(name, journal);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values);
        match put.send().await {
            Ok(_) => {
                journal.rev += 1;
                Ok(())
            }
            Err(err)
                if err.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception,
                ) =>
            {
                Err(StoreError::Conflict)
            }
            Err(err) => Err(store_error(err)),
        }
    }
}

/// The journal at revision `journal.rev + 1`, with the condition that the stored one is at
/// `journal.rev` (absent for 0; journals from before revisions count as 1).
fn journal_put(name: &ThingName, journal: &ProvisioningJournal) -> (Item, &'static str, Option<Item>) {
    let mut item = key(journal_pk(name), "#JOURNAL");
    item.insert("doc".into(), to_doc(journal));
    item.insert("rev".into(), n(journal.rev + 1));
    match journal.rev {
        0 => (item, "attribute_not_exists(pk)", None),
        1 => (
            item,
            "attribute_exists(pk) AND (rev = :rev OR attribute_not_exists(rev))",
            Some(Item::from([(":rev".to_owned(), n(1))])),
        ),
        rev => (item, "rev = :rev", Some(Item::from([(":rev".to_owned(), n(rev))]))),
    }
}

impl DynamoStore {
    /// [`ProvisioningJournals::save_journal`] as one write of a transaction.
    pub(crate) fn journal_write(&self, name: &ThingName, journal: &ProvisioningJournal) -> TransactWriteItem {
        let (item, condition, values) = journal_put(name, journal);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .expect("table and item given");
        TransactWriteItem::builder().put(put).build()
    }
}
