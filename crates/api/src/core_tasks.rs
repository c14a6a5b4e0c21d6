//! Core tasks: `POST /coreTasks`, `GET /coreTasks`, `GET /coreTasks/{taskId}`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ggprov_domain::core_task_service::NewCoreTask;
use ggprov_domain::cores::{CoreTaskOptions, NewCore, Task};
use ggprov_domain::provisioning::CdfProvisioningParameters;
use ggprov_domain::{ComponentVersion, Problems, TaskId, TaskType, ThingName, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, parse_count};
use crate::state::AppState;

const TAG: &str = "Core tasks";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_core_task, list_core_tasks)).routes(routes!(get_core_task))
}

/// `POST /coreTasks`: provision (`Create`) or delete (`Delete`) cores in bulk.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewCoreTaskBody {
    /// `Create` or `Delete`.
    #[schema(required, example = "Create")]
    r#type: Option<String>,
    /// Greengrass nucleus version for the installer config, e.g. `2.12.0` (required for both types).
    #[schema(required, example = "2.12.0")]
    core_version: Option<String>,
    #[schema(required)]
    cores: Option<Vec<NewCoreBody>>,
    /// Required for `Delete`.
    options: Option<CoreTaskOptions>,
}

/// A core in a core task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewCoreBody {
    /// Thing name: `[a-zA-Z0-9:_-]{1,128}`.
    #[schema(required, example = "core-0001")]
    name: Option<String>,
    /// Provisioning template name, e.g. `greengrass2_core` (required for `Delete` too, unused there).
    #[schema(required, example = "greengrass2_core")]
    provisioning_template: Option<String>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    provisioning_parameters: Option<BTreeMap<String, String>>,
    #[schema(value_type = Option<Object>)]
    cdf_provisioning_parameters: Option<CdfProvisioningParameters>,
    /// `MANUAL_INSTALL` or `FLEET_PROVISIONING`; absent: no installer config.
    config_file_generator: Option<String>,
}

impl NewCoreTaskBody {
    fn into_domain(self) -> Result<NewCoreTask, ApiError> {
        let mut problems = Problems::new();
        let core_version = match self.core_version {
            Some(v) => problems.check("coreVersion", ComponentVersion::parse(&v).map(|_| v.clone())),
            None => {
                problems.add("coreVersion", "is required: the Greengrass nucleus version, e.g. \"2.12.0\"");
                None
            }
        };
        let task_type = parse_task_type(&mut problems, self.r#type.as_deref(), "core task");
        let cores = parse_items(
            &mut problems,
            "cores",
            self.cores.map(|list| {
                list.into_iter()
                    .map(|c| ItemFields {
                        name: c.name,
                        provisioning_template: c.provisioning_template,
                        provisioning_parameters: c.provisioning_parameters,
                        cdf_provisioning_parameters: c.cdf_provisioning_parameters,
                        config_file_generator: c.config_file_generator,
                    })
                    .collect()
            }),
        );
        if task_type == Some(TaskType::Delete) && self.options.as_ref().is_none_or(|o| o == &CoreTaskOptions::default())
        {
            problems.add(
                "options",
                "is required for Delete: {\"deprovisionCores\": true|false, \"deprovisionClientDevices\": true|false}",
            );
        }
        match (task_type, core_version) {
            (Some(task_type), Some(core_version)) if problems.is_empty() => {
                Ok(NewCoreTask { task_type, core_version, cores, options: self.options })
            }
            _ => Err(ApiError::validation(problems.into_vec())),
        }
    }
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
                    Some(t) if !t.trim().is_empty() => Some(t),
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

/// A core task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CoreTaskResource {
    #[schema(example = "Xk3_9aZq1")]
    id: String,
    #[schema(example = "Create")]
    r#type: String,
    core_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<CoreTaskOptions>,
    /// Per-core status, by name (`[]` in lists).
    cores: Vec<TaskCoreResource>,
    /// `Waiting`, `InProgress`, `Success` or `Failure`.
    task_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl CoreTaskResource {
    fn from_task(task: Task) -> Self {
        Self {
            id: task.id.as_str().to_owned(),
            r#type: task.task_type.as_str().to_owned(),
            core_version: task.core_version,
            options: task.options,
            cores: task.items.into_iter().map(TaskCoreResource::from_item).collect(),
            task_status: task.status.as_str().to_owned(),
            status_message: task.status_message,
            created_at: task.created_at,
            updated_at: task.updated_at,
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

/// `GET /coreTasks`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoreTaskList {
    tasks: Vec<CoreTaskResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<LastEvaluatedTaskId>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListTasksQuery {
    /// Page size, 1 to 1000 (default 1000).
    count: Option<String>,
    /// `pagination.lastEvaluated.taskId` of the previous page.
    exclusive_start_task_id: Option<String>,
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

/// Submit a core task. Everything is validated first (400 with `details`, nothing stored);
/// the task is then stored and queued, and processed asynchronously.
#[utoipa::path(
    post, path = "/coreTasks", tag = TAG, operation_id = "createCoreTask",
    request_body(content((NewCoreTaskBody = "application/vnd.aws-cdf-v1.0+json"), (NewCoreTaskBody = "application/json"))),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/coreTasks/{taskId}`"),
            ("x-taskid" = String, description = "the task id"),
        )),
        (status = 400, description = "Invalid task", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
    )
)]
pub(crate) async fn create_core_task(
    State(state): State<AppState>,
    CdfJson(body): CdfJson<NewCoreTaskBody>,
) -> Result<Response, ApiError> {
    let task = state.core_tasks.submit(body.into_domain()?).await?;
    Ok((StatusCode::ACCEPTED, task_headers("/coreTasks", &task.id)).into_response())
}

/// A core task with the status of each core.
#[utoipa::path(
    get, path = "/coreTasks/{taskId}", tag = TAG, operation_id = "getCoreTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 200, body = CoreTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub(crate) async fn get_core_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<CoreTaskResource>, ApiError> {
    let task = state.core_tasks.get(&TaskId::from_text(&id), ggprov_domain::cores::TaskFamily::Core).await?;
    Ok(Cdf(CoreTaskResource::from_task(task)))
}

/// Core tasks by id (items have `cores: []`).
#[utoipa::path(
    get, path = "/coreTasks", tag = TAG, operation_id = "listCoreTasks",
    params(ListTasksQuery),
    responses(
        (status = 200, body = CoreTaskList, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid `count`", body = ErrorBody),
    )
)]
pub(crate) async fn list_core_tasks(
    State(state): State<AppState>,
    Query(query): Query<ListTasksQuery>,
) -> Result<Cdf<CoreTaskList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let page = state
        .core_tasks
        .list(
            ggprov_domain::cores::TaskFamily::Core,
            count.page(query.exclusive_start_task_id.as_deref().map(TaskId::from_text)),
        )
        .await?;
    Ok(Cdf(CoreTaskList {
        tasks: page.items.into_iter().map(CoreTaskResource::from_task).collect(),
        pagination: Pagination::form_a(
            &count,
            page.last_evaluated.map(|id| LastEvaluatedTaskId { task_id: id.as_str().to_owned() }),
        ),
    }))
}
