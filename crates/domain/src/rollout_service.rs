//! Running staged rollouts: the controller step a worker takes for each active rollout (tally
//! the waves, record reports, decide, persist conditionally, release the next wave's cores),
//! operators' actions (pause, resume, cancel, rollback), and retrying a deployment task's
//! failed cores. The API and the workers share it, so an action and a worker's decision go
//! through the same conditional write.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cores::{DeploymentSpec, DeploymentState, Event, NO_TEMPLATE, Task, TaskFamily, TaskKind, TemplateRef};
use crate::jobs::{DeploymentExpand, JobPayload as _, TaskBatch};
use crate::ports::{CoreStore, StoreError, WorkQueue};
use crate::rollout::{self, ItemReport, RolloutAction, RolloutItem, RolloutPhase, RolloutState, Transition, WaveTally};
use crate::task::{TaskId, TaskStatus};
use crate::thing::ThingName;
use crate::time::Timestamp;

/// Why a rollout action or a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("deployment task '{0}' does not exist")]
    NotFound(TaskId),
    /// The task's state does not allow it; the message names the state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn conflict(code: &'static str, message: impl Into<String>) -> RolloutError {
    RolloutError::Conflict { code, message: message.into() }
}

/// How often a conditional write is tried again after losing to another writer.
const ATTEMPTS: usize = 5;

/// Rollouts, their actions and retries.
#[derive(Clone)]
pub struct Rollouts {
    store: Arc<dyn CoreStore>,
    queue: Arc<dyn WorkQueue>,
    batch_size: usize,
}

fn spec_of(task: &Task) -> Option<&DeploymentSpec> {
    match &task.kind {
        TaskKind::Deployment(spec) => Some(spec),
        _ => None,
    }
}

/// What a rollout rolls out: a deployment (its waves move cores to a template version, whose
/// deployment reports decide) or a certificate rotation (its waves rotate cores, whose items'
/// own outcomes decide).
#[derive(Clone, Copy)]
enum Owner<'a> {
    Deployment(&'a DeploymentSpec),
    Rotation,
}

fn owner_of(task: &Task) -> Option<Owner<'_>> {
    match &task.kind {
        TaskKind::Deployment(spec) => Some(Owner::Deployment(spec)),
        TaskKind::Rotation(_) => Some(Owner::Rotation),
        _ => None,
    }
}

impl Owner<'_> {
    /// Whether the task's items exist (a deployment task's targets are expanded later).
    fn expanded(self) -> bool {
        match self {
            Self::Deployment(spec) => spec.expanded,
            Self::Rotation => true,
        }
    }

    fn tally(
        self,
        state: &RolloutState,
        items: &[RolloutItem],
        now: Timestamp,
    ) -> (Vec<WaveTally>, Vec<(ThingName, ItemReport)>) {
        match self {
            Self::Deployment(spec) => rollout::tally(state, &spec.template, items, now),
            Self::Rotation => (rollout::tally_own(state, items, now), Vec::new()),
        }
    }

    fn skip_message(self, phase: RolloutPhase) -> Option<&'static str> {
        match (self, phase) {
            (Self::Deployment(_), RolloutPhase::Aborted) => Some("Not moved: the rollout was aborted"),
            (Self::Deployment(_), RolloutPhase::Cancelled) => Some("Not moved: the rollout was cancelled"),
            (Self::Rotation, RolloutPhase::Aborted) => Some("Not rotated: the rollout was aborted"),
            (Self::Rotation, RolloutPhase::Cancelled) => Some("Not rotated: the rollout was cancelled"),
            _ => None,
        }
    }

    fn batch_size(self, default: usize) -> usize {
        match self {
            Self::Deployment(spec) => spec.batch_size.map_or(default, |b| b.max(1) as usize),
            Self::Rotation => default,
        }
    }

    fn event(self, detail_type: &str, task: &TaskId, extra: serde_json::Value) -> Event {
        let (detail_type, mut detail) = match self {
            Self::Deployment(spec) => (
                detail_type.to_owned(),
                serde_json::json!({
                    "taskId": task.as_str(),
                    "templateName": spec.template.name,
                    "templateVersion": spec.template.version,
                }),
            ),
            Self::Rotation => {
                (crate::rotation::rollout_event(detail_type), serde_json::json!({"taskId": task.as_str()}))
            }
        };
        if let (Some(d), serde_json::Value::Object(e)) = (detail.as_object_mut(), extra) {
            d.extend(e);
        }
        Event { detail_type, detail }
    }
}

