//! `DeploymentRecords` on DynamoDB: deployment tasks' targets (expanded into the task's
//! partition, unexpanded tasks in the sparse `gsi3` = `UNEXPANDED`), a core's deployment
//! history (`gsi2` = `COREDEP#<core>`), template deployments (`TPLDEP#<template>#<version>`,
//! and `DEP#<id>` back), and each core's deployment state, changed only through the domain's
//! transitions.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use ggprov_domain::cores::{Event, NewCore, TaskFamily, TaskItem, TemplateRef};
use ggprov_domain::ports::{DeploymentOutcome, DeploymentRecords, StoreError};
use ggprov_domain::rollout::RolloutState;
use ggprov_domain::software::Nucleus;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};

use super::cores::ItemEnd;
use super::tasks::{HEADER, item_record, task_pk};
use super::{DynamoStore, Query, TxError, doc, get_s, key, n, s, to_doc};

impl DynamoStore {
    /// The record saying which template version a Greengrass deployment (revision) deploys.
    pub(crate) fn revision_put(&self, deployment_id: &str, template: &TemplateRef) -> TransactWriteItem {
        let mut by_id = key(format!("DEP#{deployment_id}"), "#DEP");
        by_id.insert("doc".into(), to_doc(template));
        TransactWriteItem::builder()
            .put(Put::builder().table_name(&self.table).set_item(Some(by_id)).build().expect("complete put"))
            .build()
    }
}

#[async_trait]
impl DeploymentRecords for DynamoStore {
    async fn unexpanded_deployment_tasks(&self, before: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        let mut query = Query::partition(Some("gsi3"), "UNEXPANDED");
        query.before = Some(format!("{:013}", before.as_millis()));
        self.query(query).await?.iter().map(|item| Ok(TaskId::from_text(&get_s(item, "pk")?[5..]))).collect()
    }

