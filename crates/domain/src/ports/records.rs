//! The store, split by capability. Each trait is one thing a caller needs: tasks and their
//! items, core records, client-device records, provisioning journals, the event outbox,
//! deployment records, fleet counters and ingestion cursors. Adapters implement each (in a file
//! of their own); [`CoreStore`] is every one of them, for wiring a whole backend at once.
//!
//! State rules are not here: the domain decides (task status in [`crate::task::ItemCounts`], a
//! core's deployment transitions and fleet contribution in [`crate::deployment_state`]); the
//! store persists the result atomically (conditional writes, counters in the same transaction).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;

use super::{CoreDevice, DeploymentOutcome, IdempotencyRecords, StoreError};
use crate::certificates::{CaCounts, CertificateEntry, CertificateState, ExpiryKey};
use crate::cores::{Core, Device, Event, NewCore, StoredEvent, Task, TaskFamily, TaskItem, TemplateRef, VersionCounts};
use crate::pagination::{Page, PageRequest};
use crate::provisioning::ProvisioningJournal;
use crate::rollout::{ItemReport, RolloutItem, RolloutState};
use crate::software::{Nucleus, SoftwareCounts, SoftwareKey};
use crate::software_update::SoftwareUpdateTask;
use crate::task::TaskId;
use crate::thing::ThingName;
use crate::time::Timestamp;

/// Which cores to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreFilter {
    pub template_name: Option<String>,
    pub template_version: Option<u32>,
    pub failed_only: bool,
    /// The nucleus version the core runs (exact; [`crate::software::UNKNOWN`]: not known yet).
    pub nucleus_version: Option<String>,
    /// Greengrass's platform of the core (`linux`, `windows`; `unknown` as above).
    pub os: Option<String>,
    pub architecture: Option<String>,
}

/// An item as `start_item` left it, and whether this caller holds it now.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedItem {
    pub item: TaskItem<NewCore>,
    pub won: bool,
}

/// Tasks of every family and their items.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task with its items (all `Waiting`). The items of a core or device task
    /// claim their things, atomically with the task: `Claimed` when a thing already has an open
    /// item (of any task), `OtherKind` when a `Create` names a thing of the other kind; then
    /// nothing is stored. A claim is released when its item ends.
    async fn create_task(&self, task: &Task) -> Result<(), StoreError>;
    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// The task with its derived status but without its items (what a worker needs per batch).
    async fn task_header(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// Tasks of one family by id, without their items.
    async fn list_tasks(&self, family: TaskFamily, page: PageRequest<TaskId>)
    -> Result<Page<Task, TaskId>, StoreError>;
    /// Items of a task by name.
    async fn task_items(
        &self,
        task: &TaskId,
        page: PageRequest<ThingName>,
    ) -> Result<Page<TaskItem<NewCore>, ThingName>, StoreError>;
    /// Claims an item for `holder` (a queue message, the same across its redeliveries) for
    /// `lease`: a `Waiting` item, or an `InProgress` one that is this holder's or whose lease
    /// has run out, becomes `InProgress` held by it and `won` is true. An item held by another
    /// live lease, or ended, is returned with `won` false: this caller must not work on it.
    /// `None` when the task has no such item.
    async fn start_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<StartedItem>, StoreError>;
    /// Ends an item with `Failure`, writing its event (if any) in the same transaction.
    async fn fail_item(
        &self,
        task: &TaskId,
        name: &ThingName,
        message: &str,
        event: Option<&Event>,
    ) -> Result<(), StoreError>;
    /// The task whose open item owns the thing now, if any.
    async fn open_claim(&self, name: &ThingName) -> Result<Option<TaskId>, StoreError>;
    /// For the sweeper: items not ended, unchanged and not re-queued since `before`, that no
    /// live lease holds at `now`, of tasks that exist. Each is marked re-queued at `now` (so two
    /// sweepers do not both take it, and it comes back at most once per period).
    async fn take_stale_items(&self, before: Timestamp, now: Timestamp)
    -> Result<Vec<(TaskId, ThingName)>, StoreError>;
}

