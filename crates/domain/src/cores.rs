//! Greengrass cores as ggprov records them, and the core tasks that provision and delete them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::deployment_state::{DeploymentState, DeploymentStatus};
use crate::provisioning::CdfProvisioningParameters;
use crate::rollout::RolloutState;
use crate::task::{ItemCounts, TaskId, TaskStatus, TaskType};
use crate::thing::ThingName;
use crate::time::Timestamp;

/// The template name of a core that has none yet.
pub const NO_TEMPLATE: &str = "None";

/// A core to provision or delete, as submitted in `POST /coreTasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCore {
    pub name: ThingName,
    pub provisioning_template: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provisioning_parameters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdf_provisioning_parameters: Option<CdfProvisioningParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file_generator: Option<String>,
}

impl NewCore {
    /// An item naming only its thing and provisioning template.
    pub fn for_thing(name: ThingName, provisioning_template: String) -> Self {
        Self {
            name,
            provisioning_template,
            provisioning_parameters: BTreeMap::new(),
            cdf_provisioning_parameters: None,
            config_file_generator: None,
        }
    }
}

/// Options of a core task (`Delete` uses them; `Create` stores them as given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreTaskOptions {
    /// Also delete the cores' things, certificates and policies.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_bool")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub deprovision_cores: Option<bool>,
    /// Also delete the things of the cores' client devices.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_bool")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub deprovision_client_devices: Option<bool>,
}

/// A flag that is either left out or `true`/`false`: `null` is refused, so that "at least one
/// option" means one that was set.
fn present_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(deserializer).map(Some)
}

/// What a task works on.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// A core task (`POST /coreTasks`).
    Core,
    /// A client-device task of a core (`POST /cores/{coreName}/deviceTasks`).
    Device { core_name: ThingName },
    /// A deployment task (`POST /deploymentTasks`); its items (cores) exist once its targets
    /// are expanded.
    Deployment(DeploymentSpec),
    /// A certificate rotation task (`POST /certificateRotationTasks`); its items are cores.
    Rotation(crate::rotation::RotationSpec),
}

/// What a deployment task deploys where.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    /// The resolved template version.
    pub template: TemplateRef,
    /// The targets as submitted (`thingNames`, `thingGroupNames`).
    pub targets: serde_json::Value,
    /// Stored and echoed, as in the original; the template's `jobConfig` is what is deployed.
    pub iot_job_config: Option<serde_json::Value>,
    /// Whether the targets have been expanded into cores.
    pub expanded: bool,
    pub batches_total: Option<u32>,
    /// Cores per batch, once expanded (batches are consecutive runs of cores by name).
    pub batch_size: Option<u32>,
    /// A staged rollout (absent: every core moves at once).
    pub rollout: Option<Box<RolloutState>>,
    /// The Greengrass deployment revision a retry task created for itself.
    pub revision: Option<String>,
}

impl DeploymentSpec {
    /// The task whose failed cores this task retries (`targets.retryOf`).
    pub fn retry_of(&self) -> Option<TaskId> {
        self.targets.get("retryOf").and_then(|v| v.as_str()).map(TaskId::from_text)
    }

    /// The task whose moved cores this task moves back (`targets.rollbackOf`).
    pub fn rollback_of(&self) -> Option<TaskId> {
        self.targets.get("rollbackOf").and_then(|v| v.as_str()).map(TaskId::from_text)
    }
}

/// The three families of tasks, each listed and read through its own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFamily {
    Core,
    Device,
    Deployment,
    Rotation,
}

impl TaskFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Device => "device",
            Self::Deployment => "deployment",
            Self::Rotation => "rotation",
        }
    }
}

impl TaskKind {
    /// The kind of thing the task's items own while open (deployment items own nothing: they
    /// move existing cores between groups).
    pub fn owns(&self) -> Option<crate::thing::ThingKind> {
        match self {
            Self::Core | Self::Rotation(_) => Some(crate::thing::ThingKind::Core),
            Self::Device { .. } => Some(crate::thing::ThingKind::Device),
            Self::Deployment(_) => None,
        }
    }

    pub fn family(&self) -> TaskFamily {
        match self {
            Self::Core => TaskFamily::Core,
            Self::Device { .. } => TaskFamily::Device,
            Self::Deployment(_) => TaskFamily::Deployment,
            Self::Rotation(_) => TaskFamily::Rotation,
        }
    }
}