    /// Records the cores a deployment task targets, once. Stale items of an interrupted
    /// expansion are removed first; the header is claimed last, with the counts of exactly
    /// the items written.
    async fn expand_deployment_task(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        waves: &[u32],
        batch_size: u32,
        events: &[ggprov_domain::cores::Event],
        rollout: Option<&RolloutState>,
    ) -> Result<bool, StoreError> {
        let Some(header) = self.get(&task_pk(task), HEADER).await? else { return Ok(false) };
        if matches!(header.get("expanded"), Some(super::Av::Bool(true))) {
            return Ok(false);
        }
        let mut query = Query::partition(None, task_pk(task));
        query.prefix = Some("I#".to_owned());
        let stale = self
            .query(query)
            .await?
            .iter()
            .map(|item| Ok(key(get_s(item, "pk")?, get_s(item, "sk")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.delete_all(stale).await?;
        let now = Timestamp::now();
        let items = cores
            .iter()
            .enumerate()
            .map(|(i, core)| {
                let request: NewCore =
                    serde_json::from_value(serde_json::json!({"name": core.as_str(), "provisioningTemplate": ""}))
                        .expect("a valid request");
                let mut record = item_record(
                    task,
                    TaskFamily::Deployment,
                    &TaskItem {
                        name: core.clone(),
                        request,
                        status: TaskStatus::Waiting,
                        status_message: None,
                        created_at: now,
                        updated_at: None,
                    },
                );
                record.insert("wave".into(), n(waves.get(i).copied().unwrap_or(0)));
                record
            })
            .collect();
        self.put_all(items).await?;
        let total = cores.len() as i64;
        // A rollout is saved only if nobody changed it since it was read; an active one moves
        // the header from the unexpanded listing to the rollout listing.
        let (expression, condition) = match rollout {
            Some(r) if r.is_active() => (
                "SET expanded = :t, batches_total = :b, batch_size = :bs, n_total = :n, n_waiting = :n, updated = :now, \
                 rollout = :r, rollout_rev = :next, gsi3pk = :g, gsi3sk = :id",
                "expanded = :f AND rollout_rev = :rev",
            ),
            Some(_) => (
                "SET expanded = :t, batches_total = :b, batch_size = :bs, n_total = :n, n_waiting = :n, updated = :now, \
                 rollout = :r, rollout_rev = :next REMOVE gsi3pk, gsi3sk",
                "expanded = :f AND rollout_rev = :rev",
            ),
            None => (
                "SET expanded = :t, batches_total = :b, batch_size = :bs, n_total = :n, n_waiting = :n, updated = :now \
                 REMOVE gsi3pk, gsi3sk",
                "expanded = :f",
            ),
        };
        let mut claim = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(task_pk(task), HEADER)))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_values(":t", super::Av::Bool(true))
            .expression_attribute_values(":f", super::Av::Bool(false))
            .expression_attribute_values(":b", n(cores.len().div_ceil(batch_size.max(1) as usize)))
            .expression_attribute_values(":bs", n(batch_size))
            .expression_attribute_values(":n", n(total))
            .expression_attribute_values(":now", n(now.as_millis()));
        if let Some(r) = rollout {
            let mut next = r.clone();
            next.rev += 1;
            claim = claim
                .expression_attribute_values(":r", to_doc(&next))
                .expression_attribute_values(":next", n(next.rev))
                .expression_attribute_values(":rev", n(r.rev));
            if next.is_active() {
                claim = claim
                    .expression_attribute_values(":g", s("ROLLOUT"))
                    .expression_attribute_values(":id", s(task.as_str()));
            }
        }
        let mut writes = vec![TransactWriteItem::builder().update(claim.build().expect("complete update")).build()];
        writes.extend(events.iter().map(|event| self.event_put(event, now)));
        match self.transact(writes).await {
            Ok(()) => Ok(true),
            Err(super::TxError::Cancelled(_)) => Ok(false),
            Err(super::TxError::Store(err)) => Err(err),
        }
    }

    async fn fail_deployment_task(&self, task: &TaskId, message: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(task_pk(task), HEADER)))
            .update_expression("SET expanded = :t, batches_total = :z, status_message = :m REMOVE gsi3pk, gsi3sk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", super::Av::Bool(true))
            .expression_attribute_values(":z", n(0))
            .expression_attribute_values(":m", s(message))
            .send()
            .await
            .map_err(crate::store_error)?;
        Ok(())
    }
    async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError> {
        let mut query = Query::partition(Some("gsi2"), format!("COREDEP#{}", core.as_str()));
        query.after = page.exclusive_start.as_ref().map(|id| id.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let items = self
            .query(query)
            .await?
            .iter()
            .map(|item| Ok((TaskId::from_text(get_s(item, "gsi2sk")?), doc(item)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::from_overfetch(items, page.limit, |(id, _)| id.clone()))
    }

    async fn template_deployment(&self, template: &TemplateRef) -> Result<Option<String>, StoreError> {
        let item = self.get(&format!("TPLDEP#{}#{}", template.name, template.version), "#TPLDEP").await?;
        item.map(|i| get_s(&i, "deployment_id").map(str::to_owned)).transpose()
    }

    async fn save_template_deployment(
        &self,
        template: &TemplateRef,
        thing_group: &str,
        deployment_id: &str,
    ) -> Result<String, StoreError> {
        let mut by_template = key(format!("TPLDEP#{}#{}", template.name, template.version), "#TPLDEP");
        by_template.insert("deployment_id".into(), s(deployment_id));
        by_template.insert("thing_group".into(), s(thing_group));
        let writes = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(by_template))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("complete put"),
                )
                .build(),
            self.revision_put(deployment_id, template),
        ];
        match self.transact(writes).await {
            Ok(()) | Err(TxError::Cancelled(_)) => self
                .template_deployment(template)
                .await?
                .ok_or_else(|| StoreError::unavailable("template deployment vanished")),
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn template_of_deployment(&self, deployment_id: &str) -> Result<Option<TemplateRef>, StoreError> {
        self.get(&format!("DEP#{deployment_id}"), "#DEP").await?.as_ref().map(doc).transpose()
    }

    async fn complete_deployment_item(
        &self,
        task: &TaskId,
        core: &ThingName,
        template: &TemplateRef,
        deployment_id: &str,
        nucleus: Option<&Nucleus>,
        moved_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.end_item_with_core(task, core, ItemEnd::success(), |before, now| {
            let mut after = before?.core.clone();
            after.assign_deployment(template, deployment_id, nucleus, moved_at.min(now));
            Some(Some(after))
        })
        .await
    }

    async fn fail_deployment_item(&self, task: &TaskId, core: &ThingName, message: &str) -> Result<(), StoreError> {
        self.end_item_with_core(task, core, ItemEnd::failure(message), |before, now| {
            let mut after = before?.core.clone();
            after.record_deployment_failure(message, now);
            Some(Some(after))
        })
        .await
    }

    async fn apply_deployment_outcome(
        &self,
        outcome: &DeploymentOutcome,
        template: &TemplateRef,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let event_write = self.event_put(event, Timestamp::now());
        self.change_core(&outcome.core_name, |before| {
            let mut after = before?.core.clone();
            after.apply_outcome(outcome, template).then(|| (Some(after), vec![event_write.clone()]))
        })
        .await
    }
}