fn event(detail_type: &str, task: &TaskId, spec: &DeploymentSpec, extra: serde_json::Value) -> Event {
    Owner::Deployment(spec).event(detail_type, task, extra)
}

/// The event that reports a state change, if any.
fn event_for(task: &TaskId, owner: Owner<'_>, before: &RolloutState, after: &RolloutState) -> Option<Event> {
    let waves = after.waves.len();
    let wave_event = |n: u32| {
        owner.event(
            rollout::WAVE_STARTED_EVENT,
            task,
            serde_json::json!({"wave": n + 1, "waves": waves, "planned": after.waves.get(n as usize).map_or(0, |w| w.planned)}),
        )
    };
    match (before.phase, after.phase) {
        (_, RolloutPhase::Aborted) if before.phase != RolloutPhase::Aborted => Some(owner.event(
            rollout::ROLLOUT_ABORTED_EVENT,
            task,
            serde_json::json!({"wave": after.current_wave + 1, "reason": after.reason, "rollback": after.rollback.is_some()}),
        )),
        (_, RolloutPhase::Cancelled) if before.phase != RolloutPhase::Cancelled => Some(owner.event(
            rollout::ROLLOUT_CANCELLED_EVENT,
            task,
            serde_json::json!({"wave": after.current_wave + 1}),
        )),
        (_, RolloutPhase::Completed) if before.phase != RolloutPhase::Completed => {
            Some(owner.event(rollout::TASK_COMPLETED_EVENT, task, serde_json::json!({"waves": waves})))
        }
        _ if after.current_wave != before.current_wave => Some(wave_event(after.current_wave)),
        (RolloutPhase::Running, RolloutPhase::Paused) => Some(owner.event(
            rollout::ROLLOUT_PAUSED_EVENT,
            task,
            serde_json::json!({"wave": after.current_wave + 1, "awaitingApproval": after.awaiting_approval}),
        )),
        (RolloutPhase::Paused, RolloutPhase::Running) => {
            Some(owner.event(rollout::ROLLOUT_RESUMED_EVENT, task, serde_json::json!({"wave": after.current_wave + 1})))
        }
        // A rollback's event is written when its tasks are (with their ids).
        _ => None,
    }
}

impl Rollouts {
    pub fn new(store: Arc<dyn CoreStore>, queue: Arc<dyn WorkQueue>, batch_size: usize) -> Self {
        Self { store, queue, batch_size: batch_size.max(1) }
    }

    /// The tasks whose rollout is active (those a controller step looks at).
    pub async fn active(&self) -> Result<Vec<TaskId>, StoreError> {
        self.store.active_rollouts().await
    }

    /// One controller step for every active rollout; returns how many changed state.
    pub async fn advance_all(&self) -> Result<usize, StoreError> {
        Ok(self.advance_each(&self.active().await?).await)
    }

