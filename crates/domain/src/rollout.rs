//! Staged rollouts of a deployment task: the plan (waves and thresholds), the state a rollout
//! is in, how each moved core's outcome is classified for the task, and the one decision rule
//! that moves a rollout on (start the next wave, wait for approval, complete, abort).
//!
//! Everything here is pure: stores persist [`RolloutState`] with a revision (a conditional
//! write, so two workers deciding on one task reach one result) and the engine feeds
//! [`RolloutItem`]s in and carries the [`Transition`] out.

use serde::{Deserialize, Serialize};

use crate::cores::{Core, DeploymentState, TemplateRef};
use crate::task::{TaskId, TaskStatus};
use crate::thing::ThingName;
use crate::time::Timestamp;
use crate::validation::Problems;

/// The most waves a rollout may have.
pub const MAX_WAVES: usize = 100;

/// The longest wave timeout: 7 days.
pub const MAX_WAVE_TIMEOUT_SECS: u64 = 604_800;

/// One step of a rollout, **cumulative**: after the wave ran, this many of the targeted cores
/// (a percentage, rounded up, or a count) have been moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveStep {
    /// 1–100: this share of the targets, cumulative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, nullable = false))]
    pub percent: Option<u32>,
    /// At least 1: this many of the targets, cumulative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, nullable = false))]
    pub count: Option<u32>,
}

/// How many failed cores, counted over the whole task, abort it: more than `count`, or more
/// than `percent` of the targets. Either or both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureThreshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100, nullable = false))]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, nullable = false))]
    pub count: Option<u32>,
}

/// Whether the next wave starts on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    #[default]
    Auto,
    /// After each wave the rollout pauses until `POST .../resume`.
    Manual,
}

/// What an abort does besides stopping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnAbort {
    #[default]
    Stop,
    /// Moves the cores the task moved back to the template version they had before.
    Rollback,
}

/// The `rollout` of `POST /deploymentTasks`, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// Cumulative steps; the last must cover every target (`{"percent": 100}`).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub waves: Vec<WaveStep>,
    /// 0–1: the share of a wave's cores that must report success before the next wave starts
    /// (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1, nullable = false))]
    pub success_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub failure_threshold: Option<FailureThreshold>,
    /// A moved core that has not reported this many seconds after its wave started counts as
    /// failed (timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800, nullable = false))]
    pub wave_timeout_secs: Option<u64>,
    #[serde(default)]
    pub approval: Approval,
    #[serde(default)]
    pub on_abort: OnAbort,
}

impl RolloutSpec {
    /// The success threshold, 1 when not given.
    pub fn success_threshold(&self) -> f64 {
        self.success_threshold.unwrap_or(1.0)
    }

