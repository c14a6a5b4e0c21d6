//! Tasks and their items. A task is a header item (`TASK#<id>` / `#TASK`) and one item per
//! thing (`I#<name>`) in the same partition. The header keeps counts of its items by status,
//! moved in the same transaction as each item, so a task's status is one read. Open items are
//! in the sharded sparse index `gsi3` = `OPEN#<shard>` for the sweeper; deployment items are
//! in `gsi2` = `COREDEP#<core>` for a core's deployment history.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use ggprov_domain::cores::Event;
use ggprov_domain::cores::{
    CoreTaskOptions, DeploymentSpec, NewCore, Task, TaskFamily, TaskItem, TaskKind, TemplateRef,
};
use ggprov_domain::ports::{StartedItem, StoreError, TaskStore};
use ggprov_domain::{ItemCounts, Page, PageRequest, TaskId, TaskStatus, TaskType, ThingName, Timestamp};
use serde::{Deserialize, Serialize};

use super::{DynamoStore, Item, Query, SHARDS, corrupt, doc, get_s, key, n, opt_n, opt_s, s, shard_of, to_doc};

pub(crate) const HEADER: &str = "#TASK";

pub(crate) fn task_pk(id: &TaskId) -> String {
    format!("TASK#{}", id.as_str())
}

pub(crate) fn item_sk(name: &ThingName) -> String {
    format!("I#{}", name.as_str())
}

/// What never changes about a task.
#[derive(Serialize, Deserialize)]
struct TaskDoc {
    id: TaskId,
    family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    core_name: Option<ThingName>,
    task_type: TaskType,
    core_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<CoreTaskOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<TemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    targets: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iot_job_config: Option<serde_json::Value>,
    created_at: Timestamp,
}

pub(crate) fn family_of(text: &str) -> Result<TaskFamily, StoreError> {
    match text {
        "core" => Ok(TaskFamily::Core),
        "device" => Ok(TaskFamily::Device),
        "deployment" => Ok(TaskFamily::Deployment),
        "rotation" => Ok(TaskFamily::Rotation),
        other => Err(corrupt(format!("task family {other}"))),
    }
}

/// The sort key of an open item in `gsi3`: oldest first.
fn open_sk(task: &TaskId, name: &ThingName, at: Timestamp) -> String {
    format!("{:013}#{}#{}", at.as_millis(), task.as_str(), name.as_str())
}

/// The attributes of an item that only rollouts write, kept when the item is written again.
const CARRIED: [&str; 3] = ["wave", "report", "previous"];

fn carry(raw: &Item, record: &mut Item) {
    for name in CARRIED {
        if let Some(value) = raw.get(name) {
            record.insert(name.to_owned(), value.clone());
        }
    }
}

/// The full item of a task item, with the index attributes its family and status call for.
pub(crate) fn item_record(task: &TaskId, family: TaskFamily, item: &TaskItem<NewCore>) -> Item {
    let mut record = key(task_pk(task), item_sk(&item.name));
    record.insert("doc".into(), to_doc(item));
    record.insert("status".into(), s(item.status.as_str()));
    record.insert("family".into(), s(family.as_str()));
    if family == TaskFamily::Deployment {
        record.insert("gsi2pk".into(), s(format!("COREDEP#{}", item.name.as_str())));
        record.insert("gsi2sk".into(), s(task.as_str()));
    }
    if !item.status.is_terminal() {
        let shard = shard_of(&format!("{}#{}", task.as_str(), item.name.as_str()));
        record.insert("gsi3pk".into(), s(format!("OPEN#{shard}")));
        record.insert("gsi3sk".into(), s(open_sk(task, &item.name, item.updated_at.unwrap_or(item.created_at))));
    }
    record
}

