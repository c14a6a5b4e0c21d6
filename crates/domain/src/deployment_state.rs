//! The deployment state machine of a core and what a core contributes to the fleet summary.
//!
//! Every rule about a core's deployment lives here: which status a core takes when a
//! deployment task assigns it a template version, when that fails, and when a core reports an
//! outcome (stale reports ignored); which statuses count as failed or in progress; and how a
//! core's record moves the fleet counters. Stores persist the results (conditionally, in one
//! transaction with the counters) and never decide these things themselves.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cores::{Core, NO_TEMPLATE, TemplateRef, VersionCounts};
use crate::ports::DeploymentOutcome;
use crate::software::Nucleus;
use crate::time::Timestamp;

/// The wire text of a deployment in progress.
const IN_PROGRESS: &str = "IN_PROGRESS";
/// The wire text of a successful deployment (Greengrass's own).
const SUCCESSFUL: &str = "SUCCESSFUL";
/// The wire text ggprov records when it could not move a core (the CDF original's).
const FAILURE: &str = "Failure";

/// How a core's last deployment stands, as shown in `deploymentStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum DeploymentStatus {
    /// No deployment assigned yet (`None`).
    None,
    /// A deployment was assigned and the core has not reported it (`IN_PROGRESS`).
    InProgress,
    /// The core reported the desired deployment succeeded (`SUCCESSFUL`).
    Successful,
    /// ggprov could not move the core (`Failure`), or the core reported this Greengrass
    /// failure status (`FAILED_ROLLBACK_COMPLETE`, ...).
    Failed(String),
}

/// The three classes the fleet summary and the listings count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeploymentState {
    /// No failure recorded (`None`, or `SUCCESSFUL`).
    Success,
    Failed,
    InProgress,
}

impl DeploymentState {
    /// A stable lower-case name, for stores that index by class.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
        }
    }
}

impl DeploymentStatus {
    /// A ggprov-side failure (the deployment could not be made).
    pub fn failure() -> Self {
        Self::Failed(FAILURE.to_owned())
    }

