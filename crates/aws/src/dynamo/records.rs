//! Cores, devices, journals, template deployments, fleet counters, the outbox and ingest
//! cursors, and the `CoreStore` implementation that ties them to tasks.
//!
//! A core is `CORE#<name>` / `#CORE` with a revision `rev`; every change is a read, then a
//! transaction conditioned on that revision which also moves the fleet counters by the
//! difference of the core's contribution (sharded: `FLEET#<shard>` / `<template>#<version>`)
//! and writes the outbox event (`EVENTS#<shard>` / `<sequence>#<id>`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use ggprov_domain::cores::{
    Core, DeploymentState, Device, Event, IN_PROGRESS, NewCore, SUCCESSFUL, StoredEvent, Task, TaskFamily, TaskItem,
    TemplateRef, VersionCounts,
};
use ggprov_domain::ports::{CoreFilter, CoreStore, DeploymentOutcome, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};

use super::{
    DynamoStore, Item, MAX_TRIES, Query, SHARDS, TxError, doc, get_n, get_s, key, n, opt_n, s, shard_of, store_error,
    to_doc,
};

const CORE: &str = "#CORE";

fn core_pk(name: &str) -> String {
    format!("CORE#{name}")
}

fn event_sk(sequence: u64, id: &str) -> String {
    format!("{sequence:020}#{id}")
}

/// What one core adds to the fleet counters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contribution {
    desired: TemplateRef,
    reported: TemplateRef,
    state: DeploymentState,
}

impl Contribution {
    fn of(core: &Core) -> Self {
        Self {
            desired: core.desired.clone(),
            reported: core.reported.clone(),
            state: DeploymentState::of(&core.deployment_status),
        }
    }
}

/// Counter deltas by counter item, columns `d r s f p`.
type Deltas = BTreeMap<(String, u32), [i64; 5]>;

fn add_contribution(deltas: &mut Deltas, c: &Contribution, sign: i64) {
    let state = match c.state {
        DeploymentState::Success => 2,
        DeploymentState::Failed => 3,
        DeploymentState::InProgress => 4,
    };
    let desired = deltas.entry((c.desired.name.clone(), c.desired.version)).or_default();
    desired[0] += sign;
    desired[state] += sign;
    deltas.entry((c.reported.name.clone(), c.reported.version)).or_default()[1] += sign;
}

/// Builds a transaction with `$build` (an expression of type
/// `Result<Option<Vec<TransactWriteItem>>, StoreError>`; `None` = nothing to do) and commits
/// it, building again after a cancellation.
macro_rules! retry_tx {
    ($store:expr, $build:block) => {{
        let mut result = Err(StoreError::Conflict);
        for _ in 0..MAX_TRIES {
            let built: Result<Option<Vec<TransactWriteItem>>, StoreError> = async { $build }.await;
            let Some(writes) = built? else {
                result = Ok(());
                break;
            };
            match $store.transact(writes).await {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err(TxError::Cancelled(_)) => continue,
                Err(TxError::Store(err)) => {
                    result = Err(err);
                    break;
                }
            }
        }
        result
    }};
}

/// A stored core with the revision it was read at.
struct Revised {
    core: Core,
    rev: u64,
}

impl DynamoStore {
    async fn read_core(&self, name: &str) -> Result<Option<Revised>, StoreError> {
        let Some(item) = self.get(&core_pk(name), CORE).await? else { return Ok(None) };
        Ok(Some(Revised { core: doc(&item)?, rev: get_n(&item, "rev")? }))
    }

    fn core_record(core: &Core, rev: u64) -> Item {
        let mut item = key(core_pk(core.name.as_str()), CORE);
        item.insert("doc".into(), to_doc(core));
        item.insert("rev".into(), n(rev));
        item.insert("gsi1pk".into(), s("CORES"));
        item.insert("gsi1sk".into(), s(core.name.as_str()));
        item.insert("gsi2pk".into(), s(format!("CORETPL#{}", core.desired.name)));
        item.insert("gsi2sk".into(), s(core.name.as_str()));
        item.insert("desired_version".into(), n(core.desired.version));
        // A core is in at most one of these sparse listings: deployment running, or failed.
        match DeploymentState::of(&core.deployment_status) {
            DeploymentState::InProgress => {
                item.insert("gsi3pk".into(), s("INPROGRESS"));
                item.insert("gsi3sk".into(), s(core.name.as_str()));
            }
            DeploymentState::Failed => {
                item.insert("gsi3pk".into(), s("FAILED"));
                item.insert("gsi3sk".into(), s(core.name.as_str()));
            }
            DeploymentState::Success => {}
        }
        item
    }

