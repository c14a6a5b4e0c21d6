//! Certificate rotation tasks (`POST /certificateRotationTasks`): for each core, one new
//! certificate whose key is born on the core, registered and attached next to the old one with
//! the same policies, handed to the core, and the old one retired once the core confirms.
//!
//! A rotation is a task like a core task (items, leases, retries, the sweeper); each core's
//! progress is journaled in its provisioning journal ([`RotationJournal`]), written on its
//! revision, so a crash or a second holder resumes instead of repeating: one new certificate
//! per core per task, never two.

use serde::{Deserialize, Serialize};

use crate::provisioning::KeyAlgorithm;
use crate::task::TaskId;

/// EventBridge `detail-type` of a finished rotation (success or failure).
pub const CERTIFICATE_ROTATED_EVENT: &str = "Certificate Rotated";

/// When the old certificate goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum RevokeOld {
    /// Once the core confirms it runs with the new certificate: deactivated, detached from its
    /// policies and the thing, deleted.
    #[default]
    AfterConfirm,
    /// As soon as the new certificate is handed to the core (the core is offline if it cannot
    /// use it).
    Immediately,
    /// Kept ACTIVE and attached; the inventory follows the new one.
    Never,
}

/// What a rotation task does, stored with the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// The targets as submitted.
    pub targets: serde_json::Value,
    /// The CA that signs the new certificates (the default CA when the request named none).
    pub ca_id: String,
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    #[serde(default)]
    pub revoke_old: RevokeOld,
    /// Validity of the new certificates; absent: as long as each old one was valid (365 days
    /// when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_expiry: Option<u32>,
    /// Waves: the cores rotate wave by wave, each when the previous one met its threshold. The
    /// stores keep it beside the task (written on its revision, like a deployment's), not in
    /// this document.
    #[serde(skip)]
    pub rollout: Option<Box<crate::rollout::RolloutState>>,
}

/// The `detail-type` of a rotation rollout's event, from the deployment rollout's
/// (`DeploymentTask Wave Started Event` → `CertificateRotationTask Wave Started Event`).
pub fn rollout_event(deployment_event: &str) -> String {
    deployment_event.replacen("DeploymentTask", "CertificateRotationTask", 1)
}

/// One core's rotation, step by step (in its provisioning journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationJournal {
    /// The task this rotation belongs to: a journal of another task is finished or abandoned.
    pub task_id: TaskId,
    pub old_certificate_id: Option<String>,
    pub old_certificate_arn: Option<String>,
    /// The signed certificate (public), once the core's CSR was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_pem: Option<String>,
    /// The ggprov CA that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// The old certificate's policies are on the new one, and the new one is on the thing.
    #[serde(default)]
    pub attached: bool,
    /// The core has the new certificate.
    #[serde(default)]
    pub delivered: bool,
    /// The old certificate is retired (as `revokeOld` says).
    #[serde(default)]
    pub old_retired: bool,
    /// The core could not use the new certificate: it was retired instead, the old one kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Every step is done and the main journal names the new certificate.
    #[serde(default)]
    pub finished: bool,
    /// When the core was first asked for its CSR: a core that has not answered (CSR or
    /// confirmation) within [`ANSWER_WITHIN`] of it fails its item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<crate::time::Timestamp>,
}

/// How long a core has to send its CSR and confirm its new certificate (a core offline for
/// longer fails its item; a retry of the task asks again).
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How often a worker looks for a core's answer while it waits.
pub const ANSWER_POLL: std::time::Duration = std::time::Duration::from_secs(5);

impl RotationJournal {
    pub fn new(task_id: TaskId, old_id: Option<String>, old_arn: Option<String>) -> Self {
        Self {
            task_id,
            old_certificate_id: old_id,
            old_certificate_arn: old_arn,
            certificate_pem: None,
            ca_certificate_pem: None,
            ca_id: None,
            certificate_id: None,
            certificate_arn: None,
            attached: false,
            delivered: false,
            old_retired: false,
            failed: None,
            finished: false,
            requested_at: Some(crate::time::Timestamp::now()),
        }
    }
}

/// What a core says about a rotation it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// Not reported yet.
    Pending,
    /// The core runs with the certificate (connected with it).
    Confirmed { certificate_id: String },
    /// The core could not use it and went back to its old certificate.
    Failed { reason: String },
}