    /// The status from its wire text; any text that is not `None`, `IN_PROGRESS` or
    /// `SUCCESSFUL` is a failure status.
    pub fn parse(text: &str) -> Self {
        match text {
            NO_TEMPLATE => Self::None,
            IN_PROGRESS => Self::InProgress,
            SUCCESSFUL => Self::Successful,
            other => Self::Failed(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::None => NO_TEMPLATE,
            Self::InProgress => IN_PROGRESS,
            Self::Successful => SUCCESSFUL,
            Self::Failed(text) => text,
        }
    }

    /// Its class for counting and listing.
    pub fn state(&self) -> DeploymentState {
        match self {
            Self::None | Self::Successful => DeploymentState::Success,
            Self::InProgress => DeploymentState::InProgress,
            Self::Failed(_) => DeploymentState::Failed,
        }
    }
}

impl From<String> for DeploymentStatus {
    fn from(text: String) -> Self {
        Self::parse(&text)
    }
}

impl From<DeploymentStatus> for String {
    fn from(status: DeploymentStatus) -> Self {
        status.as_str().to_owned()
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Core {
    /// The record after a `Create` item provisioned `provisioned`: a core that existed keeps
    /// its template and deployment state; its provisioning details are replaced.
    pub fn reprovisioned(existing: Option<&Core>, provisioned: &Core, now: Timestamp) -> Core {
        let mut after = existing.cloned().unwrap_or_else(|| provisioned.clone());
        after.provisioning_template = provisioned.provisioning_template.clone();
        after.artifacts = provisioned.artifacts.clone();
        after.certificate = provisioned.certificate.clone();
        after.updated_at = Some(now);
        after
    }

    /// A deployment task moved the core into `template`'s deployment: it is desired now and in
    /// progress until the core reports.
    /// Assigning no template (`None`, a rollback to before the first deployment) leaves the
    /// core as provisioning left it: no template desired or reported, nothing in progress.
    /// `nucleus` is the nucleus the template version deploys (the core is updating to it when
    /// it runs another).
    pub fn assign_deployment(
        &mut self,
        template: &TemplateRef,
        deployment_id: &str,
        nucleus: Option<&Nucleus>,
        now: Timestamp,
    ) {
        if template.name == NO_TEMPLATE {
            self.software.updating_to = None;
            self.desired = TemplateRef::none();
            self.reported = TemplateRef::none();
            self.desired_deployment_id = None;
            self.deployment_status = DeploymentStatus::None;
            self.deployment_status_message = None;
            self.status_at = Some(now);
            self.updated_at = Some(now);
            return;
        }
        self.desired = template.clone();
        self.expect_nucleus(nucleus);
        self.desired_deployment_id = Some(deployment_id.to_owned());
        self.deployment_status = DeploymentStatus::InProgress;
        self.deployment_status_message = None;
        self.status_at = Some(now);
        self.updated_at = Some(now);
    }

    /// A deployment task could not move the core.
    pub fn record_deployment_failure(&mut self, message: &str, now: Timestamp) {
        self.software.updating_to = None;
        self.deployment_status = DeploymentStatus::failure();
        self.deployment_status_message = Some(message.to_owned());
        self.status_at = Some(now);
        self.updated_at = Some(now);
    }

    /// Applies an outcome the core reported for a deployment of `template`. Returns `false`
    /// (and changes nothing) when the report is older than the recorded state, or is the
    /// failure of a deployment that is no longer the desired one.
    pub fn apply_outcome(&mut self, outcome: &DeploymentOutcome, template: &TemplateRef) -> bool {
        if self.status_at.is_some_and(|at| outcome.time < at) {
            return false;
        }
        let is_desired = self.desired_deployment_id.as_deref() == Some(outcome.deployment_id.as_str());
        match (is_desired, outcome.succeeded) {
            (true, true) => {
                self.run_nucleus(outcome.nucleus.as_ref());
                self.reported = template.clone();
                self.deployment_status = DeploymentStatus::Successful;
                self.deployment_status_message = None;
                self.status_at = Some(outcome.time);
            }
            (true, false) => {
                // The core rolled back: it runs the nucleus it ran before.
                self.software.updating_to = None;
                // A failed outcome always counts as failed, whatever text it carries.
                self.deployment_status = DeploymentStatus::Failed(outcome.detailed_status.clone());
                self.deployment_status_message = outcome.reason.clone();
                self.status_at = Some(outcome.time);
            }
            // An older deployment finished: the core runs that version now; its desired one is
            // still coming.
            (false, true) => {
                self.run_nucleus(outcome.nucleus.as_ref());
                self.reported = template.clone();
            }
            (false, false) => return false,
        }
        self.updated_at = Some(outcome.time);
        true
    }

    /// What this core adds to the fleet counters.
    pub fn fleet_contribution(&self) -> FleetContribution {
        FleetContribution {
            desired: self.desired.clone(),
            reported: self.reported.clone(),
            state: self.deployment_status.state(),
        }
    }
}

/// What one core adds to the fleet counters: +1 to `desired_in_use` and to one of the
/// last-deployment counters of its desired version, +1 to `reported_in_use` of its reported one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetContribution {
    pub desired: TemplateRef,
    pub reported: TemplateRef,
    pub state: DeploymentState,
}

/// Changes of the fleet counters by template version (a counter of `VersionCounts` per key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetDelta(BTreeMap<(String, u32), VersionCounts>);

impl FleetDelta {
    /// The change when a core record goes from `before` to `after` (either absent: a core
    /// created or deleted). Empty when the contribution did not change.
    pub fn between(before: Option<&Core>, after: Option<&Core>) -> Self {
        let (from, to) = (before.map(Core::fleet_contribution), after.map(Core::fleet_contribution));
        let mut delta = Self::default();
        if from != to {
            if let Some(c) = &from {
                delta.add(c, -1);
            }
            if let Some(c) = &to {
                delta.add(c, 1);
            }
        }
        delta.0.retain(|_, counts| !counts.is_zero());
        delta
    }

    /// The counters of a whole fleet, counted from its core records (the recount).
    pub fn recount<'a>(cores: impl IntoIterator<Item = &'a Core>) -> BTreeMap<(String, u32), VersionCounts> {
        let mut total = Self::default();
        for core in cores {
            total.add(&core.fleet_contribution(), 1);
        }
        total.0.retain(|_, counts| !counts.is_zero());
        total.0
    }

    fn add(&mut self, c: &FleetContribution, sign: i64) {
        let desired = self.0.entry((c.desired.name.clone(), c.desired.version)).or_default();
        desired.desired_in_use += sign;
        match c.state {
            DeploymentState::Success => desired.last_deployment_success += sign,
            DeploymentState::Failed => desired.last_deployment_failed += sign,
            DeploymentState::InProgress => desired.last_deployment_in_progress += sign,
        }
        self.0.entry((c.reported.name.clone(), c.reported.version)).or_default().reported_in_use += sign;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The non-zero changes, by template name and version.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, u32), &VersionCounts)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thing::ThingName;