    /// Checks the rollout; `known_targets` is the number of targets when the targets are a
    /// list of thing names only (a count step may then cover them).
    pub fn check(&self, known_targets: Option<usize>) -> Result<(), Problems> {
        let mut problems = Problems::new();
        if self.waves.is_empty() {
            problems.add("rollout.waves", "must list at least one wave, e.g. [{\"percent\": 10}, {\"percent\": 100}]");
        }
        if self.waves.len() > MAX_WAVES {
            problems.add("rollout.waves", format!("lists {} waves; at most {MAX_WAVES}", self.waves.len()));
        }
        let (mut last_percent, mut last_count) = (0u32, 0u32);
        for (i, step) in self.waves.iter().enumerate() {
            let field = format!("rollout.waves[{i}]");
            match (step.percent, step.count) {
                (Some(p), None) if (1..=100).contains(&p) => {
                    if p <= last_percent {
                        problems.add(
                            field,
                            format!("percent {p} does not grow: waves are cumulative (the previous wave reached {last_percent} %)"),
                        );
                    }
                    last_percent = p;
                }
                (Some(p), None) => problems.add(format!("{field}.percent"), format!("{p} is outside 1–100")),
                (None, Some(0)) => problems.add(format!("{field}.count"), "must be at least 1"),
                (None, Some(c)) => {
                    if c <= last_count {
                        problems.add(
                            field,
                            format!("count {c} does not grow: waves are cumulative (the previous wave reached {last_count} cores)"),
                        );
                    }
                    last_count = c;
                }
                _ => problems.add(field, "must be exactly one of {\"percent\": P} or {\"count\": N}"),
            }
        }
        if let Some(last) = self.waves.last() {
            let covers = match (last.percent, last.count, known_targets) {
                (Some(100), _, _) => true,
                (None, Some(c), Some(n)) => c as usize >= n,
                _ => false,
            };
            if !covers {
                problems.add(
                    format!("rollout.waves[{}]", self.waves.len() - 1),
                    match known_targets {
                        Some(n) => format!("the waves do not cover the {n} targets: waves are cumulative; end with {{\"percent\": 100}}"),
                        None => "the waves do not cover the targets: waves are cumulative; end with {\"percent\": 100}".to_owned(),
                    },
                );
            }
        }
        if let Some(t) = self.success_threshold
            && !(0.0..=1.0).contains(&t)
        {
            problems.add("rollout.successThreshold", format!("{t} is outside 0–1 (a fraction of the wave)"));
        }
        if let Some(f) = &self.failure_threshold {
            match (f.percent, f.count) {
                (None, None) => problems.add("rollout.failureThreshold", "needs percent and/or count"),
                (Some(p), _) if !(0.0..=100.0).contains(&p) => {
                    problems.add("rollout.failureThreshold.percent", format!("{p} is outside 0–100"))
                }
                _ => {}
            }
        }
        match self.wave_timeout_secs {
            Some(0) => problems.add("rollout.waveTimeoutSecs", "must be at least 1"),
            Some(secs) if secs > MAX_WAVE_TIMEOUT_SECS => {
                problems.add("rollout.waveTimeoutSecs", format!("{secs} is more than {MAX_WAVE_TIMEOUT_SECS} (7 days)"))
            }
            _ => {}
        }
        problems.finish(|| ())
    }

    /// How many of `targets` cores each wave moves (not cumulative; empty waves possible when
    /// rounding makes two steps equal).
    pub fn plan(&self, targets: usize) -> Vec<u32> {
        let mut planned = Vec::with_capacity(self.waves.len());
        let mut reached = 0usize;
        for (i, step) in self.waves.iter().enumerate() {
            let cumulative = if i + 1 == self.waves.len() {
                targets // the last wave takes the rest
            } else {
                match (step.percent, step.count) {
                    (Some(p), _) => (targets * p as usize).div_ceil(100),
                    (_, Some(c)) => c as usize,
                    _ => reached,
                }
                .clamp(reached, targets)
            };
            planned.push((cumulative - reached) as u32);
            reached = cumulative;
        }
        planned
    }

    /// The wave of each of `names` (in name order, so every reader assigns the same).
    pub fn assign_by_name<'a>(
        &self,
        names: impl IntoIterator<Item = &'a ThingName>,
    ) -> std::collections::BTreeMap<ThingName, u32> {
        let mut sorted: Vec<&ThingName> = names.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        let waves = self.assign(sorted.len());
        sorted.into_iter().cloned().zip(waves).collect()
    }

    /// The wave of each of `targets` cores, in their order.
    pub fn assign(&self, targets: usize) -> Vec<u32> {
        self.plan(targets)
            .iter()
            .enumerate()
            .flat_map(|(wave, n)| std::iter::repeat_n(wave as u32, *n as usize))
            .collect()
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RolloutPhase {
    Running,
    Paused,
    Aborted,
    Cancelled,
    Completed,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Paused => "Paused",
            Self::Aborted => "Aborted",
            Self::Cancelled => "Cancelled",
            Self::Completed => "Completed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Aborted | Self::Cancelled | Self::Completed)
    }
}

/// When a wave ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveTimes {
    pub planned: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