/// The cores ggprov provisioned.
#[async_trait]
pub trait CoreRecords: Send + Sync {
    /// The state of the records now (see [`super::DataState`]); `None`: cannot tell.
    fn data_state(&self) -> Option<super::DataState> {
        None
    }
    async fn core(&self, name: &ThingName) -> Result<Option<Core>, StoreError>;
    async fn list_cores(
        &self,
        filter: &CoreFilter,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Core, ThingName>, StoreError>;
    /// Cores whose deployment is in progress (for the reconciler).
    async fn cores_in_progress(&self) -> Result<Vec<Core>, StoreError>;
    /// Which of `names` are cores (batched reads, for validating large tasks).
    async fn existing_cores(&self, names: &[ThingName]) -> Result<BTreeSet<ThingName>, StoreError>;
    /// Ends a `Create` item: stores [`Core::reprovisioned`] of the stored core, marks the item
    /// `Success` and writes the event, in one transaction. With a `journal`, that transaction
    /// also saves it as [`ProvisioningJournals::save_journal`] would, on the same condition:
    /// `Conflict`, and nothing written, when another writer saved the journal in between. (An
    /// item that has already ended is left as it is, and its journal with it.)
    async fn complete_core_create(
        &self,
        task: &TaskId,
        core: &Core,
        event: &Event,
        journal: Option<&ProvisioningJournal>,
    ) -> Result<(), StoreError>;
    /// Ends a `Delete` item: removes the core and its journal, marks the item `Success`
    /// and writes the event, in one transaction.
    async fn complete_core_delete(&self, task: &TaskId, name: &ThingName, event: &Event) -> Result<(), StoreError>;
    /// Applies [`Core::observe`] (what Greengrass says of the core), counters and the
    /// software event in the same transaction; `false` when the core is not ggprov's.
    async fn observe_core(&self, name: &ThingName, device: &CoreDevice) -> Result<bool, StoreError>;
}

/// Software update tasks (`POST /softwareUpdateTasks`): one document each, written
/// conditionally on its revision, findable by its client token.
#[async_trait]
pub trait SoftwareUpdateRecords: Send + Sync {
    /// Stores a new task; `AlreadyExists` when its id or its client token is taken.
    async fn create_software_update(&self, task: &SoftwareUpdateTask) -> Result<(), StoreError>;
    /// Saves `task` on condition that the stored one is at `task.rev`, then moves `task.rev`
    /// on (`Conflict` otherwise).
    async fn save_software_update(&self, task: &mut SoftwareUpdateTask) -> Result<(), StoreError>;
    async fn software_update(&self, id: &TaskId) -> Result<Option<SoftwareUpdateTask>, StoreError>;
    async fn software_update_by_token(&self, token: &str) -> Result<Option<SoftwareUpdateTask>, StoreError>;
    /// Tasks by id.
    async fn list_software_updates(
        &self,
        page: PageRequest<TaskId>,
    ) -> Result<Page<SoftwareUpdateTask, TaskId>, StoreError>;
}

/// The client devices ggprov provisioned and associated with cores.
#[async_trait]
pub trait DeviceRecords: Send + Sync {
    async fn device(&self, name: &ThingName) -> Result<Option<Device>, StoreError>;
    /// Which of `names` are client devices (batched reads, for validating large tasks).
    async fn existing_devices(&self, names: &[ThingName]) -> Result<BTreeSet<ThingName>, StoreError>;
    /// The client devices ggprov associated with a core, by name.
    async fn list_devices_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, StoreError>;
    /// Ends a device `Create` item: upserts the device, marks the item `Success` and writes
    /// the event, in one transaction. With a `journal`, that transaction also saves it on the
    /// same condition as [`CoreRecords::complete_core_create`]'s: `Conflict`, and nothing
    /// written, when another writer saved the journal in between.
    async fn complete_device_create(
        &self,
        task: &TaskId,
        device: &Device,
        event: &Event,
        journal: Option<&ProvisioningJournal>,
    ) -> Result<(), StoreError>;
    /// Removes a device and its journal with its event; ends the item when a task did it.
    async fn complete_device_delete(
        &self,
        task: Option<&TaskId>,
        name: &ThingName,
        event: &Event,
    ) -> Result<(), StoreError>;
}

/// What provisioning has done for each thing, so that a retried step finds its earlier work.
#[async_trait]
pub trait ProvisioningJournals: Send + Sync {
    /// The journal of a thing (empty, revision 0, when none), with the revision it was read at.
    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError>;
    /// Saves the journal on condition that the stored one is still at `journal.rev` (absent
    /// for 0), then moves `journal.rev` on; `Conflict` when another writer saved in between.
    async fn save_journal(&self, name: &ThingName, journal: &mut ProvisioningJournal) -> Result<(), StoreError>;
}

/// Events written with the state changes they report, published by a relay.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Outbox events, newest first.
    async fn events(&self, page: PageRequest<u64>) -> Result<Page<StoredEvent, u64>, StoreError>;
    /// Up to `limit` events with a sequence above `after`, oldest first, for live streams.
    /// Only events at least [`Outbox::stream_settle`] old are returned, so that a reader that
    /// resumes after the last sequence it saw misses none that became visible later.
    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
    /// How long after its time an event may still become visible with a lower sequence than
    /// one already visible: zero where sequences follow commit order (SQLite, one writer).
    fn stream_settle(&self) -> Duration {
        Duration::ZERO
    }
    /// Up to `limit` unpublished events, oldest first, each claimed for `lease` so that
    /// concurrent relays do not publish the same event twice.
    async fn claim_unpublished_events(&self, limit: u32, lease: Duration) -> Result<Vec<StoredEvent>, StoreError>;
    /// Marks events published.
    async fn mark_events_published(&self, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// How many events are not published yet.
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;
}

/// Deployment tasks' targets, template deployments and each core's deployment state.
#[async_trait]
pub trait DeploymentRecords: Send + Sync {
    /// Deployment tasks created before `before` whose targets were never expanded (for the sweeper).
    async fn unexpanded_deployment_tasks(&self, before: Timestamp) -> Result<Vec<TaskId>, StoreError>;
    /// Records the cores a deployment task targets (items `Waiting`) and its events, once;
    /// `false` when it was expanded already.
    /// `waves` gives each core's wave (empty: all wave 0); `rollout` is the task's rollout as
    /// it starts (its first wave running), saved with the expansion.
    async fn expand_deployment_task(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        waves: &[u32],
        batch_size: u32,
        events: &[Event],
        rollout: Option<&RolloutState>,
    ) -> Result<bool, StoreError>;
    /// Ends a deployment task that matched nothing.
    async fn fail_deployment_task(&self, task: &TaskId, message: &str) -> Result<(), StoreError>;
    /// The deployment-task records of a core, by task id.
    async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError>;

