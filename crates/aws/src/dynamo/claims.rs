//! One owner per thing on DynamoDB: `CLAIM#<name>` / `#CLAIM` names the task whose open item
//! owns the thing. A new core or device task takes a claim per item with a conditional put
//! (free, or already its own) before its items and header are written; a claim held by an
//! open item refuses the task, and the claims it took are released. A claim is stale when its
//! item has ended (or its task never got a header within `STALE_AFTER`) and is then taken
//! over, conditioned on the holder read. The item's ending deletes its claim in the same
//! transaction.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};
use futures::StreamExt as _;
use ggprov_domain::cores::Task;
use ggprov_domain::ports::StoreError;
use ggprov_domain::thing::ThingKind;
use ggprov_domain::{TaskId, TaskType, ThingName, Timestamp};

use super::tasks::{HEADER, task_pk};
use super::{DynamoStore, MAX_TRIES, condition_failed, get_n, get_s, key, n, s, store_error, unless_condition_failed};

const CLAIM: &str = "#CLAIM";
/// A claim whose task has no header after this long belongs to a submission that died.
const STALE_AFTER_MS: i64 = 10 * 60 * 1000;
/// Claims taken at once.
const PARALLEL: usize = 16;

fn claim_pk(name: &ThingName) -> String {
    format!("CLAIM#{}", name.as_str())
}

impl DynamoStore {
    /// Takes a claim for every item of a core or device task, or none.
    pub(crate) async fn claim_things(&self, task: &Task) -> Result<(), StoreError> {
        let Some(kind) = task.kind.owns() else { return Ok(()) };
        let names: Vec<ThingName> = task.items.iter().map(|i| i.name.clone()).collect();
        let results: Vec<(ThingName, Result<(), StoreError>)> = futures::stream::iter(names)
            .map(|name| async move {
                let result = self.claim(task, kind, &name).await;
                (name, result)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let Some(refusal) = results.iter().find_map(|(_, r)| r.as_ref().err()) else {
            // Every name is ours now: none can become the other kind meanwhile, so one batched
            // read decides the kind rule for all of them.
            let refusal = self.check_kinds(task, kind).await?;
            let Some(refusal) = refusal else { return Ok(()) };
            self.release_claims(task).await?;
            return Err(refusal);
        };
        let refusal = match refusal {
            StoreError::Claimed { name, task } => StoreError::Claimed { name: name.clone(), task: task.clone() },
            StoreError::OtherKind { name, is } => StoreError::OtherKind { name: name.clone(), is: *is },
            other => StoreError::unavailable(other.to_string()),
        };
        for (name, result) in &results {
            if result.is_ok() {
                self.release_claim(&task.id, name).await?;
            }
        }
        Err(refusal)
    }

    async fn claim(&self, task: &Task, kind: ThingKind, name: &ThingName) -> Result<(), StoreError> {
        let mut holder_seen: Option<String> = None;
        for _ in 0..MAX_TRIES {
            let mut record = key(claim_pk(name), CLAIM);
            record.insert("task_id".into(), s(task.id.as_str()));
            record.insert("kind".into(), s(kind.as_str()));
            record.insert("at".into(), n(Timestamp::now().as_millis()));
            let mut put = self.client.put_item().table_name(&self.table).set_item(Some(record));
            put = match &holder_seen {
                // Free, or ours already (a retried submission).
                None => put
                    .condition_expression("attribute_not_exists(pk) OR task_id = :t")
                    .expression_attribute_values(":t", s(task.id.as_str())),
                // Taking over a stale claim: only from the holder we judged.
                Some(holder) => {
                    put.condition_expression("task_id = :h").expression_attribute_values(":h", s(holder.as_str()))
                }
            };
            match put.send().await {
                Ok(_) => return Ok(()),
                Err(err) if err.as_service_error().is_some_and(condition_failed) => {}
                Err(err) => return Err(store_error(err)),
            }
            let Some(existing) = self.get(&claim_pk(name), CLAIM).await? else {
                holder_seen = None;
                continue;
            };
            let holder = TaskId::from_text(get_s(&existing, "task_id")?);
            if self.holds(&holder, name, get_n(&existing, "at")?).await? {
                return Err(StoreError::Claimed { name: name.clone(), task: holder });
            }
            holder_seen = Some(holder.as_str().to_owned());
        }
        Err(StoreError::Conflict)
    }

    /// The task whose claim owns the thing now, if any.
    pub(crate) async fn open_claim_of(&self, name: &ThingName) -> Result<Option<TaskId>, StoreError> {
        let Some(existing) = self.get(&claim_pk(name), CLAIM).await? else { return Ok(None) };
        let holder = TaskId::from_text(get_s(&existing, "task_id")?);
        Ok(self.holds(&holder, name, get_n(&existing, "at")?).await?.then_some(holder))
    }

    /// Whether the claim of `holder` (taken at `at`) still owns the thing.
    async fn holds(&self, holder: &TaskId, name: &ThingName, at: i64) -> Result<bool, StoreError> {
        let header = self.get(&task_pk(holder), HEADER).await?;
        match (header, self.read_item(holder, name).await?) {
            (Some(_), Some((_, item))) => Ok(!item.status.is_terminal()),
            (Some(_), None) => Ok(false),
            // No header yet: a submission in flight, or one that died long ago.
            (None, _) => Ok(Timestamp::now().as_millis() - at < STALE_AFTER_MS),
        }
    }

    /// A `Create` must not make a thing of the other kind: the first name that is one.
    async fn check_kinds(&self, task: &Task, kind: ThingKind) -> Result<Option<StoreError>, StoreError> {
        if task.task_type != TaskType::Create {
            return Ok(None);
        }
        let other = kind.other();
        let keys = task
            .items
            .iter()
            .map(|item| match other {
                ThingKind::Core => key(format!("CORE#{}", item.name.as_str()), "#CORE"),
                ThingKind::Device => key(format!("DEVICE#{}", item.name.as_str()), "#DEVICE"),
            })
            .collect();
        let found = self.existing_keys(keys).await?;
        let taken: Vec<&str> = found.iter().filter_map(|item| get_s(item, "pk").ok()).collect();
        Ok(task
            .items
            .iter()
            .find(|item| taken.iter().any(|pk| pk.split_once('#').is_some_and(|(_, n)| n == item.name.as_str())))
            .map(|item| StoreError::OtherKind { name: item.name.clone(), is: other }))
    }

    /// Releases every claim a task took (those it holds; others are left alone).
    pub(crate) async fn release_claims(&self, task: &Task) -> Result<(), StoreError> {
        for item in &task.items {
            self.release_claim(&task.id, &item.name).await?;
        }
        Ok(())
    }

    async fn release_claim(&self, task: &TaskId, name: &ThingName) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(claim_pk(name), CLAIM)))
            .condition_expression("task_id = :t")
            .expression_attribute_values(":t", s(task.as_str()))
            .send()
            .await;
        unless_condition_failed(result)
    }

    /// The write that releases `task`'s claim on `name` with the item's ending, if it holds one.
    pub(crate) async fn claim_release_write(
        &self,
        task: &TaskId,
        name: &ThingName,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        let Some(existing) = self.get(&claim_pk(name), CLAIM).await? else { return Ok(None) };
        if get_s(&existing, "task_id")? != task.as_str() {
            return Ok(None);
        }
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(claim_pk(name), CLAIM)))
            .condition_expression("task_id = :t")
            .expression_attribute_values(":t", s(task.as_str()))
            .build()
            .expect("complete delete");
        Ok(Some(TransactWriteItem::builder().delete(delete).build()))
    }
}
