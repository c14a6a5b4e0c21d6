//! `RolloutRecords` on DynamoDB: the rollout state on the task header (`rollout`, conditional
//! on `rollout_rev`; active rollouts in the sparse `gsi3` = `ROLLOUT`), items' waves and reports
//! as attributes of the item records, retry revisions on the header (`revision`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use ggprov_domain::cores::{Core, Event, NewCore, TaskFamily, TaskItem, TemplateRef};
use ggprov_domain::ports::{RolloutRecords, StoreError};
use ggprov_domain::rollout::{CoreDeploymentView, ItemReport, RolloutItem, RolloutState};
use ggprov_domain::{ItemCounts, TaskId, TaskStatus, ThingName, Timestamp};

use super::cores::{CORE, core_pk};
use super::tasks::{HEADER, item_sk, task_pk};
use super::{DynamoStore, Item, Query, TxError, corrupt, doc, get_s, key, n, opt_n, opt_s, s, to_doc};

/// The header update that saves a rollout state on condition of its revision.
fn rollout_update(table: &str, task: &TaskId, expected: u64, next: &RolloutState) -> Update {
    let expression = if next.is_active() {
        "SET rollout = :r, rollout_rev = :next, gsi3pk = :g, gsi3sk = :id"
    } else {
        "SET rollout = :r, rollout_rev = :next REMOVE gsi3pk, gsi3sk"
    };
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key(task_pk(task), HEADER)))
        .update_expression(expression)
        .condition_expression("rollout_rev = :rev")
        .expression_attribute_values(":r", to_doc(next))
        .expression_attribute_values(":next", n(next.rev))
        .expression_attribute_values(":rev", n(expected));
    if next.is_active() {
        update =
            update.expression_attribute_values(":g", s("ROLLOUT")).expression_attribute_values(":id", s(task.as_str()));
    }
    update.build().expect("complete update")
}