fn task_from_header(item: &Item) -> Result<Task, StoreError> {
    let d: TaskDoc = doc(item)?;
    let family = family_of(&d.family)?;
    let expanded = matches!(item.get("expanded"), Some(super::Av::Bool(true)));
    let kind = match family {
        TaskFamily::Core => TaskKind::Core,
        TaskFamily::Device => {
            TaskKind::Device { core_name: d.core_name.clone().ok_or_else(|| corrupt("device task without core"))? }
        }
        TaskFamily::Deployment => TaskKind::Deployment(DeploymentSpec {
            template: d.template.clone().ok_or_else(|| corrupt("deployment task without template"))?,
            targets: d.targets.clone().unwrap_or_default(),
            iot_job_config: d.iot_job_config.clone(),
            expanded,
            batches_total: opt_n(item, "batches_total")?,
            batch_size: opt_n(item, "batch_size")?,
            rollout: opt_s(item, "rollout").map(serde_json::from_str).transpose().map_err(corrupt)?,
            revision: opt_s(item, "revision").map(str::to_owned),
        }),
        TaskFamily::Rotation => {
            let mut spec: ggprov_domain::rotation::RotationSpec =
                serde_json::from_value(d.targets.clone().ok_or_else(|| corrupt("rotation task without its spec"))?)
                    .map_err(corrupt)?;
            spec.rollout = opt_s(item, "rollout").map(serde_json::from_str).transpose().map_err(corrupt)?;
            TaskKind::Rotation(spec)
        }
    };
    let count = |name: &str| -> Result<i64, StoreError> { Ok(opt_n(item, name)?.unwrap_or(0)) };
    let counts = ItemCounts {
        total: count("n_total")?,
        waiting: count("n_waiting")?,
        success: count("n_success")?,
        failure: count("n_failure")?,
    };
    let status_message = opt_s(item, "status_message").map(str::to_owned);
    let status = Task::derive_status(&kind, &counts, status_message.as_deref());
    Ok(Task {
        id: d.id,
        kind,
        task_type: d.task_type,
        core_version: d.core_version,
        options: d.options,
        items: Vec::new(),
        status,
        status_message,
        created_at: d.created_at,
        updated_at: opt_n::<i64>(item, "updated")?.and_then(Timestamp::from_millis),
    })
}