/// A task (core or client-device) with its items.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub kind: TaskKind,
    pub task_type: TaskType,
    /// The nucleus version of a core task (empty for device tasks).
    pub core_version: String,
    pub options: Option<CoreTaskOptions>,
    pub items: Vec<TaskItem<NewCore>>,
    pub status: TaskStatus,
    pub status_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl Task {
    /// A new deployment task of `template` on `targets`, its targets not expanded yet.
    pub fn new_deployment(
        id: TaskId,
        template: TemplateRef,
        targets: serde_json::Value,
        iot_job_config: Option<serde_json::Value>,
        rollout: Option<Box<RolloutState>>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            kind: TaskKind::Deployment(DeploymentSpec {
                template,
                targets,
                iot_job_config,
                expanded: false,
                batches_total: None,
                batch_size: None,
                rollout,
                revision: None,
            }),
            task_type: TaskType::Create,
            core_version: String::new(),
            options: None,
            items: Vec::new(),
            status: TaskStatus::Waiting,
            status_message: None,
            created_at: now,
            updated_at: None,
        }
    }

    /// A task's status, the one rule every store applies: a deployment task whose targets are
    /// not expanded yet is `Waiting`; a task that ended with a message and no items (targets
    /// that matched nothing) is `Failure`; otherwise its items decide.
    /// The rollout state of a task that has one (a deployment or certificate rotation task).
    pub fn rollout(&self) -> Option<&crate::rollout::RolloutState> {
        match &self.kind {
            TaskKind::Deployment(spec) => spec.rollout.as_deref(),
            TaskKind::Rotation(spec) => spec.rollout.as_deref(),
            TaskKind::Core | TaskKind::Device { .. } => None,
        }
    }

    /// The wave of each item of a task whose waves are decided when it is stored (a
    /// certificate rotation task with a rollout: items in name order, by its plan).
    pub fn item_waves(&self) -> Option<std::collections::BTreeMap<ThingName, u32>> {
        match &self.kind {
            TaskKind::Rotation(spec) => {
                spec.rollout.as_ref().map(|state| state.spec.assign_by_name(self.items.iter().map(|i| &i.name)))
            }
            _ => None,
        }
    }

    /// Events that storing the task makes true, for the store to write with it: a rotation
    /// with waves starts its first wave as it is stored (a deployment's first wave starts when
    /// its targets are expanded, which writes that event).
    pub fn creation_events(&self) -> Vec<Event> {
        match (&self.kind, self.rollout()) {
            (TaskKind::Rotation(_), Some(state)) if state.is_active() => {
                let wave = state.current_wave;
                vec![Event {
                    detail_type: crate::rotation::rollout_event(crate::rollout::WAVE_STARTED_EVENT),
                    detail: serde_json::json!({
                        "taskId": self.id.as_str(),
                        "wave": wave + 1,
                        "waves": state.waves.len(),
                        "planned": state.waves.get(wave as usize).map_or(0, |w| w.planned),
                    }),
                }]
            }
            _ => Vec::new(),
        }
    }

    pub fn derive_status(kind: &TaskKind, counts: &ItemCounts, status_message: Option<&str>) -> TaskStatus {
        match kind {
            TaskKind::Deployment(spec) if !spec.expanded => TaskStatus::Waiting,
            _ if counts.total == 0 && status_message.is_some() => TaskStatus::Failure,
            TaskKind::Deployment(DeploymentSpec { rollout: Some(rollout), .. })
            | TaskKind::Rotation(crate::rotation::RotationSpec { rollout: Some(rollout), .. }) => {
                rollout.task_status(counts.task_status())
            }
            _ => counts.task_status(),
        }
    }
}

/// One item of a task: the request, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskItem<R> {
    pub name: ThingName,
    pub request: R,
    pub status: TaskStatus,
    pub status_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// A stored artifact (certs bundle, installer config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub bucket: String,
    pub key: String,
    pub created_at: Timestamp,
}

/// A template and version a core should run or reports running.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateRef {
    pub name: String,
    pub version: u32,
}