/// A rollback of the task's moved cores: the deployment tasks that move them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    pub requested_at: Timestamp,
    /// One deployment task per template version the cores had before; their ids are
    /// `<task>-rollback-<n>`.
    pub task_ids: Vec<TaskId>,
    /// Whether those tasks have been created (set after they were).
    pub created: bool,
}

/// The stored state of a rollout (with the task, written conditionally on `rev`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    pub spec: RolloutSpec,
    pub phase: RolloutPhase,
    /// The wave being run (0-based).
    pub current_wave: u32,
    /// Paused after a wave for manual approval (resume starts the next wave).
    #[serde(default)]
    pub awaiting_approval: bool,
    pub waves: Vec<WaveTimes>,
    /// Why the rollout stopped (abort, cancel) in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    #[serde(default)]
    pub rev: u64,
}

impl RolloutState {
    /// A rollout whose targets were just expanded: wave 0 starts.
    pub fn start(spec: RolloutSpec, planned: &[u32], now: Timestamp) -> Self {
        let mut waves: Vec<WaveTimes> =
            planned.iter().map(|n| WaveTimes { planned: *n, ..Default::default() }).collect();
        if let Some(first) = waves.first_mut() {
            first.started_at = Some(now);
        }
        Self {
            spec,
            phase: RolloutPhase::Running,
            current_wave: 0,
            awaiting_approval: false,
            waves,
            reason: None,
            rollback: None,
            rev: 0,
        }
    }

    /// The stored state of a rollout whose targets were just expanded into `planned` cores per
    /// wave: its first wave starts (phase, actions and revision as stored).
    pub fn expanded(mut self, planned: &[u32], now: Timestamp) -> Self {
        self.waves = planned.iter().map(|n| WaveTimes { planned: *n, ..Default::default() }).collect();
        self.current_wave = 0;
        if let Some(first) = self.waves.first_mut() {
            first.started_at = Some(now);
        }
        self
    }

    /// When a moved core of `wave` that has not reported counts as timed out (no timeout: never).
    pub fn deadline(&self, wave: u32) -> Option<Timestamp> {
        let started = self.waves.get(wave as usize)?.started_at?;
        let secs = i64::try_from(self.spec.wave_timeout_secs?).unwrap_or(i64::MAX);
        Some(Timestamp::from_millis(started.as_millis().saturating_add(secs.saturating_mul(1000))).unwrap_or(started))
    }

    /// Whether a worker still has something to do for this rollout.
    pub fn is_active(&self) -> bool {
        !self.phase.is_terminal() || self.rollback.as_ref().is_some_and(|r| !r.created)
    }

    /// Whether an item of `wave` may be moved now.
    pub fn may_move(&self, wave: u32) -> bool {
        self.phase == RolloutPhase::Running && wave <= self.current_wave && !self.awaiting_approval
    }

    /// The task status a rollout task shows: `InProgress` until the rollout ends; `Failure`
    /// when it was aborted or cancelled; then its items decide.
    pub fn task_status(&self, by_items: TaskStatus) -> TaskStatus {
        match self.phase {
            RolloutPhase::Running | RolloutPhase::Paused => TaskStatus::InProgress,
            RolloutPhase::Aborted | RolloutPhase::Cancelled => TaskStatus::Failure,
            RolloutPhase::Completed => by_items,
        }
    }
}

/// How a moved core's deployment ended, for the task that moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemReport {
    Succeeded,
    Failed,
    /// Not reported within the wave timeout.
    TimedOut,
    /// Never moved: the rollout stopped first.
    Skipped,
}

impl ItemReport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Skipped => "SKIPPED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "TIMED_OUT" => Self::TimedOut,
            "SKIPPED" => Self::Skipped,
            _ => return None,
        })
    }
}

/// What a store knows of a core's deployment, for classifying its item.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreDeploymentView {
    pub desired: TemplateRef,
    pub state: DeploymentState,
    pub message: Option<String>,
}

impl From<&Core> for CoreDeploymentView {
    fn from(core: &Core) -> Self {
        Self {
            desired: core.desired.clone(),
            state: core.deployment_status.state(),
            message: core.deployment_status_message.clone(),
        }
    }
}