    /// The writes that replace (or create, or delete with `None`) a core read at `before`,
    /// with the counter moves.
    fn core_writes(&self, before: Option<&Revised>, after: Option<&Core>) -> Vec<TransactWriteItem> {
        let mut writes = Vec::new();
        let name = before.map(|b| b.core.name.as_str()).or(after.map(|a| a.name.as_str())).unwrap_or_default();
        let condition = |rev: Option<u64>| match rev {
            Some(rev) => ("rev = :rev".to_owned(), Some(n(rev))),
            None => ("attribute_not_exists(pk)".to_owned(), None),
        };
        let (expression, rev_value) = condition(before.map(|b| b.rev));
        match after {
            Some(core) => {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(Self::core_record(core, before.map_or(1, |b| b.rev + 1))))
                    .condition_expression(expression)
                    .set_expression_attribute_values(rev_value.map(|v| [(":rev".to_owned(), v)].into()))
                    .build()
                    .expect("complete put");
                writes.push(TransactWriteItem::builder().put(put).build());
            }
            None if before.is_some() => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(core_pk(name), CORE)))
                    .condition_expression(expression)
                    .set_expression_attribute_values(rev_value.map(|v| [(":rev".to_owned(), v)].into()))
                    .build()
                    .expect("complete delete");
                writes.push(TransactWriteItem::builder().delete(delete).build());
            }
            None => {}
        }
        let (from, to) = (before.map(|b| Contribution::of(&b.core)), after.map(Contribution::of));
        if from == to {
            return writes;
        }
        let mut deltas = Deltas::new();
        if let Some(c) = &from {
            add_contribution(&mut deltas, c, -1);
        }
        if let Some(c) = &to {
            add_contribution(&mut deltas, c, 1);
        }
        let shard = shard_of(name);
        for ((template, version), d) in deltas {
            if d.iter().all(|v| *v == 0) {
                continue;
            }
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(format!("FLEET#{shard}"), format!("{template}#{version:010}"))))
                .update_expression("SET tpl = :tpl, ver = :ver ADD d :d, r :r, s :s, f :f, p :p")
                .expression_attribute_values(":tpl", s(template))
                .expression_attribute_values(":ver", n(version))
                .expression_attribute_values(":d", n(d[0]))
                .expression_attribute_values(":r", n(d[1]))
                .expression_attribute_values(":s", n(d[2]))
                .expression_attribute_values(":f", n(d[3]))
                .expression_attribute_values(":p", n(d[4]))
                .build()
                .expect("complete update");
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        writes
    }

    pub(crate) fn event_put(&self, event: &Event, now: Timestamp) -> TransactWriteItem {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Milliseconds × 1000 + a random tie-breaker: ordered by time across shards.
        let sequence = (now.as_millis().max(0) as u64) * 1000 + fastrand::u64(0..1000);
        let shard = shard_of(&id);
        let sk = event_sk(sequence, &id);
        let mut item = key(format!("EVENTS#{shard}"), sk.clone());
        item.insert("id".into(), s(id));
        item.insert("seq".into(), n(sequence));
        item.insert("doc".into(), to_doc(event));
        item.insert("time".into(), n(now.as_millis()));
        item.insert("gsi3pk".into(), s(format!("OUTBOX#{shard}")));
        item.insert("gsi3sk".into(), s(sk));
        TransactWriteItem::builder()
            .put(Put::builder().table_name(&self.table).set_item(Some(item)).build().expect("complete put"))
            .build()
    }

    /// Runs `change` against the freshly read core until its transaction commits (or the
    /// change declines by returning `None`).
    async fn change_core<F>(&self, name: &str, mut change: F) -> Result<bool, StoreError>
    where
        F: FnMut(Option<&Revised>) -> Option<(Option<Core>, Vec<TransactWriteItem>)>,
    {
        let mut declined = false;
        retry_tx!(self, {
            let before = self.read_core(name).await?;
            let Some((after, extra)) = change(before.as_ref()) else {
                declined = true;
                return Ok(None);
            };
            let mut writes = self.core_writes(before.as_ref(), after.as_ref());
            writes.extend(extra);
            Ok(Some(writes))
        })?;
        Ok(!declined)
    }

    /// Ends a task item together with a core change and an event; a duplicate (the item
    /// ended already) changes nothing.
    async fn end_item_with_core<F>(
        &self,
        task: &TaskId,
        item: &ThingName,
        outcome: TaskStatus,
        message: Option<&str>,
        event: Option<&Event>,
        mut change: F,
    ) -> Result<(), StoreError>
    where
        F: FnMut(Option<&Revised>, Timestamp) -> Option<Option<Core>>,
    {
        retry_tx!(self, {
            let now = Timestamp::now();
            let Some(mut writes) = self.end_item_writes(task, item, outcome, message, now).await? else {
                return Ok(None);
            };
            let before = self.read_core(item.as_str()).await?;
            if let Some(after) = change(before.as_ref(), now) {
                writes.extend(self.core_writes(before.as_ref(), after.as_ref()));
            }
            if let Some(event) = event {
                writes.push(self.event_put(event, now));
            }
            Ok(Some(writes))
        })
    }

    async fn counters_from_shards(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        let mut counts: BTreeMap<(String, u32), VersionCounts> = BTreeMap::new();
        for shard in 0..SHARDS {
            for item in self.query(Query::partition(None, format!("FLEET#{shard}"))).await? {
                let c = counts.entry((get_s(&item, "tpl")?.to_owned(), get_n(&item, "ver")?)).or_default();
                c.desired_in_use += opt_n::<i64>(&item, "d")?.unwrap_or(0);
                c.reported_in_use += opt_n::<i64>(&item, "r")?.unwrap_or(0);
                c.last_deployment_success += opt_n::<i64>(&item, "s")?.unwrap_or(0);
                c.last_deployment_failed += opt_n::<i64>(&item, "f")?.unwrap_or(0);
                c.last_deployment_in_progress += opt_n::<i64>(&item, "p")?.unwrap_or(0);
            }
        }
        counts.retain(|_, c| !c.is_zero());
        Ok(counts)
    }

    async fn all_cores(&self) -> Result<Vec<Core>, StoreError> {
        self.query(Query::partition(Some("gsi1"), "CORES")).await?.iter().map(doc).collect()
    }

    async fn device_item(&self, name: &ThingName) -> Result<Option<Device>, StoreError> {
        self.get(&format!("DEVICE#{}", name.as_str()), "#DEVICE").await?.as_ref().map(doc).transpose()
    }

    fn device_put(&self, device: &Device) -> TransactWriteItem {
        let mut item = key(format!("DEVICE#{}", device.name.as_str()), "#DEVICE");
        item.insert("doc".into(), to_doc(device));
        item.insert("gsi2pk".into(), s(format!("DEVICES#{}", device.core_name.as_str())));
        item.insert("gsi2sk".into(), s(device.name.as_str()));
        TransactWriteItem::builder()
            .put(Put::builder().table_name(&self.table).set_item(Some(item)).build().expect("complete put"))
            .build()
    }

    fn delete_write(&self, pk: String, sk: &str) -> TransactWriteItem {
        TransactWriteItem::builder()
            .delete(Delete::builder().table_name(&self.table).set_key(Some(key(pk, sk))).build().expect("key"))
            .build()
    }

    fn journal_pk(name: &ThingName) -> String {
        format!("JOURNAL#{}", name.as_str())
    }
}