    fn core() -> Core {
        Core::new(ThingName::parse("c1").unwrap(), "greengrass2_core".into(), Timestamp::from_millis(1_000).unwrap())
    }

    fn outcome(deployment: &str, succeeded: bool, at: i64) -> DeploymentOutcome {
        DeploymentOutcome {
            position: 1,
            core_name: "c1".into(),
            deployment_id: deployment.into(),
            succeeded,
            detailed_status: if succeeded { "SUCCESSFUL".into() } else { "FAILED_ROLLBACK_COMPLETE".into() },
            reason: (!succeeded).then(|| "component broke".into()),
            time: Timestamp::from_millis(at).unwrap(),
            nucleus: None,
        }
    }

    fn tpl(version: u32) -> TemplateRef {
        TemplateRef { name: "t".into(), version }
    }

    #[test]
    fn statuses_keep_their_wire_text_and_class() {
        for (text, state) in [
            ("None", DeploymentState::Success),
            ("SUCCESSFUL", DeploymentState::Success),
            ("IN_PROGRESS", DeploymentState::InProgress),
            ("Failure", DeploymentState::Failed),
            ("FAILED_ROLLBACK_COMPLETE", DeploymentState::Failed),
        ] {
            let status = DeploymentStatus::parse(text);
            assert_eq!((status.as_str(), status.state()), (text, state));
            assert_eq!(serde_json::to_value(&status).unwrap(), serde_json::json!(text));
        }
    }

    #[test]
    fn the_desired_deployment_succeeding_makes_it_reported() {
        let mut c = core();
        c.assign_deployment(&tpl(2), "d2", None, Timestamp::from_millis(2_000).unwrap());
        assert_eq!(c.deployment_status, DeploymentStatus::InProgress);
        assert!(c.apply_outcome(&outcome("d2", true, 3_000), &tpl(2)));
        assert_eq!((c.reported.clone(), c.deployment_status.clone()), (tpl(2), DeploymentStatus::Successful));
    }

    #[test]
    fn stale_reports_and_old_failures_are_ignored() {
        let mut c = core();
        c.assign_deployment(&tpl(2), "d2", None, Timestamp::from_millis(5_000).unwrap());
        assert!(!c.apply_outcome(&outcome("d2", true, 4_000), &tpl(2)), "older than the assignment");
        assert!(!c.apply_outcome(&outcome("d1", false, 6_000), &tpl(1)), "failure of an older deployment");
        assert!(c.apply_outcome(&outcome("d1", true, 6_000), &tpl(1)), "an older deployment finished");
        assert_eq!((c.reported.clone(), c.deployment_status.state()), (tpl(1), DeploymentState::InProgress));
        assert!(c.apply_outcome(&outcome("d2", false, 7_000), &tpl(2)));
        assert_eq!(c.deployment_status, DeploymentStatus::Failed("FAILED_ROLLBACK_COMPLETE".into()));
    }

    #[test]
    fn a_failed_outcome_counts_as_failed_whatever_its_text() {
        let mut c = core();
        c.assign_deployment(&tpl(1), "d1", None, Timestamp::from_millis(2_000).unwrap());
        let mut odd = outcome("d1", false, 3_000);
        odd.detailed_status = "SUCCESSFUL".into();
        assert!(c.apply_outcome(&odd, &tpl(1)));
        assert_eq!(c.deployment_status.state(), DeploymentState::Failed);
    }

    #[test]
    fn fleet_deltas_move_a_core_between_versions_and_classes() {
        let before = core();
        let mut after = before.clone();
        after.assign_deployment(&tpl(1), "d1", None, Timestamp::from_millis(2_000).unwrap());
        let delta = FleetDelta::between(Some(&before), Some(&after));
        let changes: BTreeMap<_, _> = delta.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(changes[&("None".to_owned(), 0)].desired_in_use, -1);
        assert_eq!(changes[&("None".to_owned(), 0)].last_deployment_success, -1);
        assert_eq!(changes[&("t".to_owned(), 1)].desired_in_use, 1);
        assert_eq!(changes[&("t".to_owned(), 1)].last_deployment_in_progress, 1);
        assert!(FleetDelta::between(Some(&after), Some(&after)).is_empty());
        let recount = FleetDelta::recount([&before, &after]);
        assert_eq!(recount[&("None".to_owned(), 0)].reported_in_use, 2);
    }
}
