//! Core tasks: `POST /coreTasks`, `GET /coreTasks`, `GET /coreTasks/{taskId}`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ggprov_domain::core_task_service::NewCoreTask;
use ggprov_domain::cores::{CoreTaskOptions, Task};
use ggprov_domain::provisioning::CdfProvisioningParameters;
use ggprov_domain::{ComponentVersion, Problems, TaskId, TaskType, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, parse_count};
use crate::records::{
    ItemFields, LastEvaluatedTaskId, TaskCoreResource, TaskTypeName, parse_items, parse_task_type, task_headers,
};
use crate::state::AppState;

const TAG: &str = "Core tasks";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_core_task, list_core_tasks))
        .routes(routes!(get_core_task))
        .routes(routes!(retry_core_task))
}

/// `POST /coreTasks`: provision (`Create`) or delete (`Delete`) cores in bulk.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewCoreTaskBody {
    /// `Create` or `Delete`.
    #[schema(required, nullable = false, value_type = TaskTypeName, example = "Create")]
    r#type: Option<String>,
    /// Greengrass nucleus version for the installer config, e.g. `2.12.0` (required for both
    /// types, unless `template` names a template with a nucleus).
    #[schema(
        nullable = false,
        example = "2.12.0",
        pattern = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-+][0-9A-Za-z-]+([.+][0-9A-Za-z-]+)*)?$",
        max_length = 64
    )]
    core_version: Option<String>,
    /// The cores, 1 to 10,000 with distinct names.
    #[schema(required, nullable = false, min_items = 1, max_items = 10000)]
    cores: Option<Vec<NewCoreBody>>,
    /// Required for `Delete`, with at least one of its settings.
    options: Option<CoreTaskOptions>,
    /// ggprov extension: the template these cores will run. Its nucleus version is the
    /// installer config's when `coreVersion` is absent; when both are given and differ, the
    /// answer carries a `Warning` (the template's first deployment will change the nucleus).
    #[schema(nullable = false, example = "edge_cameras", min_length = 1)]
    template: Option<String>,
    /// With `template`: its version (default: the latest).
    #[schema(nullable = false, minimum = 1)]
    template_version: Option<u32>,
}

impl crate::body_schema::BodySchema for NewCoreTaskBody {
    const SCHEMA: Option<&'static str> = Some("NewCoreTaskBody");
}

/// A core in a core task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewCoreBody {
    /// Thing name: `[a-zA-Z0-9:_-]{1,128}`.
    #[schema(
        required,
        nullable = false,
        example = "core-0001",
        pattern = "^[a-zA-Z0-9:_-]+$",
        min_length = 1,
        max_length = 128
    )]
    name: Option<String>,
    /// Provisioning template name, e.g. `greengrass2_core` (required for `Delete` too, unused there).
    #[schema(required, nullable = false, example = "greengrass2_core", min_length = 1)]
    provisioning_template: Option<String>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    provisioning_parameters: Option<BTreeMap<String, String>>,
    cdf_provisioning_parameters: Option<CdfProvisioningParameters>,
    /// `MANUAL_INSTALL` or `FLEET_PROVISIONING`; absent: no installer config.
    config_file_generator: Option<String>,
}

