//! Greengrass cores as ggprov records them, and the core tasks that provision and delete them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provisioning::CdfProvisioningParameters;
use crate::task::{TaskId, TaskStatus, TaskType};
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

/// Options of a core task (`Delete` uses them; `Create` stores them as given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreTaskOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovision_cores: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovision_client_devices: Option<bool>,
}

/// What a task works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// A core task (`POST /coreTasks`).
    Core,
    /// A client-device task of a core (`POST /cores/{coreName}/deviceTasks`).
    Device { core_name: ThingName },
}

impl TaskKind {
    pub fn is_core(&self) -> bool {
        matches!(self, Self::Core)
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

/// One item of a task: the request, and how far it got.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct Core {
    pub name: ThingName,
    pub provisioning_template: String,
    pub desired: TemplateRef,
    pub reported: TemplateRef,
    /// `None` until a deployment outcome is known; then a Greengrass status or `Failure`.
    pub deployment_status: String,
    pub deployment_status_message: Option<String>,
    pub artifacts: BTreeMap<String, Artifact>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl Core {
    /// A freshly provisioned core with no template.
    pub fn new(name: ThingName, provisioning_template: String, now: Timestamp) -> Self {
        Self {
            name,
            provisioning_template,
            desired: TemplateRef::none(),
            reported: TemplateRef::none(),
            deployment_status: NO_TEMPLATE.to_owned(),
            deployment_status_message: None,
            artifacts: BTreeMap::new(),
            created_at: now,
            updated_at: Some(now),
        }
    }
}

/// A client device ggprov has provisioned and associated with a core.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: ThingName,
    pub core_name: ThingName,
    pub provisioning_template: String,
    pub artifacts: BTreeMap<String, Artifact>,
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
