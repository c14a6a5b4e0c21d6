//! What several resources share: task and record mapping, item parsing, paging keys, the
//! headers of a created task. One module, so that the resource modules depend on it and never
//! on each other.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use ggprov_domain::cores::{Artifact, NewCore, TaskItem};
use ggprov_domain::provisioning::CdfProvisioningParameters;
use ggprov_domain::{Problems, TaskId, TaskType, ThingName, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// A 400 naming one field.
pub(crate) fn problem(field: &str, problem: String) -> ApiError {
    ApiError::validation(vec![ggprov_domain::FieldProblem { field: field.to_owned(), problem }])
}

/// `type` of a task body: `Create` or `Delete`.
pub(crate) fn parse_task_type(problems: &mut Problems, value: Option<&str>, what: &str) -> Option<TaskType> {
    match value {
        Some("Create") => Some(TaskType::Create),
        Some("Delete") => Some(TaskType::Delete),
        Some(other) => {
            problems.add("type", format!("'{other}' is not a {what} type; use Create or Delete"));
            None
        }
        None => {
            problems.add("type", "is required: Create or Delete");
            None
        }
    }
}

/// The type of a core or device task (the schema of the `type` field).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) enum TaskTypeName {
    Create,
    Delete,
}

/// The fields of a core or client device in a task body.
pub(crate) struct ItemFields {
    pub(crate) name: Option<String>,
    pub(crate) provisioning_template: Option<String>,
    pub(crate) provisioning_parameters: Option<BTreeMap<String, String>>,
    pub(crate) cdf_provisioning_parameters: Option<CdfProvisioningParameters>,
    pub(crate) config_file_generator: Option<String>,
}

/// Checks the items of a task body (`cores` or `devices`), collecting every problem.
pub(crate) fn parse_items(problems: &mut Problems, field: &str, items: Option<Vec<ItemFields>>) -> Vec<NewCore> {
    let mut parsed = Vec::new();
    match items {
        None => problems.add(field, format!("is required: a non-empty list of {field}")),
        Some(list) if list.is_empty() => problems.add(field, format!("must list at least one of the {field}")),
        Some(list) if list.len() > ggprov_domain::task::MAX_TASK_ITEMS => problems.add(
            field,
            format!(
                "lists {} {field}; at most {} per task: split them over several tasks",
                list.len(),
                ggprov_domain::task::MAX_TASK_ITEMS
            ),
        ),
        Some(list) => {
            for (i, item) in list.into_iter().enumerate() {
                let name = match item.name {
                    Some(n) => problems.check(format!("{field}[{i}].name"), ThingName::parse(&n)),
                    None => {
                        problems.add(format!("{field}[{i}].name"), "is required");
                        None
                    }
                };
                let template = match item.provisioning_template {
                    Some(t) if !t.is_empty() => Some(t),
                    _ => {
                        problems.add(
                            format!("{field}[{i}].provisioningTemplate"),
                            "is required (also for Delete, where it is not used)",
                        );
                        None
                    }
                };
                if let (Some(name), Some(provisioning_template)) = (name, template) {
                    parsed.push(NewCore {
                        name,
                        provisioning_template,
                        provisioning_parameters: item.provisioning_parameters.unwrap_or_default(),
                        cdf_provisioning_parameters: item.cdf_provisioning_parameters,
                        config_file_generator: item.config_file_generator,
                    });
                }
            }
        }
    }
    parsed
}

/// The status of one core in a task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskCoreResource {
    name: String,
    #[schema(example = "Success")]
    task_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl TaskCoreResource {
    pub(crate) fn from_item<R>(i: ggprov_domain::cores::TaskItem<R>) -> Self {
        Self {
            name: i.name.as_str().to_owned(),
            task_status: i.status.as_str().to_owned(),
            status_message: i.status_message,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// `lastEvaluated` of task lists.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastEvaluatedTaskId {
    task_id: String,
}

impl LastEvaluatedTaskId {
    pub(crate) fn new(id: &str) -> Self {
        Self { task_id: id.to_owned() }
    }
}

pub(crate) fn task_headers(path: &str, id: &TaskId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, HeaderValue::from_str(&format!("{path}/{id}")).expect("task ids are header-safe"));
    headers.insert(
        HeaderName::from_static("x-taskid"),
        HeaderValue::from_str(id.as_str()).expect("task ids are header-safe"),
    );
    headers
}

/// A stored artifact.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArtifactResource {
    bucket: String,
    key: String,
    #[schema(value_type = String)]
    created_at: Timestamp,
    /// A time-limited download link (AWS mode with `GGPROV_AWS_PRESIGN_SECS`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) download_url: Option<String>,
}

/// `lastEvaluated` of the core list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastEvaluatedThingName {
    thing_name: String,
}

/// Parses a boolean query parameter: `true`/`false` in any letter case.
pub(crate) fn parse_bool(field: &str, value: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(problem(field, format!("'{other}' is not a boolean; use true or false"))),
    }
}

/// One core's record in a deployment task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentRecord {
    core_name: String,
    /// The deployment task (absent in the original; added).
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
    task_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

/// Deployment records of a core, for `GET /cores/{name}/deployments`.
pub(crate) fn core_record(task_id: &TaskId, item: TaskItem<NewCore>) -> DeploymentRecord {
    DeploymentRecord::from_item(item, Some(task_id))
}

impl From<Artifact> for ArtifactResource {
    fn from(a: Artifact) -> Self {
        Self { bucket: a.bucket, key: a.key, created_at: a.created_at, download_url: None }
    }
}

impl LastEvaluatedThingName {
    pub(crate) fn new(name: &str) -> Self {
        Self { thing_name: name.to_owned() }
    }
}

impl DeploymentRecord {
    pub(crate) fn from_item(item: TaskItem<NewCore>, task_id: Option<&TaskId>) -> Self {
        Self {
            core_name: item.name.as_str().to_owned(),
            task_id: task_id.map(|t| t.as_str().to_owned()),
            task_status: item.status.as_str().to_owned(),
            status_message: item.status_message,
            created_at: item.created_at,
            updated_at: item.updated_at,
        }
    }
}