fn stored_event(item: &Item) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: get_s(item, "id")?.to_owned(),
        sequence: get_n(item, "seq")?,
        event: doc(item)?,
        time: Timestamp::from_millis(get_n(item, "time")?).ok_or_else(|| super::corrupt("event time"))?,
    })
}

#[async_trait]
impl CoreStore for DynamoStore {
    async fn create_task(&self, task: &Task) -> Result<(), StoreError> {
        self.put_task(task).await
    }

    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.task_with_items(id).await
    }

    async fn task_header(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.header(id).await
    }

    async fn list_tasks(
        &self,
        family: TaskFamily,
        page: PageRequest<TaskId>,
    ) -> Result<Page<Task, TaskId>, StoreError> {
        self.tasks_of_family(family, page).await
    }

    async fn start_item(&self, task: &TaskId, name: &ThingName) -> Result<Option<TaskItem<NewCore>>, StoreError> {
        self.start(task, name).await
    }

    async fn fail_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        message: &str,
        event: Option<&Event>,
    ) -> Result<(), StoreError> {
        retry_tx!(self, {
            let now = Timestamp::now();
            let Some(mut writes) = self.end_item_writes(task, name, TaskStatus::Failure, Some(message), now).await?
            else {
                return Ok(None);
            };
            if let Some(event) = event {
                writes.push(self.event_put(event, now));
            }
            Ok(Some(writes))
        })
    }

    async fn complete_core_create(&self, task: &TaskId, core: &Core, event: &Event) -> Result<(), StoreError> {
        self.end_item_with_core(task, &core.name, TaskStatus::Success, None, Some(event), |before, now| {
            // An existing core keeps its template state; its provisioning details are replaced.
            let mut after = before.map_or_else(|| core.clone(), |b| b.core.clone());
            after.provisioning_template = core.provisioning_template.clone();
            after.artifacts = core.artifacts.clone();
            after.updated_at = Some(now);
            Some(Some(after))
        })
        .await
    }

    async fn complete_core_delete(&self, task: &TaskId, name: &ThingName, event: &Event) -> Result<(), StoreError> {
        retry_tx!(self, {
            let now = Timestamp::now();
            let Some(mut writes) = self.end_item_writes(task, name, TaskStatus::Success, None, now).await? else {
                return Ok(None);
            };
            let before = self.read_core(name.as_str()).await?;
            writes.extend(self.core_writes(before.as_ref(), None));
            writes.push(self.delete_write(Self::journal_pk(name), "#JOURNAL"));
            writes.push(self.event_put(event, now));
            Ok(Some(writes))
        })
    }

    async fn complete_device_create(&self, task: &TaskId, device: &Device, event: &Event) -> Result<(), StoreError> {
        retry_tx!(self, {
            let now = Timestamp::now();
            let Some(mut writes) = self.end_item_writes(task, &device.name, TaskStatus::Success, None, now).await?
            else {
                return Ok(None);
            };
            let mut stored = device.clone();
            if let Some(existing) = self.device_item(&device.name).await? {
                stored.created_at = existing.created_at;
            }
            stored.updated_at = Some(now);
            writes.push(self.device_put(&stored));
            writes.push(self.event_put(event, now));
            Ok(Some(writes))
        })
    }

    async fn complete_device_delete(
        &self,
        task: Option<&TaskId>,
        name: &ThingName,
        event: &Event,
    ) -> Result<(), StoreError> {
        retry_tx!(self, {
            let now = Timestamp::now();
            let mut writes = Vec::new();
            if let Some(task) = task {
                match self.end_item_writes(task, name, TaskStatus::Success, None, now).await? {
                    Some(ends) => writes.extend(ends),
                    None => return Ok(None),
                }
            }
            let exists = self.device_item(name).await?.is_some();
            writes.push(self.delete_write(format!("DEVICE#{}", name.as_str()), "#DEVICE"));
            writes.push(self.delete_write(Self::journal_pk(name), "#JOURNAL"));
            // A direct delete of a device that is already gone changes nothing and says nothing.
            if task.is_some() || exists {
                writes.push(self.event_put(event, now));
            }
            Ok(Some(writes))
        })
    }

    async fn device(&self, name: &ThingName) -> Result<Option<Device>, StoreError> {
        self.device_item(name).await
    }

    async fn list_devices_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, StoreError> {
        let mut query = Query::partition(Some("gsi2"), format!("DEVICES#{}", core.as_str()));
        query.after = page.exclusive_start.as_ref().map(|n| n.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let devices = self.query(query).await?.iter().map(doc).collect::<Result<Vec<Device>, _>>()?;
        Ok(Page::from_overfetch(devices, page.limit, |d| d.name.clone()))
    }

    async fn core(&self, name: &ThingName) -> Result<Option<Core>, StoreError> {
        Ok(self.read_core(name.as_str()).await?.map(|r| r.core))
    }

    async fn list_cores(
        &self,
        filter: &CoreFilter,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Core, ThingName>, StoreError> {
        // Failed cores have their own sparse listing, so `failedOnly` never reads the fleet.
        let mut query = match (&filter.template_name, filter.failed_only) {
            (_, true) => Query::partition(Some("gsi3"), "FAILED"),
            (Some(name), false) => Query::partition(Some("gsi2"), format!("CORETPL#{name}")),
            (None, false) => Query::partition(Some("gsi1"), "CORES"),
        };
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let (Some(name), true) = (&filter.template_name, filter.failed_only) {
            conditions.push("gsi2pk = :tpl");
            values.push((":tpl".to_owned(), s(format!("CORETPL#{name}"))));
        }
        if let (Some(_), Some(version)) = (&filter.template_name, filter.template_version) {
            conditions.push("desired_version = :dv");
            values.push((":dv".to_owned(), n(version)));
        }
        if !conditions.is_empty() {
            query.filter = Some((conditions.join(" AND "), values));
        }
        query.after = page.exclusive_start.as_ref().map(|n| n.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let cores = self.query(query).await?.iter().map(doc).collect::<Result<Vec<Core>, _>>()?;
        Ok(Page::from_overfetch(cores, page.limit, |c| c.name.clone()))
    }

    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError> {
        match self.get(&Self::journal_pk(name), "#JOURNAL").await? {
            Some(item) => doc(&item),
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &ProvisioningJournal) -> Result<(), StoreError> {
        let mut item = key(Self::journal_pk(name), "#JOURNAL");
        item.insert("doc".into(), to_doc(journal));
        self.put(item).await
    }

    async fn unexpanded_deployment_tasks(&self, before: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        self.unexpanded(before).await
    }

    async fn unfinished_items(&self, before: Timestamp) -> Result<Vec<(TaskId, ThingName)>, StoreError> {
        self.open_items(before).await
    }

    async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError> {
        let mut events = Vec::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(None, format!("EVENTS#{shard}"));
            query.before = page.exclusive_start.map(|start| format!("{start:020}"));
            query.forward = false;
            query.limit = Some(page.limit as usize + 1);
            for item in self.query(query).await? {
                events.push(stored_event(&item)?);
            }
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.sequence));
        events.truncate(page.limit as usize + 1);
        Ok(Page::from_overfetch(events, page.limit, |e| e.sequence))
    }

    async fn claim_unpublished_events(&self, limit: u32, lease: Duration) -> Result<Vec<StoredEvent>, StoreError> {
        let now = Timestamp::now().as_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut candidates = Vec::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(Some("gsi3"), format!("OUTBOX#{shard}"));
            query.limit = Some(limit as usize);
            candidates.extend(self.query(query).await?);
        }
        candidates.sort_by(|a, b| get_s(a, "sk").unwrap_or_default().cmp(get_s(b, "sk").unwrap_or_default()));
        let mut claimed = Vec::new();
        for item in candidates.into_iter().take(limit as usize) {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(get_s(&item, "pk")?, get_s(&item, "sk")?)))
                .update_expression("SET claimed_until = :until")
                .condition_expression(
                    "attribute_exists(gsi3pk) AND (attribute_not_exists(claimed_until) OR claimed_until <= :now)",
                )
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match result {
                Ok(_) => claimed.push(stored_event(&item)?),
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(store_error(err)),
            }
        }
        Ok(claimed)
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for shard in 0..SHARDS {
            let mut start = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name("gsi3")
                    .key_condition_expression("gsi3pk = :pk")
                    .expression_attribute_values(":pk", s(format!("OUTBOX#{shard}")))
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(store_error)?;
                total += u64::try_from(out.count).unwrap_or(0);
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        Ok(total)
    }

    async fn mark_events_published(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        for event in events {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(format!("EVENTS#{}", shard_of(&event.id)), event_sk(event.sequence, &event.id))))
                .update_expression("SET published_at = :now REMOVE gsi3pk, gsi3sk")
                .expression_attribute_values(":now", n(Timestamp::now().as_millis()))
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError> {
        self.items_of_task(task, page).await
    }

    async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError> {
        self.deployments_of_core(core, page).await
    }

    async fn expand_deployment_task(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        batch_size: u32,
        event: &Event,
    ) -> Result<bool, StoreError> {
        self.expand(task, cores, batch_size, event).await
    }

    async fn fail_deployment_task(&self, task: &TaskId, message: &str) -> Result<(), StoreError> {
        self.fail_unexpanded(task, message).await
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
        let mut by_id = key(format!("DEP#{deployment_id}"), "#DEP");
        by_id.insert("doc".into(), to_doc(template));
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
            TransactWriteItem::builder()
                .put(Put::builder().table_name(&self.table).set_item(Some(by_id)).build().expect("complete put"))
                .build(),
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
    ) -> Result<(), StoreError> {
        self.end_item_with_core(task, core, TaskStatus::Success, None, None, |before, now| {
            let before = before?;
            let mut after = before.core.clone();
            after.desired = template.clone();
            after.desired_deployment_id = Some(deployment_id.to_owned());
            after.deployment_status = IN_PROGRESS.to_owned();
            after.deployment_status_message = None;
            after.status_at = Some(now);
            after.updated_at = Some(now);
            Some(Some(after))
        })
        .await
    }

    async fn fail_deployment_item(&self, task: &TaskId, core: &ThingName, message: &str) -> Result<(), StoreError> {
        self.end_item_with_core(task, core, TaskStatus::Failure, Some(message), None, |before, now| {
            let before = before?;
            let mut after = before.core.clone();
            after.deployment_status = "Failure".to_owned();
            after.deployment_status_message = Some(message.to_owned());
            after.status_at = Some(now);
            after.updated_at = Some(now);
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
        let now = Timestamp::now();
        let event_write = self.event_put(event, now);
        self.change_core(&outcome.core_name, |before| {
            let before = before?;
            if before.core.status_at.is_some_and(|at| outcome.time < at) {
                return None; // older than what is recorded
            }
            let is_desired = before.core.desired_deployment_id.as_deref() == Some(outcome.deployment_id.as_str());
            let mut after = before.core.clone();
            match (is_desired, outcome.succeeded) {
                (true, true) => {
                    after.reported = template.clone();
                    after.deployment_status = SUCCESSFUL.to_owned();
                    after.deployment_status_message = None;
                    after.status_at = Some(outcome.time);
                }
                (true, false) => {
                    after.deployment_status = outcome.detailed_status.clone();
                    after.deployment_status_message = outcome.reason.clone();
                    after.status_at = Some(outcome.time);
                }
                // An older deployment finished: the core runs that version now.
                (false, true) => after.reported = template.clone(),
                (false, false) => return None,
            }
            after.updated_at = Some(outcome.time);
            Some((Some(after), vec![event_write.clone()]))
        })
        .await
    }

    async fn cores_in_progress(&self) -> Result<Vec<Core>, StoreError> {
        self.query(Query::partition(Some("gsi3"), "INPROGRESS")).await?.iter().map(doc).collect()
    }

    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        self.counters_from_shards().await
    }

    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError> {
        let mut deltas = Deltas::new();
        for core in self.all_cores().await? {
            add_contribution(&mut deltas, &Contribution::of(&core), 1);
        }
        Ok(deltas
            .into_iter()
            .map(|(k, d)| {
                let counts = VersionCounts {
                    desired_in_use: d[0],
                    reported_in_use: d[1],
                    last_deployment_success: d[2],
                    last_deployment_failed: d[3],
                    last_deployment_in_progress: d[4],
                };
                (k, counts)
            })
            .filter(|(_, c)| !c.is_zero())
            .collect())
    }

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
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(store_error(err)),
        }
    }
}