impl DynamoStore {
    pub(crate) fn header_update(&self, task: &TaskId, counts: ItemCounts, now: Timestamp) -> TransactWriteItem {
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(task_pk(task), HEADER)))
                    .update_expression("ADD n_total :t, n_waiting :w, n_success :s, n_failure :f SET updated = :now")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":t", n(counts.total))
                    .expression_attribute_values(":w", n(counts.waiting))
                    .expression_attribute_values(":s", n(counts.success))
                    .expression_attribute_values(":f", n(counts.failure))
                    .expression_attribute_values(":now", n(now.as_millis()))
                    .build()
                    .expect("complete update"),
            )
            .build()
    }

    /// Writes an item, on condition that its status is still `prior`; its rollout attributes
    /// (wave, report, previous template) are carried over from `raw`, the item as read.
    pub(crate) fn item_put(
        &self,
        task: &TaskId,
        family: TaskFamily,
        item: &TaskItem<NewCore>,
        prior: TaskStatus,
        raw: &Item,
    ) -> TransactWriteItem {
        let mut record = item_record(task, family, item);
        carry(raw, &mut record);
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(record))
                    .condition_expression("#status = :prior")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":prior", s(prior.as_str()))
                    .build()
                    .expect("complete put"),
            )
            .build()
    }

    pub(crate) async fn read_item(
        &self,
        task: &TaskId,
        name: &ThingName,
    ) -> Result<Option<(TaskFamily, TaskItem<NewCore>)>, StoreError> {
        Ok(self.read_item_raw(task, name).await?.map(|(family, item, _)| (family, item)))
    }

    async fn read_item_raw(
        &self,
        task: &TaskId,
        name: &ThingName,
    ) -> Result<Option<(TaskFamily, TaskItem<NewCore>, Item)>, StoreError> {
        let Some(raw) = self.get(&task_pk(task), &item_sk(name)).await? else { return Ok(None) };
        Ok(Some((family_of(get_s(&raw, "family")?)?, doc(&raw)?, raw)))
    }

    /// The writes that end an open item (and move its task's counts); `None` when the item
    /// has ended already or does not exist (a duplicate delivery).
    pub(crate) async fn end_item_writes(
        &self,
        task: &TaskId,
        name: &ThingName,
        outcome: TaskStatus,
        message: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Vec<TransactWriteItem>>, StoreError> {
        self.end_item_writes_with(task, name, outcome, message, now, None).await
    }

    /// The same; a deployment item that succeeds keeps `previous`, the template its core
    /// desired before it moved.
    pub(crate) async fn end_item_writes_with(
        &self,
        task: &TaskId,
        name: &ThingName,
        outcome: TaskStatus,
        message: Option<&str>,
        now: Timestamp,
        previous: Option<&TemplateRef>,
    ) -> Result<Option<Vec<TransactWriteItem>>, StoreError> {
        let Some((family, mut item, mut raw)) = self.read_item_raw(task, name).await? else { return Ok(None) };
        if let Some(previous) = previous.filter(|_| family == TaskFamily::Deployment && outcome == TaskStatus::Success)
        {
            raw.insert("previous".into(), to_doc(previous));
        }
        if item.status.is_terminal() {
            return Ok(None);
        }
        let prior = item.status;
        item.status = outcome;
        item.status_message = message.map(str::to_owned);
        item.updated_at = Some(now);
        let counts = ItemCounts::transition(prior, outcome);
        let mut writes = vec![self.item_put(task, family, &item, prior, &raw), self.header_update(task, counts, now)];
        if family != TaskFamily::Deployment {
            writes.extend(self.claim_release_write(task, name).await?);
        }
        Ok(Some(writes))
    }

    pub(crate) fn header_record(&self, task: &Task) -> Item {
        let (core_name, spec) = match &task.kind {
            TaskKind::Core | TaskKind::Rotation(_) => (None, None),
            TaskKind::Device { core_name } => (Some(core_name.clone()), None),
            TaskKind::Deployment(spec) => (None, Some(spec)),
        };
        let d = TaskDoc {
            id: task.id.clone(),
            family: task.kind.family().as_str().to_owned(),
            core_name,
            task_type: task.task_type,
            core_version: task.core_version.clone(),
            options: task.options.clone(),
            template: spec.map(|s| s.template.clone()),
            targets: match &task.kind {
                TaskKind::Rotation(rotation) => Some(serde_json::to_value(rotation).expect("specs serialise")),
                _ => spec.map(|s| s.targets.clone()),
            },
            iot_job_config: spec.and_then(|s| s.iot_job_config.clone()),
            created_at: task.created_at,
        };
        let mut record = key(task_pk(&task.id), HEADER);
        record.insert("doc".into(), to_doc(&d));
        record.insert("gsi1pk".into(), s(format!("TASKS#{}", task.kind.family().as_str())));
        record.insert("gsi1sk".into(), s(task.id.as_str()));
        let total = task.items.len() as i64;
        record.insert("n_total".into(), n(total));
        record.insert("n_waiting".into(), n(total));
        record.insert("n_success".into(), n(0));
        record.insert("n_failure".into(), n(0));
        if let TaskKind::Rotation(rotation) = &task.kind
            && let Some(rollout) = &rotation.rollout
        {
            // A rotation's rollout runs from the start: its items are known.
            record.insert("rollout".into(), to_doc(rollout));
            record.insert("rollout_rev".into(), n(rollout.rev));
            if rollout.is_active() {
                record.insert("gsi3pk".into(), s("ROLLOUT"));
                record.insert("gsi3sk".into(), s(task.id.as_str()));
            }
        }
        if let Some(spec) = spec {
            record.insert("expanded".into(), super::Av::Bool(spec.expanded));
            if let Some(rollout) = &spec.rollout {
                record.insert("rollout".into(), to_doc(rollout));
                record.insert("rollout_rev".into(), n(rollout.rev));
            }
            if !spec.expanded {
                record.insert("gsi3pk".into(), s("UNEXPANDED"));
                record.insert("gsi3sk".into(), s(format!("{:013}#{}", task.created_at.as_millis(), task.id.as_str())));
            }
        }
        record
    }
}