impl DynamoStore {
    /// Ends every `Waiting` item of a task with `Failure` and report `SKIPPED`, 99 items and
    /// their header counts a transaction (each item on condition it is still `Waiting`).
    async fn skip_waiting(&self, task: &TaskId, message: &str) -> Result<(), StoreError> {
        let mut query = Query::partition(None, task_pk(task));
        query.prefix = Some("I#".to_owned());
        let waiting: Vec<Item> = self
            .query(query)
            .await?
            .into_iter()
            .filter(|raw| opt_s(raw, "status") == Some(TaskStatus::Waiting.as_str()))
            .collect();
        let now = Timestamp::now();
        for chunk in waiting.chunks(99) {
            let mut writes = Vec::new();
            let mut skipped = 0i64;
            for raw in chunk {
                let mut item: TaskItem<NewCore> = doc(raw)?;
                item.status = TaskStatus::Failure;
                item.status_message = Some(message.to_owned());
                item.updated_at = Some(now);
                let mut raw = raw.clone();
                raw.insert("report".into(), s(ItemReport::Skipped.as_str()));
                let family = match opt_s(&raw, "family") {
                    Some(family) => super::tasks::family_of(family)?,
                    None => TaskFamily::Deployment,
                };
                writes.push(self.item_put(task, family, &item, TaskStatus::Waiting, &raw));
                skipped += 1;
            }
            let counts = ItemCounts { total: 0, waiting: -skipped, success: 0, failure: skipped };
            writes.push(self.header_update(task, counts, now));
            match self.transact(writes).await {
                // An item moved on meanwhile: the next call skips what is still waiting.
                Ok(()) | Err(TxError::Cancelled(_)) => {}
                Err(TxError::Store(err)) => return Err(err),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RolloutRecords for DynamoStore {
    async fn active_rollouts(&self) -> Result<Vec<TaskId>, StoreError> {
        self.query(Query::partition(Some("gsi3"), "ROLLOUT"))
            .await?
            .iter()
            .map(|item| Ok(TaskId::from_text(get_s(item, "gsi3sk")?)))
            .collect()
    }

    async fn save_rollout(
        &self,
        task: &TaskId,
        state: &mut RolloutState,
        event: Option<&Event>,
        skip: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut next = state.clone();
        next.rev += 1;
        let update = rollout_update(&self.table, task, state.rev, &next);
        let mut writes = vec![TransactWriteItem::builder().update(update).build()];
        if let Some(event) = event {
            writes.push(self.event_put(event, Timestamp::now()));
        }
        match self.transact(writes).await {
            Ok(()) => {}
            Err(TxError::Cancelled(_)) => return Ok(false),
            Err(TxError::Store(err)) => return Err(err),
        }
        *state = next;
        if let Some(message) = skip {
            self.skip_waiting(task, message).await?;
        }
        Ok(true)
    }

    async fn rollout_items(&self, task: &TaskId) -> Result<Vec<RolloutItem>, StoreError> {
        let mut query = Query::partition(None, task_pk(task));
        query.prefix = Some("I#".to_owned());
        let raws = self.query(query).await?;
        let mut items = Vec::with_capacity(raws.len());
        for raw in &raws {
            let item: TaskItem<NewCore> = doc(raw)?;
            items.push(RolloutItem {
                name: item.name,
                wave: opt_n(raw, "wave")?.unwrap_or(0),
                status: item.status,
                report: opt_s(raw, "report").map(|t| ItemReport::parse(t).ok_or_else(|| corrupt(t))).transpose()?,
                previous: raw.get("previous").map(doc_of).transpose()?,
                core: None,
            });
        }
        // Cores are read (100 a call) for items not decided yet and for failed ones (a retry
        // leaves out those that run the version by now); succeeded and skipped items need none.
        let keys: Vec<Item> = items
            .iter()
            .filter(|i| {
                i.status != TaskStatus::Waiting
                    && !matches!(i.report, Some(ItemReport::Succeeded | ItemReport::Skipped))
            })
            .map(|i| key(core_pk(i.name.as_str()), CORE))
            .collect();
        let mut cores = std::collections::BTreeMap::new();
        for raw in self.batch_get(keys, None).await? {
            let core: Core = doc(&raw)?;
            cores.insert(core.name.clone(), CoreDeploymentView::from(&core));
        }
        for item in &mut items {
            item.core = cores.remove(&item.name);
        }
        Ok(items)
    }

    async fn save_item_reports(&self, task: &TaskId, reports: &[(ThingName, ItemReport)]) -> Result<(), StoreError> {
        for (name, report) in reports {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(task_pk(task), item_sk(name))))
                .update_expression("SET report = :r")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(report)")
                .expression_attribute_values(":r", s(report.as_str()))
                .send()
                .await;
            super::unless_condition_failed(result)?;
        }
        Ok(())
    }

    async fn save_task_revision(
        &self,
        task: &TaskId,
        template: &TemplateRef,
        deployment_id: &str,
    ) -> Result<String, StoreError> {
        let header = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(task_pk(task), HEADER)))
            .update_expression("SET revision = :d")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revision)")
            .expression_attribute_values(":d", s(deployment_id))
            .build()
            .expect("complete update");
        let current = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(format!("TPLDEP#{}#{}", template.name, template.version), "#TPLDEP")))
            .update_expression("SET deployment_id = :d")
            .expression_attribute_values(":d", s(deployment_id))
            .build()
            .expect("complete update");
        let writes = vec![
            TransactWriteItem::builder().update(header).build(),
            TransactWriteItem::builder().update(current).build(),
            self.revision_put(deployment_id, template),
        ];
        match self.transact(writes).await {
            Ok(()) | Err(TxError::Cancelled(_)) => {}
            Err(TxError::Store(err)) => return Err(err),
        }
        let header = self.get(&task_pk(task), HEADER).await?.ok_or_else(|| corrupt("retry task vanished"))?;
        Ok(get_s(&header, "revision")?.to_owned())
    }
}

fn doc_of<T: serde::de::DeserializeOwned>(value: &super::Av) -> Result<T, StoreError> {
    let mut item = Item::new();
    item.insert("doc".into(), value.clone());
    doc(&item)
}
