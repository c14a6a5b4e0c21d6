//! `CoreRecords` on DynamoDB. A core is `CORE#<name>` / `#CORE` with a revision `rev`; every
//! change is a read, then the domain's transition on what was read, then a transaction
//! conditioned on that revision which also moves the fleet counters by the domain's
//! `FleetDelta` and writes the outbox event. The core's deployment class (from the domain's
//! classification) places it in the sparse `gsi3` listings `INPROGRESS` or `FAILED`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use ggprov_domain::certificates::ThingKind;
use ggprov_domain::cores::{Core, DeploymentState, Event};
use ggprov_domain::deployment_state::FleetDelta;
use ggprov_domain::ports::{CoreDevice, CoreFilter, CoreRecords, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::software::SoftwareDelta;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};

use super::journals::journal_pk;
use super::{DynamoStore, Item, Query, doc, get_n, key, n, s, to_doc};

pub(crate) const CORE: &str = "#CORE";

pub(crate) fn core_pk(name: &str) -> String {
    format!("CORE#{name}")
}

/// How [`DynamoStore::end_item_with_core`] ends an item: its outcome, and what is written with
/// it — an event, and a fence (a conditional write that must hold, or the store reports a
/// conflict).
pub(crate) struct ItemEnd<'a> {
    pub(crate) outcome: TaskStatus,
    pub(crate) message: Option<&'a str>,
    pub(crate) event: Option<&'a Event>,
    pub(crate) fence: Option<TransactWriteItem>,
}

impl<'a> ItemEnd<'a> {
    pub(crate) fn success() -> Self {
        Self { outcome: TaskStatus::Success, message: None, event: None, fence: None }
    }

    pub(crate) fn failure(message: &'a str) -> Self {
        Self { outcome: TaskStatus::Failure, message: Some(message), event: None, fence: None }
    }
}

/// A stored core with the revision it was read at.
pub(crate) struct Revised {
    pub(crate) core: Core,
    rev: u64,
}

