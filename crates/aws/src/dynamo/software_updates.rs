//! `SoftwareUpdateRecords` on DynamoDB: `SWUPDATE#<id>` / `#TASK` holds the document and its
//! revision (listed through `gsi1` `SWUPDATES`); `SWTOKEN#<token>` / `#TOKEN` reserves a
//! client token for one task, created in the same transaction.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use ggprov_domain::ports::{SoftwareUpdateRecords, StoreError};
use ggprov_domain::software_update::SoftwareUpdateTask;
use ggprov_domain::{Page, PageRequest, TaskId, Timestamp};

use super::{DynamoStore, Item, Query, TxError, doc, get_s, key, n, s, to_doc};

const TASK: &str = "#TASK";
const TOKEN: &str = "#TOKEN";

fn task_pk(id: &TaskId) -> String {
    format!("SWUPDATE#{}", id.as_str())
}

fn token_pk(token: &str) -> String {
    format!("SWTOKEN#{token}")
}

fn task_item(task: &SoftwareUpdateTask) -> Item {
    let mut item = key(task_pk(&task.id), TASK);
    item.insert("doc".into(), to_doc(task));
    item.insert("rev".into(), n(task.rev));
    item.insert("gsi1pk".into(), s("SWUPDATES"));
    item.insert("gsi1sk".into(), s(task.id.as_str()));
    item
}

#[async_trait]
impl SoftwareUpdateRecords for DynamoStore {
    async fn create_software_update(&self, task: &SoftwareUpdateTask) -> Result<(), StoreError> {
        let mut writes = vec![self.put(task_item(task), Some("attribute_not_exists(pk)"))];
        if let Some(token) = &task.request.client_token {
            let mut reservation = key(token_pk(token), TOKEN);
            reservation.insert("id".into(), s(task.id.as_str()));
            writes.push(self.put(reservation, Some("attribute_not_exists(pk)")));
        }
        match self.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TxError::Cancelled(reasons)) if reasons.iter().any(|r| r == "ConditionalCheckFailed") => {
                Err(StoreError::AlreadyExists)
            }
            Err(TxError::Cancelled(_)) => Err(StoreError::Conflict),
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn save_software_update(&self, task: &mut SoftwareUpdateTask) -> Result<(), StoreError> {
        let previous = task.rev;
        task.rev += 1;
        task.updated_at = Timestamp::now();
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(task_item(task)))
            .condition_expression("rev = :rev")
            .expression_attribute_values(":rev", n(previous))
            .build()
            .expect("complete put");
        match self.transact(vec![TransactWriteItem::builder().put(put).build()]).await {
            Ok(()) => Ok(()),
            Err(err) => {
                task.rev = previous;
                match err {
                    TxError::Cancelled(_) => Err(StoreError::Conflict),
                    TxError::Store(err) => Err(err),
                }
            }
        }
    }

    async fn software_update(&self, id: &TaskId) -> Result<Option<SoftwareUpdateTask>, StoreError> {
        self.get(&task_pk(id), TASK).await?.map(|item| doc(&item)).transpose()
    }

    async fn software_update_by_token(&self, token: &str) -> Result<Option<SoftwareUpdateTask>, StoreError> {
        let Some(reservation) = self.get(&token_pk(token), TOKEN).await? else { return Ok(None) };
        self.software_update(&TaskId::from_text(get_s(&reservation, "id")?)).await
    }

    async fn list_software_updates(
        &self,
        page: PageRequest<TaskId>,
    ) -> Result<Page<SoftwareUpdateTask, TaskId>, StoreError> {
        let mut query = Query::partition(Some("gsi1"), "SWUPDATES");
        query.after = page.exclusive_start.as_ref().map(|id| id.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let tasks = self.query(query).await?.iter().map(doc).collect::<Result<Vec<SoftwareUpdateTask>, _>>()?;
        Ok(Page::from_overfetch(tasks, page.limit, |t| t.id.clone()))
    }
}