impl DynamoStore {
    /// The task's items, then its header (the header makes it visible).
    async fn write_task(&self, task: &Task) -> Result<(), StoreError> {
        let family = task.kind.family();
        let waves = task.item_waves();
        let items = task
            .items
            .iter()
            .map(|i| {
                let mut record = item_record(&task.id, family, i);
                if let Some(wave) = waves.as_ref().and_then(|w| w.get(&i.name)) {
                    record.insert("wave".into(), n(*wave));
                }
                record
            })
            .collect();
        self.put_all(items).await?;
        // The header with the events its storing makes true, in one write.
        let mut writes = vec![self.put(self.header_record(task), Some("attribute_not_exists(pk)"))];
        writes.extend(task.creation_events().iter().map(|event| self.event_put(event, task.created_at)));
        match self.transact(writes).await {
            Ok(()) => Ok(()),
            Err(super::TxError::Cancelled(reasons))
                if reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") =>
            {
                Err(StoreError::AlreadyExists)
            }
            Err(super::TxError::Cancelled(_)) => Err(StoreError::Conflict),
            Err(super::TxError::Store(err)) => Err(err),
        }
    }
}

#[async_trait]
impl TaskStore for DynamoStore {
    async fn create_task(&self, task: &Task) -> Result<(), StoreError> {
        // Claims first (refused: nothing is written), then items, the header last: until the
        // header exists the task is not visible, and the sweeper skips items whose task has no
        // header.
        self.claim_things(task).await?;
        let written = self.write_task(task).await;
        if matches!(written, Err(StoreError::Unavailable(_) | StoreError::TooLarge(_))) {
            // The task was not stored: its claims must not hold its names for the next try.
            if let Err(err) = self.release_claims(task).await {
                tracing::warn!(task.id = %task.id, error = %err, "claims of an unstored task stay until they go stale");
            }
        }
        written
    }