impl DynamoStore {
    pub(crate) async fn read_core(&self, name: &str) -> Result<Option<Revised>, StoreError> {
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
        // The software fields `GET /cores` filters on.
        for (name, value) in
            [("nv", &core.software.nucleus_version), ("os", &core.software.os), ("arch", &core.software.architecture)]
        {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        // A core is in at most one of these sparse listings: deployment running, or failed.
        match core.deployment_status.state() {
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
    pub(crate) fn core_writes(&self, before: Option<&Revised>, after: Option<&Core>) -> Vec<TransactWriteItem> {
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
        let before_core = before.map(|b| &b.core);
        if let Some(thing) = before_core.or(after).map(|c| &c.name) {
            writes.extend(self.certificate_writes(
                ThingKind::Core,
                thing,
                before_core.and_then(|c| c.certificate.as_ref()),
                after.and_then(|c| c.certificate.as_ref()),
            ));
        }
        writes.extend(self.fleet_writes(name, &FleetDelta::between(before_core, after)));
        writes.extend(self.software_writes(name, &SoftwareDelta::between(before_core, after)));
        if let Some(event) = Core::software_event(before_core, after) {
            writes.push(self.event_put(&event, Timestamp::now()));
        }
        writes
    }

    /// Runs `change` against the freshly read core until its transaction commits (or the
    /// change declines by returning `None`).
    pub(crate) async fn change_core<F>(&self, name: &str, mut change: F) -> Result<bool, StoreError>
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

    /// Ends a task item together with a core change and what `end` adds; a duplicate (the item
    /// ended already) changes nothing.
    pub(crate) async fn end_item_with_core<F>(
        &self,
        task: &TaskId,
        item: &ThingName,
        end: ItemEnd<'_>,
        mut change: F,
    ) -> Result<(), StoreError>
    where
        F: FnMut(Option<&Revised>, Timestamp) -> Option<Option<Core>>,
    {
        let ItemEnd { outcome, message, event, fence } = end;
        retry_tx!(self, fence.is_some(), {
            let now = Timestamp::now();
            let before = self.read_core(item.as_str()).await?;
            let previous = before.as_ref().map(|b| &b.core.desired);
            let Some(mut writes) = self.end_item_writes_with(task, item, outcome, message, now, previous).await? else {
                return Ok(None);
            };
            if let Some(fence) = &fence {
                writes.insert(0, fence.clone());
            }
            if let Some(after) = change(before.as_ref(), now) {
                writes.extend(self.core_writes(before.as_ref(), after.as_ref()));
            }
            if let Some(event) = event {
                writes.push(self.event_put(event, now));
            }
            Ok(Some(writes))
        })
    }

    pub(crate) fn delete_write(&self, pk: String, sk: &str) -> TransactWriteItem {
        TransactWriteItem::builder()
            .delete(Delete::builder().table_name(&self.table).set_key(Some(key(pk, sk))).build().expect("key"))
            .build()
    }
}

#[async_trait]
impl CoreRecords for DynamoStore {
    async fn existing_cores(&self, names: &[ThingName]) -> Result<std::collections::BTreeSet<ThingName>, StoreError> {
        let keys = names.iter().map(|n| key(core_pk(n.as_str()), CORE)).collect();
        self.existing_keys(keys)
            .await?
            .iter()
            .map(|item| {
                let pk = super::get_s(item, "pk")?;
                ThingName::parse(pk.trim_start_matches("CORE#")).map_err(|_| super::corrupt("core name"))
            })
            .collect()
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
            conditions.push("gsi2pk = :tpl".to_owned());
            values.push((":tpl".to_owned(), s(format!("CORETPL#{name}"))));
        }
        if let (Some(_), Some(version)) = (&filter.template_name, filter.template_version) {
            conditions.push("desired_version = :dv".to_owned());
            values.push((":dv".to_owned(), n(version)));
        }
        for (attribute, value) in [("nv", &filter.nucleus_version), ("os", &filter.os), ("arch", &filter.architecture)]
        {
            match value.as_deref() {
                Some(ggprov_domain::software::UNKNOWN) => conditions.push(format!("attribute_not_exists({attribute})")),
                Some(value) => {
                    conditions.push(format!("{attribute} = :{attribute}"));
                    values.push((format!(":{attribute}"), s(value)));
                }
                None => {}
            }
        }
        if !conditions.is_empty() {
            query.filter = Some((conditions.join(" AND "), values));
        }
        query.after = page.exclusive_start.as_ref().map(|n| n.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let cores = self.query(query).await?.iter().map(doc).collect::<Result<Vec<Core>, _>>()?;
        Ok(Page::from_overfetch(cores, page.limit, |c| c.name.clone()))
    }

    async fn cores_in_progress(&self) -> Result<Vec<Core>, StoreError> {
        self.query(Query::partition(Some("gsi3"), "INPROGRESS")).await?.iter().map(doc).collect()
    }

    async fn complete_core_create(
        &self,
        task: &TaskId,
        core: &Core,
        event: &Event,
        journal: Option<&ProvisioningJournal>,
    ) -> Result<(), StoreError> {
        let fence = journal.map(|j| self.journal_write(&core.name, j));
        let end = ItemEnd { event: Some(event), fence, ..ItemEnd::success() };
        self.end_item_with_core(task, &core.name, end, |before, now| {
            Some(Some(Core::reprovisioned(before.map(|b| &b.core), core, now)))
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
            writes.push(self.delete_write(journal_pk(name), "#JOURNAL"));
            writes.push(self.event_put(event, now));
            Ok(Some(writes))
        })
    }

    async fn observe_core(&self, name: &ThingName, device: &CoreDevice) -> Result<bool, StoreError> {
        self.change_core(name.as_str(), |before| {
            let mut after = before?.core.clone();
            after.observe(device, Timestamp::now());
            Some((Some(after), Vec::new()))
        })
        .await
    }
}