impl TemplateRef {
    pub fn none() -> Self {
        Self { name: NO_TEMPLATE.to_owned(), version: 0 }
    }
}

/// A core ggprov has provisioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Core {
    pub name: ThingName,
    pub provisioning_template: String,
    pub desired: TemplateRef,
    pub reported: TemplateRef,
    /// `None` until a deployment is assigned; then how its last deployment stands.
    pub deployment_status: DeploymentStatus,
    pub deployment_status_message: Option<String>,
    pub artifacts: BTreeMap<String, Artifact>,
    /// The Greengrass deployment of the desired template version.
    pub desired_deployment_id: Option<String>,
    /// When the deployment state last changed (older reports are ignored).
    pub status_at: Option<Timestamp>,
    /// The nucleus and platform the core runs, as far as ggprov knows ([`crate::software`]).
    #[serde(default)]
    pub software: crate::software::CoreSoftware,
    /// The certificate the core's thing holds (absent for cores recorded before the inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::certificates::CertificateInfo>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// The counters of one template version in the fleet summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VersionCounts {
    pub desired_in_use: i64,
    pub reported_in_use: i64,
    pub last_deployment_success: i64,
    pub last_deployment_failed: i64,
    pub last_deployment_in_progress: i64,
}

impl VersionCounts {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl Core {
    /// A freshly provisioned core with no template.
    pub fn new(name: ThingName, provisioning_template: String, now: Timestamp) -> Self {
        Self {
            name,
            provisioning_template,
            desired: TemplateRef::none(),
            reported: TemplateRef::none(),
            deployment_status: DeploymentStatus::None,
            deployment_status_message: None,
            artifacts: BTreeMap::new(),
            desired_deployment_id: None,
            status_at: None,
            software: crate::software::CoreSoftware::default(),
            certificate: None,
            created_at: now,
            updated_at: Some(now),
        }
    }
}

/// A client device ggprov has provisioned and associated with a core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: ThingName,
    pub core_name: ThingName,
    pub provisioning_template: String,
    pub artifacts: BTreeMap<String, Artifact>,
    /// The certificate the device's thing holds (absent for devices recorded before the inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::certificates::CertificateInfo>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// An event for EventBridge subscribers, written to the outbox with the state change it reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// EventBridge `detail-type`, e.g. `Core Created Event`.
    pub detail_type: String,
    pub detail: serde_json::Value,
}

impl Event {
    /// `Core Created Event` / `Core Deleted Event` payload (reference section 5).
    pub fn core(detail_type: &str, core: &ThingName, task_id: &TaskId, failure: Option<&str>) -> Self {
        let mut detail = serde_json::json!({
            "coreName": core.as_str(),
            "taskId": task_id.as_str(),
            "status": if failure.is_some() { "failed" } else { "success" },
        });
        if let Some(message) = failure {
            detail["message"] = serde_json::Value::String(message.to_owned());
        }
        Self { detail_type: detail_type.to_owned(), detail }
    }
}

impl Event {
    /// `Device Created Event` / `Device Deleted Event` payload (reference section 5).
    pub fn device(detail_type: &str, device: &ThingName, task_id: Option<&TaskId>, failure: Option<&str>) -> Self {
        let mut detail = serde_json::json!({
            "deviceName": device.as_str(),
            "status": if failure.is_some() { "failed" } else { "success" },
        });
        if let Some(task) = task_id {
            detail["taskId"] = serde_json::Value::String(task.as_str().to_owned());
        }
        if let Some(message) = failure {
            detail["message"] = serde_json::Value::String(message.to_owned());
        }
        Self { detail_type: detail_type.to_owned(), detail }
    }
}

/// An event as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub sequence: u64,
    pub event: Event,
    pub time: Timestamp,
}

pub const CORE_CREATED_EVENT: &str = "Core Created Event";
pub const CORE_DELETED_EVENT: &str = "Core Deleted Event";
pub const DEVICE_CREATED_EVENT: &str = "Device Created Event";
pub const DEVICE_DELETED_EVENT: &str = "Device Deleted Event";
pub const CORE_TEMPLATE_UPDATED_EVENT: &str = "Core Template Updated Event";
pub const DEPLOYMENT_TASK_CREATED_EVENT: &str = "DeploymentTask Created Event";