/// One item of a rollout (or any deployment) task, as the controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutItem {
    pub name: ThingName,
    pub wave: u32,
    pub status: TaskStatus,
    pub report: Option<ItemReport>,
    /// The template the core had before the task moved it (moved items only).
    pub previous: Option<TemplateRef>,
    /// The core's record now (`None`: no such core any more).
    pub core: Option<CoreDeploymentView>,
}

impl RolloutItem {
    /// The report this item has now: its stored one, or what its core's record says of the
    /// deployment of `template` (a failed move counts as failed; a core moved since by
    /// another task, or deleted, as failed; no report past `deadline`, as timed out).
    pub fn classify(&self, template: &TemplateRef, deadline: Option<Timestamp>, now: Timestamp) -> Option<ItemReport> {
        if self.report.is_some() {
            return self.report;
        }
        match self.status {
            TaskStatus::Failure => return Some(ItemReport::Failed),
            TaskStatus::Success => {}
            TaskStatus::Waiting | TaskStatus::InProgress => return None,
        }
        let Some(core) = &self.core else { return Some(ItemReport::Failed) };
        if &core.desired != template {
            return Some(ItemReport::Failed);
        }
        match core.state {
            DeploymentState::Success => Some(ItemReport::Succeeded),
            DeploymentState::Failed => Some(ItemReport::Failed),
            DeploymentState::InProgress if deadline.is_some_and(|d| now >= d) => Some(ItemReport::TimedOut),
            DeploymentState::InProgress => None,
        }
    }
}

/// Counts of one wave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WaveTally {
    pub planned: u32,
    /// Moved into the template version's deployment.
    pub moved: u32,
    pub succeeded: u32,
    /// Failed to move, reported failure, moved away by another task, or timed out.
    pub failed: u32,
    /// Of `failed`, those that did not report in time.
    pub timed_out: u32,
    /// Never moved because the rollout stopped.
    pub skipped: u32,
    /// Neither succeeded, failed nor skipped yet.
    pub pending: u32,
}

impl RolloutItem {
    /// The report of an item whose own outcome is the result (a certificate rotation: the item
    /// succeeds once the core confirmed its new certificate): its stored report (`SKIPPED`), its
    /// status when it ended, or timed out past `deadline` while it runs.
    pub fn classify_own(&self, deadline: Option<Timestamp>, now: Timestamp) -> Option<ItemReport> {
        if self.report.is_some() {
            return self.report;
        }
        match self.status {
            TaskStatus::Success => Some(ItemReport::Succeeded),
            TaskStatus::Failure => Some(ItemReport::Failed),
            TaskStatus::InProgress if deadline.is_some_and(|d| now >= d) => Some(ItemReport::TimedOut),
            TaskStatus::Waiting | TaskStatus::InProgress => None,
        }
    }
}

/// Per-wave counts of a rollout whose items' own outcomes are the results (see
/// [`RolloutItem::classify_own`]); nothing to record.
pub fn tally_own(state: &RolloutState, items: &[RolloutItem], now: Timestamp) -> Vec<WaveTally> {
    tally_by(state, items, |item| item.classify_own(state.deadline(item.wave), now)).0
}

/// Reports newly established and per-wave counts, from the items.
pub fn tally(
    state: &RolloutState,
    template: &TemplateRef,
    items: &[RolloutItem],
    now: Timestamp,
) -> (Vec<WaveTally>, Vec<(ThingName, ItemReport)>) {
    tally_by(state, items, |item| item.classify(template, state.deadline(item.wave), now))
}