    async fn task_header(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.get(&task_pk(id), HEADER).await?.as_ref().map(task_from_header).transpose()
    }

    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let Some(mut task) = self.task_header(id).await? else { return Ok(None) };
        let mut query = Query::partition(None, task_pk(id));
        query.prefix = Some("I#".to_owned());
        task.items = self.query(query).await?.iter().map(doc).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(task))
    }

    async fn list_tasks(
        &self,
        family: TaskFamily,
        page: PageRequest<TaskId>,
    ) -> Result<Page<Task, TaskId>, StoreError> {
        let mut query = Query::partition(Some("gsi1"), format!("TASKS#{}", family.as_str()));
        query.after = page.exclusive_start.as_ref().map(|id| id.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let tasks = self.query(query).await?.iter().map(task_from_header).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(tasks, page.limit, |t| t.id.clone()))
    }

    async fn task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError> {
        let mut query = Query::partition(None, task_pk(task));
        query.prefix = Some("I#".to_owned());
        query.after = page.exclusive_start.as_ref().map(item_sk);
        query.limit = Some(page.limit as usize + 1);
        let items = self.query(query).await?.iter().map(doc).collect::<Result<Vec<TaskItem<NewCore>>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |i| i.name.clone()))
    }

    async fn start_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<Option<StartedItem>, StoreError> {
        for _ in 0..super::MAX_TRIES {
            let Some(raw) = self.get(&task_pk(task), &item_sk(name)).await? else { return Ok(None) };
            let family = family_of(get_s(&raw, "family")?)?;
            let item: TaskItem<NewCore> = doc(&raw)?;
            let now = Timestamp::now();
            let held_by = opt_s(&raw, "holder").map(str::to_owned);
            let lease_until: Option<i64> = opt_n(&raw, "lease_until")?;
            let held_by_other = item.status == TaskStatus::InProgress
                && held_by.as_deref().is_some_and(|h| h != holder)
                && lease_until.is_some_and(|until| until > now.as_millis());
            if item.status.is_terminal() || held_by_other {
                return Ok(Some(StartedItem { item, won: false }));
            }
            let mut started = item.clone();
            started.status = TaskStatus::InProgress;
            started.updated_at = Some(now);
            let mut record = item_record(task, family, &started);
            carry(&raw, &mut record);
            record.insert("holder".into(), s(holder));
            let until = now.as_millis().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            record.insert("lease_until".into(), n(until));
            // Conditioned on the item as read: same status, same holder.
            let mut put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(record))
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":prior", s(item.status.as_str()));
            put = match &held_by {
                Some(old) => put
                    .condition_expression("#status = :prior AND holder = :old")
                    .expression_attribute_values(":old", s(old.as_str())),
                None => put.condition_expression("#status = :prior AND attribute_not_exists(holder)"),
            };
            let mut writes = vec![TransactWriteItem::builder().put(put.build().expect("complete put")).build()];
            if item.status == TaskStatus::Waiting {
                writes.push(self.header_update(
                    task,
                    ItemCounts::transition(TaskStatus::Waiting, TaskStatus::InProgress),
                    now,
                ));
            }
            match self.transact(writes).await {
                Ok(()) => return Ok(Some(StartedItem { item: started, won: true })),
                Err(super::TxError::Cancelled(_)) => continue,
                Err(super::TxError::Store(err)) => return Err(err),
            }
        }
        Err(StoreError::Conflict)
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

    async fn open_claim(&self, name: &ThingName) -> Result<Option<TaskId>, StoreError> {
        self.open_claim_of(name).await
    }

    async fn take_stale_items(
        &self,
        before: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<(TaskId, ThingName)>, StoreError> {
        let mut candidates = Vec::new();
        let mut waves_of_candidates = std::collections::BTreeMap::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(Some("gsi3"), format!("OPEN#{shard}"));
            query.before = Some(format!("{:013}", before.as_millis()));
            for item in self.query(query).await? {
                // Held by a live lease: a job is on it.
                let held = get_s(&item, "status")? == TaskStatus::InProgress.as_str()
                    && opt_n::<i64>(&item, "lease_until")?.is_some_and(|until| until > now.as_millis());
                if held {
                    continue;
                }
                let name = ThingName::parse(&get_s(&item, "sk")?[2..]).map_err(|_| corrupt("item name"))?;
                let task = TaskId::from_text(get_s(&item, "pk")?.trim_start_matches("TASK#"));
                if let Some(wave) = opt_n::<u32>(&item, "wave")? {
                    waves_of_candidates.insert((task.clone(), name.clone()), wave);
                }
                candidates.push((task, name, get_s(&item, "gsi3sk")?.to_owned()));
            }
        }
        // Items of a task whose header was never written (an interrupted submission) are not work.
        let mut tasks: Vec<TaskId> = candidates.iter().map(|(t, _, _)| t.clone()).collect();
        tasks.sort();
        tasks.dedup();
        // Items of a rollout that may not move now (a later wave, a paused or ended rollout)
        // are not lost work either.
        let mut missing = Vec::new();
        let mut gates = std::collections::BTreeMap::new();
        for task in tasks {
            match self.get(&task_pk(&task), HEADER).await? {
                None => missing.push(task),
                Some(header) => {
                    if let Some(state) = task_from_header(&header)?.rollout() {
                        gates.insert(task, state.clone());
                    }
                }
            }
        }
        let waves: std::collections::BTreeMap<(TaskId, ThingName), u32> = waves_of_candidates;
        let mut taken = Vec::new();
        for (task, name, old_sk) in candidates.into_iter().filter(|(t, n, _)| {
            !missing.contains(t)
                && gates
                    .get(t)
                    .is_none_or(|state| state.may_move(waves.get(&(t.clone(), n.clone())).copied().unwrap_or(0)))
        }) {
            // Moving the item forward in the open index marks it re-queued, once.
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(task_pk(&task), item_sk(&name))))
                .update_expression("SET gsi3sk = :new")
                .condition_expression("gsi3sk = :old")
                .expression_attribute_values(":new", s(open_sk(&task, &name, now)))
                .expression_attribute_values(":old", s(old_sk))
                .send()
                .await;
            match result {
                Ok(_) => taken.push((task, name)),
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(super::store_error(err)),
            }
        }
        taken.sort();
        Ok(taken)
    }
}