    /// One controller step for each of `ids` (as [`Rollouts::active`] listed them); returns
    /// how many changed state. A rollout whose step fails is logged and tried again next time;
    /// the others still move.
    pub async fn advance_each(&self, ids: &[TaskId]) -> usize {
        let mut changed = 0;
        for id in ids {
            match self.advance(id).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(err) => tracing::warn!(task.id = %id, error = %crate::ErrorChain(&err), "rollout step failed"),
            }
        }
        changed
    }

    /// One controller step for a rollout: records the reports its items now have, and applies
    /// the decision (next wave, approval, completion, abort) with one conditional write.
    pub async fn advance(&self, id: &TaskId) -> Result<bool, StoreError> {
        let Some(task) = self.store.task_header(id).await? else { return Ok(false) };
        let Some(owner) = owner_of(&task) else { return Ok(false) };
        let Some(mut state) = task.rollout().cloned() else { return Ok(false) };
        if !owner.expanded() {
            return Ok(false);
        }
        if let (Owner::Deployment(spec), Some(rollback)) = (owner, &state.rollback)
            && !rollback.created
        {
            return self.ensure_rollback(&task, spec, state).await.map(|_| true);
        }
        if state.phase != RolloutPhase::Running {
            return Ok(false);
        }
        let items = self.store.rollout_items(id).await?;
        let now = Timestamp::now();
        let (tallies, reports) = owner.tally(&state, &items, now);
        if !reports.is_empty() {
            self.store.save_item_reports(id, &reports).await?;
        }
        let Some(transition) = rollout::decide(&state, &tallies) else { return Ok(false) };
        let before = state.clone();
        state.apply(&transition, now);
        let mut ev = event_for(id, owner, &before, &state);
        if let (Transition::Abort(_), Some(e)) = (&transition, ev.as_mut()) {
            let failed: u32 = tallies.iter().map(|t| t.failed).sum();
            let moved: u32 = tallies.iter().map(|t| t.moved).sum();
            e.detail["failed"] = failed.into();
            e.detail["moved"] = moved.into();
        }
        let skip = owner.skip_message(state.phase);
        if !self.store.save_rollout(id, &mut state, ev.as_ref(), skip).await? {
            return Ok(false); // another worker or an operator moved it first; next step re-reads
        }
        tracing::info!(task.id = %id, ?transition, "rollout moved on");
        self.after_change(&task, owner, &state, Some(&items)).await?;
        Ok(true)
    }

    /// What follows a saved state: the current wave's cores are released, a requested rollback
    /// gets its tasks. `items`: the task's items as the caller read them for this step, if it did.
    async fn after_change(
        &self,
        task: &Task,
        owner: Owner<'_>,
        state: &RolloutState,
        items: Option<&[RolloutItem]>,
    ) -> Result<(), StoreError> {
        if state.phase == RolloutPhase::Running && !state.awaiting_approval {
            let read;
            let items = match items {
                Some(items) => items,
                None => {
                    read = self.store.rollout_items(&task.id).await?;
                    &read
                }
            };
            self.release(&task.id, owner, state, items).await?;
        }
        if let Owner::Deployment(spec) = owner
            && state.rollback.as_ref().is_some_and(|r| !r.created)
        {
            self.ensure_rollback(task, spec, state.clone()).await?;
        }
        Ok(())
    }

    /// Queues the `Waiting` cores the rollout lets move now.
    async fn release(
        &self,
        id: &TaskId,
        owner: Owner<'_>,
        state: &RolloutState,
        items: &[RolloutItem],
    ) -> Result<(), StoreError> {
        let ready: Vec<ThingName> = items
            .iter()
            .filter(|i| i.status == TaskStatus::Waiting && state.may_move(i.wave))
            .map(|i| i.name.clone())
            .collect();
        let size = owner.batch_size(self.batch_size);
        let jobs: Vec<_> =
            ready.chunks(size).map(|c| TaskBatch { task_id: id.clone(), items: c.to_vec() }.job()).collect();
        if !jobs.is_empty()
            && let Err(err) = self.queue.enqueue(&jobs).await
        {
            // The sweeper queues released items again later.
            tracing::warn!(task.id = %id, error = %err, "wave released but not queued; the sweeper will queue it");
        }
        Ok(())
    }

    /// Creates the rollback tasks (one per template version the moved cores had before;
    /// deterministic ids, so a repeated step finds them) and records them.
    async fn ensure_rollback(
        &self,
        task: &Task,
        spec: &DeploymentSpec,
        mut state: RolloutState,
    ) -> Result<RolloutState, StoreError> {
        let items = self.store.rollout_items(&task.id).await?;
        let previous: BTreeSet<(String, u32)> = moved_items(&items)
            .filter_map(|i| i.previous.as_ref().map(|p| (p.name.clone(), p.version)))
            .filter(|p| *p != (spec.template.name.clone(), spec.template.version))
            .collect();
        let mut ids = Vec::new();
        for (n, (name, version)) in previous.into_iter().enumerate() {
            let child = rollout::rollback_task_id(&task.id, n);
            if self.store.task_header(&child).await?.is_none() {
                let rollback = Task::new_deployment(
                    child.clone(),
                    TemplateRef { name, version },
                    serde_json::json!({"rollbackOf": task.id.as_str()}),
                    None,
                    None,
                    Timestamp::now(),
                );
                match self.store.create_task(&rollback).await {
                    Ok(()) => {}
                    // Another step created it between the read and the write.
                    Err(_) if self.store.task_header(&child).await?.is_some() => {}
                    Err(err) => return Err(err),
                }
            }
            self.queue.enqueue(&[DeploymentExpand { task_id: child.clone() }.job()]).await?;
            ids.push(child);
        }
        for _ in 0..ATTEMPTS {
            let Some(mut record) = state.rollback.clone() else { return Ok(state) };
            if record.created {
                return Ok(state);
            }
            record.task_ids = ids.clone();
            record.created = true;
            let mut next = state.clone();
            next.rollback = Some(record);
            let ev = event(
                rollout::ROLLBACK_STARTED_EVENT,
                &task.id,
                spec,
                serde_json::json!({"rollbackTaskIds": ids.iter().map(TaskId::as_str).collect::<Vec<_>>()}),
            );
            if self.store.save_rollout(&task.id, &mut next, Some(&ev), None).await? {
                return Ok(next);
            }
            state = self.current_state(&task.id).await?.unwrap_or(state);
        }
        Ok(state)
    }

    async fn current_state(&self, id: &TaskId) -> Result<Option<RolloutState>, StoreError> {
        Ok(self.store.task_header(id).await?.and_then(|t| t.rollout().cloned()))
    }

    /// A task's header when it is of `family`, or `NotFound`.
    async fn task_of(&self, id: &TaskId, family: TaskFamily) -> Result<Task, RolloutError> {
        self.store
            .task_header(id)
            .await?
            .filter(|t| t.kind.family() == family && owner_of(t).is_some())
            .ok_or_else(|| RolloutError::NotFound(id.clone()))
    }

    /// An operator's action: applied with a conditional write (retried against concurrent
    /// writers), idempotent, refused with the state when the state does not allow it.
    pub async fn act(&self, id: &TaskId, family: TaskFamily, action: RolloutAction) -> Result<Task, RolloutError> {
        for _ in 0..ATTEMPTS {
            let task = self.task_of(id, family).await?;
            let owner = owner_of(&task).expect("a task with rollouts");
            let Some(state) = task.rollout().cloned() else {
                return Err(conflict(
                    "NO_ROLLOUT",
                    match owner {
                        Owner::Deployment(_) => format!(
                            "deployment task {id} has no rollout (it moved every core at once); only rollouts can be paused, resumed, cancelled or rolled back"
                        ),
                        Owner::Rotation => format!(
                            "certificate rotation task {id} has no rollout (it rotates every core at once); only rollouts can be paused, resumed or cancelled"
                        ),
                    },
                ));
            };
            if action == RolloutAction::Rollback && matches!(owner, Owner::Rotation) {
                return Err(conflict("ROLLOUT_STATE", "a certificate rotation cannot be rolled back"));
            }
            let now = Timestamp::now();
            let Some(mut next) =
                rollout::apply_action(&state, action, now).map_err(|why| conflict("ROLLOUT_STATE", why))?
            else {
                // Already done: finish what may have been interrupted, then answer.
                if let (RolloutAction::Rollback, Owner::Deployment(spec)) = (action, owner) {
                    self.ensure_rollback(&task, spec, state).await?;
                }
                return Ok(self.store.task_header(id).await?.unwrap_or(task));
            };
            let ev = event_for(id, owner, &state, &next);
            let skip = owner.skip_message(next.phase);
            if self.store.save_rollout(id, &mut next, ev.as_ref(), skip).await? {
                if owner.expanded() {
                    self.after_change(&task, owner, &next, None).await?;
                }
                return Ok(self.store.task_header(id).await?.unwrap_or(task));
            }
        }
        Err(RolloutError::Store(StoreError::unavailable("the rollout kept changing; try again")))
    }

    /// The counts of each wave of a rollout task now (`None` for other tasks).
    pub async fn waves(&self, task: &Task) -> Result<Option<Vec<WaveTally>>, StoreError> {
        let Some(owner) = owner_of(task) else { return Ok(None) };
        let Some(state) = task.rollout() else { return Ok(None) };
        if !owner.expanded() {
            return Ok(Some(Vec::new()));
        }
        let items = self.store.rollout_items(&task.id).await?;
        Ok(Some(owner.tally(state, &items, Timestamp::now()).0))
    }

    /// The cores a retry or rollback task works on (`None`: an ordinary task, whose targets
    /// name them): the failed cores of the task it retries, or the moved cores of the task it
    /// rolls back whose previous template is this task's.
    pub async fn derived_targets(&self, spec: &DeploymentSpec) -> Result<Option<Vec<ThingName>>, StoreError> {
        if let Some(parent) = spec.retry_of() {
            let header = self.store.task_header(&parent).await?;
            let rollout = header.as_ref().and_then(spec_of).and_then(|s| s.rollout.as_deref());
            return Ok(Some(self.failed_cores(&parent, &spec.template, rollout).await?));
        }
        if let Some(parent) = spec.rollback_of() {
            let items = self.store.rollout_items(&parent).await?;
            return Ok(Some(
                moved_items(&items)
                    .filter(|i| i.previous.as_ref() == Some(&spec.template))
                    .map(|i| i.name.clone())
                    .collect(),
            ));
        }
        Ok(None)
    }

    /// The cores of a task (with its rollout, if any) that failed, timed out, or did not move,
    /// and do not run its version by now.
    async fn failed_cores(
        &self,
        task: &TaskId,
        template: &TemplateRef,
        rollout: Option<&RolloutState>,
    ) -> Result<Vec<ThingName>, StoreError> {
        let items = self.store.rollout_items(task).await?;
        let now = Timestamp::now();
        let failed = |i: &RolloutItem| {
            let report = i.classify(template, rollout.and_then(|state| state.deadline(i.wave)), now);
            // A core that runs the version successfully by now (a retry fixed it) is not failed.
            let fixed = i.core.as_ref().is_some_and(|c| &c.desired == template && c.state == DeploymentState::Success);
            matches!(report, Some(ItemReport::Failed | ItemReport::TimedOut)) && !fixed
        };
        Ok(items.iter().filter(|i| failed(i)).map(|i| i.name.clone()).collect())
    }

    /// A new deployment task for the failed (and timed-out) cores of a finished one: the same
    /// template version, deployed again as a new Greengrass revision so the cores really run it
    /// again.
    pub async fn retry(&self, id: &TaskId) -> Result<Task, RolloutError> {
        let task = self.task_of(id, TaskFamily::Deployment).await?;
        let spec = spec_of(&task).expect("a deployment task");
        if !task.status.is_terminal() {
            return Err(conflict(
                "TASK_NOT_FINISHED",
                format!("deployment task {id} is {}; only a finished task can be retried", task.status),
            ));
        }
        if spec.template.name == NO_TEMPLATE {
            return Err(conflict(
                "NOTHING_TO_RETRY",
                format!("deployment task {id} removed templates; it cannot be retried"),
            ));
        }
        if self.failed_cores(id, &spec.template, spec.rollout.as_deref()).await?.is_empty() {
            return Err(conflict(
                "NOTHING_TO_RETRY",
                format!("no core of deployment task {id} failed; there is nothing to retry"),
            ));
        }
        let retry = Task::new_deployment(
            TaskId::generate(),
            spec.template.clone(),
            serde_json::json!({"retryOf": id.as_str()}),
            spec.iot_job_config.clone(),
            None,
            Timestamp::now(),
        );
        self.store.create_task(&retry).await?;
        if let Err(err) = self.queue.enqueue(&[DeploymentExpand { task_id: retry.id.clone() }.job()]).await {
            tracing::warn!(task.id = %retry.id, error = %err, "retry task stored but not queued; the sweeper will queue it");
        }
        Ok(retry)
    }
}

/// Items the task moved (not skipped, not failed to move).
fn moved_items(items: &[RolloutItem]) -> impl Iterator<Item = &RolloutItem> {
    items.iter().filter(|i| i.status == TaskStatus::Success)
}