fn tally_by(
    state: &RolloutState,
    items: &[RolloutItem],
    classify: impl Fn(&RolloutItem) -> Option<ItemReport>,
) -> (Vec<WaveTally>, Vec<(ThingName, ItemReport)>) {
    let mut tallies: Vec<WaveTally> =
        state.waves.iter().map(|w| WaveTally { planned: w.planned, ..Default::default() }).collect();
    let mut new_reports = Vec::new();
    for item in items {
        let wave = item.wave as usize;
        if wave >= tallies.len() {
            continue;
        }
        let report = classify(item);
        if item.report.is_none()
            && let Some(r) = report
            && item.status == TaskStatus::Success
        {
            new_reports.push((item.name.clone(), r));
        }
        let t = &mut tallies[wave];
        if item.status == TaskStatus::Success {
            t.moved += 1;
        }
        match report {
            Some(ItemReport::Succeeded) => t.succeeded += 1,
            Some(ItemReport::Failed) => t.failed += 1,
            Some(ItemReport::TimedOut) => {
                t.failed += 1;
                t.timed_out += 1;
            }
            Some(ItemReport::Skipped) => t.skipped += 1,
            None => t.pending += 1,
        }
    }
    (tallies, new_reports)
}

/// What the controller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Start wave `n` (move its cores).
    StartWave(u32),
    /// The current wave met its threshold; wait for `resume` before the next one.
    AwaitApproval,
    Complete,
    Abort(String),
}

/// The one rule that moves a running rollout on, from the counts of its waves.
pub fn decide(state: &RolloutState, tallies: &[WaveTally]) -> Option<Transition> {
    if state.phase != RolloutPhase::Running || state.awaiting_approval {
        return None;
    }
    let total: u32 = tallies.iter().map(|t| t.planned).sum();
    let failed: u32 = tallies.iter().map(|t| t.failed).sum();
    if let Some(threshold) = &state.spec.failure_threshold {
        if let Some(count) = threshold.count
            && failed > count
        {
            return Some(Transition::Abort(format!(
                "failure threshold crossed: {failed} of {total} cores failed, more than the {count} allowed"
            )));
        }
        if let Some(percent) = threshold.percent
            && f64::from(failed) * 100.0 > percent * f64::from(total)
        {
            return Some(Transition::Abort(format!(
                "failure threshold crossed: {failed} of {total} cores failed ({:.1} %), more than the {percent} % allowed",
                f64::from(failed) * 100.0 / f64::from(total.max(1))
            )));
        }
    }
    let wave = state.current_wave as usize;
    let current = tallies.get(wave)?;
    let needed = (state.spec.success_threshold() * f64::from(current.planned) - 1e-9).ceil().max(0.0) as u32;
    if current.succeeded < needed {
        if current.succeeded + current.pending < needed {
            return Some(Transition::Abort(format!(
                "success threshold not reached in wave {}: {} of {} cores succeeded, {needed} needed ({} failed)",
                wave + 1,
                current.succeeded,
                current.planned,
                current.failed
            )));
        }
        return None;
    }
    if wave + 1 < tallies.len() {
        return Some(match state.spec.approval {
            Approval::Auto => Transition::StartWave(state.current_wave + 1),
            Approval::Manual => Transition::AwaitApproval,
        });
    }
    // The last wave: complete once every wave's cores have an outcome.
    if tallies.iter().all(|t| t.pending == 0) { Some(Transition::Complete) } else { None }
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Cancel,
    Rollback,
}

impl RolloutAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
            Self::Rollback => "rollback",
        }
    }
}