impl NewCoreTaskBody {
    /// `template_nucleus`: the nucleus version of `template`, used when `coreVersion` is absent.
    fn into_domain(self, template_nucleus: Option<String>) -> Result<NewCoreTask, ApiError> {
        let mut problems = Problems::new();
        let core_version = match self.core_version.or(template_nucleus) {
            Some(v) => problems.check("coreVersion", ComponentVersion::parse(&v).map(|_| v.clone())),
            None if self.template.is_some() => {
                problems.add("coreVersion", "is required: the template has no nucleus component to take it from");
                None
            }
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
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) count: Option<String>,
    /// `pagination.lastEvaluated.taskId` of the previous page.
    pub(crate) exclusive_start_task_id: Option<String>,
}

/// Submit a core task. Everything is validated first (400 with `details`, nothing stored);
/// the task is then stored and queued, and processed asynchronously.
#[utoipa::path(
    post, path = "/coreTasks", tag = TAG, operation_id = "createCoreTask",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]+$", min_length = 1, max_length = 255, description = "Optional. The same key with the same request within 24 h gets the first answer again (same task id); with another request, 422 IDEMPOTENCY_KEY_REUSED; while the first is still being answered, 409 IDEMPOTENT_REQUEST_IN_PROGRESS.")),
    request_body(content((NewCoreTaskBody = "application/vnd.aws-cdf-v1.0+json"), (NewCoreTaskBody = "application/json"))),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/coreTasks/{taskId}`"),
            ("x-taskid" = String, description = "the task id"),
            ("warning" = String, description = "`299 ggprov \"...\"` when `coreVersion` differs from the nucleus of `template`"),
        )),
        (status = 400, description = "Invalid task (`coreVersion` or `template` is required)", body = ErrorBody),
        (status = 404, description = "TEMPLATE_NOT_FOUND: `template` names no template (or version)", body = ErrorBody),
        (status = 409, description = "`THING_BUSY`: a named thing has an open item in another task (its id is in `details`); submit again when that task has ended; or IDEMPOTENT_REQUEST_IN_PROGRESS: a request with this Idempotency-Key is still being answered (Retry-After)", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used for another request; or `VALIDATION_FAILED` for a rule the schema cannot state: a name listed twice, a provisioning template, its parameters or a CA that do not fit, a thing that is a client device, a `template` without a nucleus and no `coreVersion`", body = ErrorBody),
    )
)]
pub(crate) async fn create_core_task(
    State(state): State<AppState>,
    CdfJson(body): CdfJson<NewCoreTaskBody>,
) -> Result<Response, ApiError> {
    let mut warning = None;
    let template_nucleus = match &body.template {
        Some(name) => {
            let not_found = || ApiError::not_found("TEMPLATE_NOT_FOUND", format!("template '{name}' does not exist"));
            let parsed = ggprov_domain::TemplateName::parse(name).map_err(|_| not_found())?;
            let version = body.template_version.map_or_else(|| "current".to_owned(), |v| v.to_string());
            let template = state.templates.get_version(&parsed, &version).await?;
            let nucleus = ggprov_domain::software::Nucleus::of_components(template.spec.components());
            if let (Some(given), Some(n)) = (&body.core_version, &nucleus)
                && *given != n.version
            {
                warning = Some(format!(
                    "coreVersion {given} differs from {} {} of template {name} version {}: the template's first deployment will change the nucleus",
                    n.component, n.version, template.version
                ));
            }
            if nucleus.is_none() && body.core_version.is_none() {
                return Err(ApiError::unprocessable(vec![ggprov_domain::FieldProblem {
                    field: "coreVersion".into(),
                    problem: format!(
                        "is required: template {name} version {} has no nucleus component to take it from",
                        template.version
                    ),
                }]));
            }
            nucleus.map(|n| n.version)
        }
        None => None,
    };
    let task = state.core_tasks.submit(body.into_domain(template_nucleus)?).await?;
    let mut headers = task_headers("/coreTasks", &task.id);
    if let Some(text) = warning {
        let value = format!("299 ggprov \"{}\"", text.replace('"', "'"));
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(axum::http::header::WARNING, value);
        }
    }
    Ok((StatusCode::ACCEPTED, headers).into_response())
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

/// Retry only what failed: a new core task (same type, options and nucleus version) holding
/// only the cores of a finished task whose item failed.
#[utoipa::path(
    post, path = "/coreTasks/{taskId}/retry", tag = TAG, operation_id = "retryCoreTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/coreTasks/{taskId}` of the new task"),
            ("x-taskid" = String, description = "the new task's id"),
        )),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "TASK_NOT_FINISHED, NOTHING_TO_RETRY, or THING_BUSY (a core has an open item in another task)", body = ErrorBody),
    )
)]
pub(crate) async fn retry_core_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = state.core_tasks.retry(&TaskId::from_text(&id), ggprov_domain::cores::TaskFamily::Core).await?;
    Ok((StatusCode::ACCEPTED, task_headers("/coreTasks", &task.id)).into_response())
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
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|id| LastEvaluatedTaskId::new(id.as_str()))),
    }))
}