    /// The Greengrass deployment of a template version, if created.
    async fn template_deployment(&self, template: &TemplateRef) -> Result<Option<String>, StoreError>;
    /// Records it; returns the id recorded (the earlier one if another writer won).
    async fn save_template_deployment(
        &self,
        template: &TemplateRef,
        thing_group: &str,
        deployment_id: &str,
    ) -> Result<String, StoreError>;
    /// The template version a Greengrass deployment deploys.
    async fn template_of_deployment(&self, deployment_id: &str) -> Result<Option<TemplateRef>, StoreError>;

    /// Ends a deployment item with success and applies [`Core::assign_deployment`], counters
    /// moving in the same transaction; the item keeps the template the core desired before
    /// (for a rollback). `moved_at` is when the move began (before the call that moved the
    /// core): the assignment is recorded at that time, because the core may report the
    /// deployment's outcome before this write, and a report older than the assignment would be
    /// ignored as stale.
    async fn complete_deployment_item(
        &self,
        task: &TaskId,
        core: &ThingName,
        template: &TemplateRef,
        deployment_id: &str,
        nucleus: Option<&Nucleus>,
        moved_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Ends a deployment item with failure and applies [`Core::record_deployment_failure`] to
    /// the core (if any).
    async fn fail_deployment_item(&self, task: &TaskId, core: &ThingName, message: &str) -> Result<(), StoreError>;
    /// Applies [`Core::apply_outcome`] with its event; `false` when the core ignored it.
    async fn apply_deployment_outcome(
        &self,
        outcome: &DeploymentOutcome,
        template: &TemplateRef,
        event: &Event,
    ) -> Result<bool, StoreError>;
}

/// Staged rollouts of deployment tasks: their state (written conditionally on its revision),
/// the items' waves and reports, and the Greengrass revisions retry tasks create.
#[async_trait]
pub trait RolloutRecords: Send + Sync {
    /// Deployment tasks whose rollout still needs a worker ([`RolloutState::is_active`]).
    async fn active_rollouts(&self) -> Result<Vec<TaskId>, StoreError>;
    /// Saves `state` on condition that the stored rollout is still at `state.rev`, then moves
    /// `state.rev` on; `event` is written in the same transaction, and with `skip` every
    /// `Waiting` item of the task ends `Failure` with that message and report `SKIPPED`.
    /// `false` (nothing written) when another writer saved in between.
    async fn save_rollout(
        &self,
        task: &TaskId,
        state: &mut RolloutState,
        event: Option<&Event>,
        skip: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Every item of a deployment task with its wave, report, previous template and its core's
    /// deployment state now.
    async fn rollout_items(&self, task: &TaskId) -> Result<Vec<RolloutItem>, StoreError>;
    /// Records items' reports (once established they do not change).
    async fn save_item_reports(&self, task: &TaskId, reports: &[(ThingName, ItemReport)]) -> Result<(), StoreError>;
    /// Records the Greengrass deployment revision a retry task created, once, and makes it the
    /// template version's deployment; returns the revision recorded (an earlier one if another
    /// writer won).
    async fn save_task_revision(
        &self,
        task: &TaskId,
        template: &TemplateRef,
        deployment_id: &str,
    ) -> Result<String, StoreError>;
}

/// The exact fleet summary: counters moved with every core change.
#[async_trait]
pub trait FleetCounters: Send + Sync {
    /// The fleet counters by template and version.
    async fn fleet_counters(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError>;
    /// The same, counted from the core records.
    async fn recount_fleet(&self) -> Result<BTreeMap<(String, u32), VersionCounts>, StoreError>;
    /// The software counters: cores by nucleus version and platform.
    async fn software_counters(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError>;
    /// The same, counted from the core records.
    async fn recount_software(&self) -> Result<BTreeMap<SoftwareKey, SoftwareCounts>, StoreError>;
}

/// Positions of positioned feeds (the local cloud's status log), so ingestion resumes.
#[async_trait]
pub trait IngestCursors: Send + Sync {
    async fn ingest_cursor(&self, feed: &str) -> Result<u64, StoreError>;
    /// Moves the cursor forward (never back).
    async fn save_ingest_cursor(&self, feed: &str, position: u64) -> Result<(), StoreError>;
}

/// The certificate inventory ([`crate::certificates`]): every recorded certificate by id, the
/// ACTIVE ones by expiry, and their counts, kept in the transactions that write the records.
#[async_trait]
pub trait CertificateInventory: Send + Sync {
    /// A recorded certificate (any status) with its thing.
    async fn certificate(&self, id: &str) -> Result<Option<CertificateEntry>, StoreError>;
    /// ACTIVE certificates whose `notAfter` is before `before`, soonest first (then by id).
    async fn expiring_certificates(
        &self,
        before: Timestamp,
        page: PageRequest<ExpiryKey>,
    ) -> Result<Page<CertificateEntry, ExpiryKey>, StoreError>;
    /// ACTIVE certificates by CA (`""`: none): in all, and how many end before each bound;
    /// exact (read in one consistent view, or from counters moved with every record write).
    async fn certificate_counts(&self, bounds: &[Timestamp]) -> Result<BTreeMap<String, CaCounts>, StoreError>;
    /// Applies [`crate::certificates::CertificateInfo::changed_to`] to the record that holds certificate `id`, with
    /// `event`, in one transaction. The entry afterwards (unchanged when there was nothing to
    /// change, then without the event); `None` when no record holds it.
    async fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateState,
        at: Timestamp,
        event: &Event,
    ) -> Result<Option<CertificateEntry>, StoreError>;
    /// Gives a client device its new certificate (a rotation by CSR), with `event`, in one
    /// transaction; `false` when there is no such device.
    async fn replace_device_certificate(
        &self,
        name: &ThingName,
        certificate: &crate::certificates::CertificateInfo,
        at: Timestamp,
        event: &Event,
    ) -> Result<bool, StoreError>;
    /// Records `certificate` on a core or device that has none yet (things recorded before the
    /// inventory), without an event; `false` when the record is gone or has one already.
    async fn fill_missing_certificate(
        &self,
        kind: crate::thing::ThingKind,
        name: &ThingName,
        certificate: &crate::certificates::CertificateInfo,
    ) -> Result<bool, StoreError>;
}

/// Every record port of one backend, for wiring; consumers ask for the narrow ones they use.
pub trait CoreStore:
    TaskStore
    + CoreRecords
    + DeviceRecords
    + ProvisioningJournals
    + Outbox
    + DeploymentRecords
    + RolloutRecords
    + FleetCounters
    + IngestCursors
    + IdempotencyRecords
    + SoftwareUpdateRecords
    + CertificateInventory
{
}

impl<T> CoreStore for T where
    T: TaskStore
        + CoreRecords
        + DeviceRecords
        + ProvisioningJournals
        + Outbox
        + DeploymentRecords
        + RolloutRecords
        + FleetCounters
        + IngestCursors
        + IdempotencyRecords
        + SoftwareUpdateRecords
        + CertificateInventory
{
}