/// What an action does to a state: `Ok(None)` when it is already done (actions are
/// idempotent), `Err` with the reason when the state does not allow it.
pub fn apply_action(
    state: &RolloutState,
    action: RolloutAction,
    now: Timestamp,
) -> Result<Option<RolloutState>, String> {
    let mut next = state.clone();
    let phase = state.phase;
    match action {
        RolloutAction::Pause => match phase {
            RolloutPhase::Paused => return Ok(None),
            RolloutPhase::Running => next.phase = RolloutPhase::Paused,
            _ => return Err(format!("the rollout is {}; only a Running rollout can be paused", phase.as_str())),
        },
        RolloutAction::Resume => match phase {
            RolloutPhase::Running if !state.awaiting_approval => return Ok(None),
            RolloutPhase::Running | RolloutPhase::Paused => {
                next.phase = RolloutPhase::Running;
                if state.awaiting_approval {
                    next.awaiting_approval = false;
                    next.start_wave(state.current_wave + 1, now);
                }
            }
            _ => return Err(format!("the rollout is {}; only a Paused rollout can be resumed", phase.as_str())),
        },
        RolloutAction::Cancel => match phase {
            RolloutPhase::Cancelled => return Ok(None),
            RolloutPhase::Running | RolloutPhase::Paused => {
                next.end(
                    RolloutPhase::Cancelled,
                    format!("cancelled by an operator in wave {}", state.current_wave + 1),
                    now,
                );
            }
            _ => {
                return Err(format!(
                    "the rollout is {}; only a Running or Paused rollout can be cancelled",
                    phase.as_str()
                ));
            }
        },
        RolloutAction::Rollback => match (phase, &state.rollback) {
            (_, Some(_)) => return Ok(None),
            (RolloutPhase::Aborted | RolloutPhase::Cancelled, None) => next.request_rollback(now),
            _ => {
                return Err(format!(
                    "the rollout is {}; only an Aborted or Cancelled rollout can be rolled back",
                    phase.as_str()
                ));
            }
        },
    }
    Ok(Some(next))
}

impl RolloutState {
    /// Applies a controller decision.
    pub fn apply(&mut self, transition: &Transition, now: Timestamp) {
        match transition {
            Transition::StartWave(n) => {
                self.end_wave(now);
                self.start_wave(*n, now);
            }
            Transition::AwaitApproval => {
                self.end_wave(now);
                self.awaiting_approval = true;
                self.phase = RolloutPhase::Paused;
            }
            Transition::Complete => {
                self.end_wave(now);
                self.phase = RolloutPhase::Completed;
            }
            Transition::Abort(reason) => {
                self.end(RolloutPhase::Aborted, reason.clone(), now);
                if self.spec.on_abort == OnAbort::Rollback {
                    self.request_rollback(now);
                }
            }
        }
    }

    fn end_wave(&mut self, now: Timestamp) {
        if let Some(w) = self.waves.get_mut(self.current_wave as usize)
            && w.ended_at.is_none()
        {
            w.ended_at = Some(now);
        }
    }

    fn start_wave(&mut self, n: u32, now: Timestamp) {
        self.current_wave = n;
        if let Some(w) = self.waves.get_mut(n as usize) {
            w.started_at = Some(now);
        }
    }

    fn end(&mut self, phase: RolloutPhase, reason: String, now: Timestamp) {
        self.end_wave(now);
        self.phase = phase;
        self.awaiting_approval = false;
        self.reason = Some(reason);
    }

    fn request_rollback(&mut self, now: Timestamp) {
        self.rollback = Some(RollbackRecord { requested_at: now, task_ids: Vec::new(), created: false });
    }

    /// The status message of a rollout that stopped.
    pub fn status_message(&self) -> Option<String> {
        match self.phase {
            RolloutPhase::Aborted => self.reason.as_ref().map(|r| format!("Rollout aborted: {r}")),
            RolloutPhase::Cancelled => self.reason.as_ref().map(|r| format!("Rollout {r}")),
            _ => None,
        }
    }
}

/// The id of the `n`th rollback task of `task`.
pub fn rollback_task_id(task: &TaskId, n: usize) -> TaskId {
    TaskId::from_text(&format!("{}-rollback-{}", task.as_str(), n + 1))
}

/// Events of a rollout, through the outbox (CDF naming style).
pub const WAVE_STARTED_EVENT: &str = "DeploymentTask Wave Started Event";
pub const ROLLOUT_PAUSED_EVENT: &str = "DeploymentTask Paused Event";
pub const ROLLOUT_RESUMED_EVENT: &str = "DeploymentTask Resumed Event";
pub const ROLLOUT_ABORTED_EVENT: &str = "DeploymentTask Aborted Event";
pub const ROLLOUT_CANCELLED_EVENT: &str = "DeploymentTask Cancelled Event";
pub const ROLLBACK_STARTED_EVENT: &str = "DeploymentTask Rollback Started Event";
pub const TASK_COMPLETED_EVENT: &str = "DeploymentTask Completed Event";

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(waves: &[u32]) -> RolloutSpec {
        RolloutSpec {
            waves: waves.iter().map(|p| WaveStep { percent: Some(*p), count: None }).collect(),
            success_threshold: None,
            failure_threshold: None,
            wave_timeout_secs: None,
            approval: Approval::Auto,
            on_abort: OnAbort::Stop,
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    #[test]
    fn waves_are_cumulative_and_the_last_takes_the_rest() {
        assert_eq!(spec(&[10, 50, 100]).plan(1000), vec![100, 400, 500]);
        assert_eq!(spec(&[1, 10, 100]).plan(7), vec![1, 0, 6]);
        let mixed = RolloutSpec {
            waves: vec![WaveStep { percent: None, count: Some(5) }, WaveStep { percent: Some(100), count: None }],
            ..spec(&[])
        };
        assert_eq!(mixed.plan(3), vec![3, 0]);
        assert_eq!(spec(&[50, 100]).assign(3), vec![0, 0, 1]);
    }

    #[test]
    fn invalid_rollouts_name_the_field() {
        let fields = |s: &RolloutSpec, n| s.check(n).unwrap_err().iter().map(|p| p.field.clone()).collect::<Vec<_>>();
        assert_eq!(fields(&spec(&[]), None), vec!["rollout.waves"]);
        assert_eq!(fields(&spec(&[0, 100]), None), vec!["rollout.waves[0].percent"]);
        assert_eq!(fields(&spec(&[50, 40, 100]), None), vec!["rollout.waves[1]"]);
        assert_eq!(fields(&spec(&[10, 50]), None), vec!["rollout.waves[1]"]);
        let counts = RolloutSpec { waves: vec![WaveStep { percent: None, count: Some(3) }], ..spec(&[]) };
        assert!(counts.check(Some(3)).is_ok());
        assert_eq!(fields(&counts, Some(4)), vec!["rollout.waves[0]"]);
        let bad = RolloutSpec { success_threshold: Some(1.5), wave_timeout_secs: Some(0), ..spec(&[100]) };
        assert_eq!(fields(&bad, None), vec!["rollout.successThreshold", "rollout.waveTimeoutSecs"]);
        assert!(spec(&[1, 10, 100]).check(None).is_ok());
    }

    fn item(wave: u32, status: TaskStatus, state: Option<DeploymentState>) -> RolloutItem {
        RolloutItem {
            name: ThingName::parse(&format!("c{}", fastrand::u32(..))).unwrap(),
            wave,
            status,
            report: None,
            previous: None,
            core: state.map(|s| CoreDeploymentView { desired: tpl(), state: s, message: None }),
        }
    }

    fn tpl() -> TemplateRef {
        TemplateRef { name: "t".into(), version: 2 }
    }

    #[test]
    fn the_next_wave_starts_when_the_success_threshold_is_met() {
        let mut s = spec(&[50, 100]);
        s.success_threshold = Some(0.5);
        let state = RolloutState::start(s, &[4, 4], at(0));
        let mut items: Vec<_> =
            (0..4).map(|_| item(0, TaskStatus::Success, Some(DeploymentState::InProgress))).collect();
        items.extend((0..4).map(|_| item(1, TaskStatus::Waiting, None)));
        let (t, _) = tally(&state, &tpl(), &items, at(1));
        assert_eq!(decide(&state, &t), None, "nothing reported yet");
        items[0].core.as_mut().unwrap().state = DeploymentState::Success;
        items[1].core.as_mut().unwrap().state = DeploymentState::Success;
        let (t, reports) = tally(&state, &tpl(), &items, at(1));
        assert_eq!(reports.len(), 2);
        assert_eq!(decide(&state, &t), Some(Transition::StartWave(1)));
    }

    #[test]
    fn failures_past_the_threshold_abort_and_a_wave_that_cannot_succeed_aborts() {
        let mut s = spec(&[50, 100]);
        s.failure_threshold = Some(FailureThreshold { percent: Some(10.0), count: None });
        let state = RolloutState::start(s, &[10, 10], at(0));
        let mut items: Vec<_> = (0..10).map(|_| item(0, TaskStatus::Success, Some(DeploymentState::Success))).collect();
        items[0].core.as_mut().unwrap().state = DeploymentState::Failed;
        let (t, _) = tally(&state, &tpl(), &items, at(1));
        // 1 of 20 is 5 %: under the threshold, but wave 1 needs all 10 (default threshold 1).
        let Some(Transition::Abort(reason)) = decide(&state, &t) else { panic!("{t:?}") };
        assert!(reason.contains("success threshold not reached in wave 1: 9 of 10"), "{reason}");
        items[1].core.as_mut().unwrap().state = DeploymentState::Failed;
        items[2].status = TaskStatus::Failure;
        let (t, _) = tally(&state, &tpl(), &items, at(1));
        let Some(Transition::Abort(reason)) = decide(&state, &t) else { panic!() };
        assert!(reason.contains("3 of 20 cores failed (15.0 %), more than the 10 % allowed"), "{reason}");
    }

    #[test]
    fn silent_cores_time_out_and_cores_moved_by_another_task_fail() {
        let mut s = spec(&[100]);
        s.wave_timeout_secs = Some(5);
        let state = RolloutState::start(s, &[2], at(0));
        let mut items = vec![
            item(0, TaskStatus::Success, Some(DeploymentState::InProgress)),
            item(0, TaskStatus::Success, Some(DeploymentState::Success)),
        ];
        items[1].core.as_mut().unwrap().desired = TemplateRef { name: "t".into(), version: 3 };
        let (t, _) = tally(&state, &tpl(), &items, at(4_999));
        assert_eq!((t[0].pending, t[0].failed), (1, 1));
        let (t, _) = tally(&state, &tpl(), &items, at(5_000));
        assert_eq!((t[0].timed_out, t[0].failed, t[0].pending), (1, 2, 0));
    }

    #[test]
    fn manual_approval_pauses_and_resume_starts_the_next_wave() {
        let mut s = spec(&[50, 100]);
        s.approval = Approval::Manual;
        let mut state = RolloutState::start(s, &[1, 1], at(0));
        let items =
            vec![item(0, TaskStatus::Success, Some(DeploymentState::Success)), item(1, TaskStatus::Waiting, None)];
        let (t, _) = tally(&state, &tpl(), &items, at(1));
        let next = decide(&state, &t).unwrap();
        assert_eq!(next, Transition::AwaitApproval);
        state.apply(&next, at(2));
        assert_eq!((state.phase, state.current_wave, state.may_move(1)), (RolloutPhase::Paused, 0, false));
        let resumed = apply_action(&state, RolloutAction::Resume, at(3)).unwrap().unwrap();
        assert_eq!((resumed.phase, resumed.current_wave, resumed.may_move(1)), (RolloutPhase::Running, 1, true));
        assert_eq!(apply_action(&resumed, RolloutAction::Resume, at(4)), Ok(None), "idempotent");
        assert!(apply_action(&resumed, RolloutAction::Rollback, at(4)).unwrap_err().contains("Running"));
    }

    #[test]
    fn an_abort_with_rollback_requests_it_and_ends_the_task_failed() {
        let mut s = spec(&[100]);
        s.on_abort = OnAbort::Rollback;
        let mut state = RolloutState::start(s, &[1], at(0));
        state.apply(&Transition::Abort("x".into()), at(1));
        assert!(state.rollback.is_some() && state.is_active());
        assert_eq!(state.task_status(TaskStatus::Success), TaskStatus::Failure);
        assert_eq!(state.status_message().as_deref(), Some("Rollout aborted: x"));
    }
}
