//! Deployment tasks and the fleet summary: `POST/GET /deploymentTasks`,
//! `GET /deploymentTasks/{taskId}[/cores[/{coreName}]]`, `GET /fleet/summary`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ggprov_domain::cores::{Task, TaskFamily, TaskKind};
use ggprov_domain::deployment_service::{DeploymentTaskError, NewDeploymentTask, TemplateSummary, check_targets};
use ggprov_domain::rollout::{RolloutAction, RolloutPhase, RolloutSpec, RolloutState, WaveTally};
use ggprov_domain::rollout_service::RolloutError;
use ggprov_domain::{FieldProblem, TaskId, ThingName, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, ThingPageQuery, parse_count};
use crate::records::DeploymentRecord;
use crate::records::{LastEvaluatedThingName, task_headers};
use crate::state::AppState;

const TAG: &str = "Deployment tasks";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deployment_task, list_deployment_tasks))
        .routes(routes!(get_deployment_task))
        .routes(routes!(pause_deployment_task))
        .routes(routes!(resume_deployment_task))
        .routes(routes!(cancel_deployment_task))
        .routes(routes!(rollback_deployment_task))
        .routes(routes!(retry_deployment_task))
        .routes(routes!(list_deployment_task_cores))
        .routes(routes!(get_deployment_task_core))
        .routes(routes!(get_fleet_summary))
        .routes(routes!(get_fleet_summary_recount))
}

/// `POST /deploymentTasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewDeploymentTaskBody {
    #[schema(required, nullable = false)]
    template: Option<TemplateRefBody>,
    /// `thingNames` and/or `thingGroupNames` (together at most 256 KiB of JSON).
    #[schema(required, nullable = false, value_type = DeploymentTargets, example = json!({"thingNames": ["core-0001"]}))]
    targets: Option<serde_json::Value>,
    /// Stored and echoed; the template's `jobConfig` is what is deployed.
    #[schema(value_type = Option<Object>)]
    iot_job_config: Option<serde_json::Value>,
    /// A staged rollout: the cores move wave by wave, each wave when the previous one has
    /// reported well enough (absent: every core moves at once).
    #[schema(nullable = false)]
    rollout: Option<RolloutSpec>,
}

impl crate::body_schema::BodySchema for NewDeploymentTaskBody {
    const SCHEMA: Option<&'static str> = Some("NewDeploymentTaskBody");
}

/// The template version to deploy.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TemplateRefBody {
    #[schema(required, nullable = false, example = "edge_cameras", min_length = 1)]
    name: Option<String>,
    /// A number or a numeric string; absent or `null`: the latest version.
    #[schema(value_type = Option<VersionNumber>, example = 2)]
    version: Option<serde_json::Value>,
}

/// A template version: a number, or the same number as a string of at most 9 digits.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum VersionNumber {
    Number(u32),
    Text(VersionText),
}

/// A template version number written as a string.
#[derive(Deserialize, ToSchema)]
#[schema(pattern = "^[0-9]{1,9}$")]
#[allow(dead_code)]
pub(crate) struct VersionText(String);

/// The targets of a deployment task (the schema of `targets`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1)]
#[allow(dead_code)]
pub(crate) struct DeploymentTargets {
    /// Core (thing) names, 1 to 10,000.
    #[schema(nullable = false, min_items = 1, max_items = 10000, value_type = Option<Vec<ThingNameText>>)]
    thing_names: Option<Vec<String>>,
    /// Thing group names (`[a-zA-Z0-9:_-]{1,128}`), 1 to 10,000.
    #[schema(nullable = false, min_items = 1, max_items = 10000, value_type = Option<Vec<ThingNameText>>)]
    thing_group_names: Option<Vec<String>>,
    /// An AWS IoT fleet-indexing query (`SearchIndex`); the local cloud understands `thingName`,
    /// `thingGroupNames`, `attributes.<name>`, `connectivity.connected`, AND / OR / NOT,
    /// parentheses and a trailing `*`.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        example = "thingName:core-* AND attributes.site:berlin"
    )]
    thing_index_query: Option<String>,
}

/// An AWS IoT thing or thing-group name.
#[derive(ToSchema)]
#[schema(pattern = "^[a-zA-Z0-9:_-]+$", min_length = 1, max_length = 128)]
#[allow(dead_code)]
pub(crate) struct ThingNameText(String);

/// The resolved template of a deployment task.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeployedTemplate {
    name: String,
    version: u32,
}

/// A deployment task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentTaskResource {
    id: String,
    template: DeployedTemplate,
    #[schema(value_type = Object)]
    targets: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    iot_job_config: Option<serde_json::Value>,
    /// Per-core records, by core name (`[]` in lists).
    deployments: Vec<DeploymentRecord>,
    task_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
    /// Once the targets are expanded (single task only).
    #[serde(skip_serializing_if = "Option::is_none")]
    batches_total: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batches_complete: Option<u32>,
    /// The staged rollout, when the task has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutView>,
}

/// Where a staged rollout stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RolloutView {
    /// `Running`, `Paused`, `Aborted`, `Cancelled` or `Completed`.
    #[schema(value_type = RolloutPhase)]
    state: String,
    /// The wave being run, from 1 (0 before the targets are expanded).
    current_wave: u32,
    /// Paused after a wave until `POST .../resume` (manual approval).
    awaiting_approval: bool,
    /// Why the rollout stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Each wave's counts (single task only; `[]` in lists).
    waves: Vec<WaveView>,
    /// The rollout as submitted.
    plan: RolloutSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<RollbackView>,
}

/// One wave of a rollout.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WaveView {
    /// From 1.
    wave: u32,
    #[serde(flatten)]
    counts: WaveTally,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<Timestamp>,
}

/// The deployment tasks that move a rolled-back task's cores back.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RollbackView {
    #[schema(value_type = String)]
    requested_at: Timestamp,
    /// Deployment tasks, one per template version the cores had before (once created).
    task_ids: Vec<String>,
}

impl RolloutView {
    pub(crate) fn of(state: &RolloutState, tallies: Option<Vec<WaveTally>>, expanded: bool) -> Self {
        let waves = tallies
            .map(|tallies| {
                tallies
                    .into_iter()
                    .zip(&state.waves)
                    .enumerate()
                    .map(|(i, (counts, times))| WaveView {
                        wave: i as u32 + 1,
                        counts,
                        started_at: times.started_at,
                        ended_at: times.ended_at,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            state: state.phase.as_str().to_owned(),
            current_wave: if expanded { state.current_wave + 1 } else { 0 },
            awaiting_approval: state.awaiting_approval,
            reason: state.reason.clone(),
            waves,
            plan: state.spec.clone(),
            rollback: state.rollback.as_ref().map(|r| RollbackView {
                requested_at: r.requested_at,
                task_ids: r.task_ids.iter().map(|t| t.as_str().to_owned()).collect(),
            }),
        }
    }
}

impl DeploymentTaskResource {
    fn from_task(task: Task, detailed: bool, tallies: Option<Vec<WaveTally>>) -> Self {
        let TaskKind::Deployment(spec) = task.kind else { unreachable!("deployment tasks only") };
        let rollout = spec.rollout.as_ref().map(|r| RolloutView::of(r, tallies, spec.expanded));
        let status_message =
            task.status_message.or_else(|| spec.rollout.as_deref().and_then(RolloutState::status_message));
        let (batches_total, batches_complete) = match (detailed, spec.batches_total, spec.batch_size) {
            (true, Some(total), Some(size)) => {
                let complete = task
                    .items
                    .chunks(size.max(1) as usize)
                    .filter(|chunk| chunk.iter().all(|i| i.status.is_terminal()))
                    .count();
                (Some(total), Some(complete as u32))
            }
            (true, Some(total), None) => (Some(total), Some(total)),
            _ => (None, None),
        };
        Self {
            id: task.id.as_str().to_owned(),
            template: DeployedTemplate { name: spec.template.name, version: spec.template.version },
            targets: spec.targets,
            iot_job_config: spec.iot_job_config,
            deployments: if detailed {
                task.items.into_iter().map(|i| DeploymentRecord::from_item(i, None)).collect()
            } else {
                Vec::new()
            },
            task_status: task.status.as_str().to_owned(),
            status_message,
            created_at: task.created_at,
            updated_at: task.updated_at,
            batches_total,
            batches_complete,
            rollout,
        }
    }
}

fn invalid(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::validation(vec![FieldProblem { field: field.to_owned(), problem: problem.into() }])
}

/// Roll a template version out to cores. The template (and version) must exist (404); the
/// targets are expanded asynchronously.
#[utoipa::path(
    post, path = "/deploymentTasks", tag = TAG, operation_id = "createDeploymentTask",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]+$", min_length = 1, max_length = 255, description = "Optional. The same key with the same request within 24 h gets the first answer again (same task id); with another request, 422 IDEMPOTENCY_KEY_REUSED; while the first is still being answered, 409 IDEMPOTENT_REQUEST_IN_PROGRESS.")),
    request_body(content((NewDeploymentTaskBody = "application/vnd.aws-cdf-v1.0+json"), (NewDeploymentTaskBody = "application/json"))),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/deploymentTasks/{taskId}`"),
            ("x-taskid" = String, description = "the task id"),
        )),
        (status = 400, description = "Invalid task or unsupported target type", body = ErrorBody),
        (status = 404, description = "No such template or version", body = ErrorBody),
        (status = 409, description = "IDEMPOTENT_REQUEST_IN_PROGRESS: a request with this Idempotency-Key is still being answered (Retry-After)", body = ErrorBody),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used for another request", body = ErrorBody),
    )
)]
pub(crate) async fn create_deployment_task(
    State(state): State<AppState>,
    CdfJson(body): CdfJson<NewDeploymentTaskBody>,
) -> Result<Response, ApiError> {
    let template =
        body.template.ok_or_else(|| invalid("template", "is required: {\"name\": ..., \"version\"?: ...}"))?;
    let name = template.name.filter(|n| !n.is_empty()).ok_or_else(|| invalid("template.name", "is required"))?;
    let version = match template.version {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| invalid("template.version", format!("{n} is not a version number")))?,
        ),
        Some(serde_json::Value::String(s)) if (1..=9).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.parse::<u32>().expect("at most 9 digits fit a u32"))
        }
        Some(serde_json::Value::String(s)) => {
            return Err(invalid("template.version", format!("'{s}' is not a version number (digits only, at most 9)")));
        }
        Some(other) => return Err(invalid("template.version", format!("{other} is not a version number"))),
    };
    let targets = body.targets.unwrap_or(serde_json::Value::Null);
    if let Err((unsupported, problems)) = check_targets(&targets) {
        let error = ApiError::validation(problems);
        return Err(if unsupported { error.with_code("UNSUPPORTED_TARGET_TYPE") } else { error });
    }
    let request = NewDeploymentTask {
        template_name: name,
        template_version: version,
        targets,
        iot_job_config: body.iot_job_config,
        rollout: body.rollout,
    };
    let task = state.deployments.submit(request).await.map_err(|err| match err {
        DeploymentTaskError::TemplateNotFound(_) | DeploymentTaskError::VersionNotFound { .. } => {
            ApiError::not_found("TEMPLATE_NOT_FOUND", err.to_string())
        }
        DeploymentTaskError::Invalid(problems) => ApiError::validation(problems),
        DeploymentTaskError::Task(task) => task.into(),
        DeploymentTaskError::Store(store) => store.into(),
    })?;
    Ok((StatusCode::ACCEPTED, task_headers("/deploymentTasks", &task.id)).into_response())
}

/// A deployment task with its per-core records and batch progress.
#[utoipa::path(
    get, path = "/deploymentTasks/{taskId}", tag = TAG, operation_id = "getDeploymentTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses((status = 200, body = DeploymentTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_deployment_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<DeploymentTaskResource>, ApiError> {
    let task = state
        .core_tasks
        .get(&TaskId::from_text(&id), TaskFamily::Deployment)
        .await
        .map_err(|e| ApiError::from(e).with_code_on_404("DEPLOYMENT_TASK_NOT_FOUND"))?;
    let tallies = state.rollouts.waves(&task).await?;
    Ok(Cdf(DeploymentTaskResource::from_task(task, true, tallies)))
}

impl From<RolloutError> for ApiError {
    fn from(err: RolloutError) -> Self {
        let message = err.to_string();
        match err {
            RolloutError::NotFound(_) => ApiError::not_found("DEPLOYMENT_TASK_NOT_FOUND", message),
            RolloutError::Conflict { code, .. } => ApiError::new(StatusCode::CONFLICT, code, message),
            RolloutError::Store(store) => store.into(),
        }
    }
}

async fn act(state: &AppState, id: &str, action: RolloutAction) -> Result<Response, ApiError> {
    let task = state.rollouts.act(&TaskId::from_text(id), TaskFamily::Deployment, action).await?;
    let tallies = state.rollouts.waves(&task).await?;
    let resource = DeploymentTaskResource::from_task(task, false, tallies);
    Ok((StatusCode::ACCEPTED, Cdf(resource)).into_response())
}

/// Pause a running rollout: no further core moves until it is resumed (cores already moving
/// finish). Idempotent.
#[utoipa::path(
    post, path = "/deploymentTasks/{taskId}/pause", tag = TAG, operation_id = "pauseDeploymentTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollout is paused; the task with its rollout", body = DeploymentTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: the rollout's state does not allow it (the message names it)", body = ErrorBody),
    )
)]
pub(crate) async fn pause_deployment_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Pause).await
}

/// Resume a paused rollout; after a wave that waits for manual approval, the next wave starts.
/// Idempotent.
#[utoipa::path(
    post, path = "/deploymentTasks/{taskId}/resume", tag = TAG, operation_id = "resumeDeploymentTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollout runs; the task with its rollout", body = DeploymentTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: the rollout's state does not allow it (the message names it)", body = ErrorBody),
    )
)]
pub(crate) async fn resume_deployment_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Resume).await
}

/// Cancel a rollout: no further core moves; moved cores stay where they are (see rollback).
/// The task ends `Failure`. Idempotent.
#[utoipa::path(
    post, path = "/deploymentTasks/{taskId}/cancel", tag = TAG, operation_id = "cancelDeploymentTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollout is cancelled; the task with its rollout", body = DeploymentTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: the rollout's state does not allow it (the message names it)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_deployment_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Cancel).await
}

/// Roll back an aborted or cancelled rollout: the cores it moved go back to the template
/// version each had before, through deployment tasks (`rollout.rollback.taskIds`) reported like
/// any deployment. Idempotent.
#[utoipa::path(
    post, path = "/deploymentTasks/{taskId}/rollback", tag = TAG, operation_id = "rollbackDeploymentTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollback has started; the task with its rollout", body = DeploymentTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: only an Aborted or Cancelled rollout can be rolled back", body = ErrorBody),
    )
)]
pub(crate) async fn rollback_deployment_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Rollback).await
}

/// Retry only what failed: a new deployment task of the same template version for the cores of
/// a finished task that failed to move, reported failure or timed out; it deploys the version
/// again as a new Greengrass revision (once per retry task), so the cores really run it again.
#[utoipa::path(
    post, path = "/deploymentTasks/{taskId}/retry", tag = TAG, operation_id = "retryDeploymentTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/deploymentTasks/{taskId}` of the new task"),
            ("x-taskid" = String, description = "the new task's id"),
        )),
        (status = 404, body = ErrorBody),
        (status = 409, description = "TASK_NOT_FINISHED or NOTHING_TO_RETRY", body = ErrorBody),
    )
)]
pub(crate) async fn retry_deployment_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = state.rollouts.retry(&TaskId::from_text(&id)).await?;
    Ok((StatusCode::ACCEPTED, task_headers("/deploymentTasks", &task.id)).into_response())
}

/// `GET /deploymentTasks`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentTaskList {
    deployment_tasks: Vec<DeploymentTaskResource>,
    pagination: Pagination<crate::records::LastEvaluatedTaskId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct TaskPageQuery {
    /// Page size, 1 to 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) count: Option<String>,
    /// `pagination.lastEvaluated.taskId` of the previous page.
    pub(crate) exclusive_start_task_id: Option<String>,
}

/// Deployment tasks by id (items have `deployments: []`).
#[utoipa::path(
    get, path = "/deploymentTasks", tag = TAG, operation_id = "listDeploymentTasks",
    params(TaskPageQuery),
    responses((status = 200, body = DeploymentTaskList, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 400, body = ErrorBody))
)]
pub(crate) async fn list_deployment_tasks(
    State(state): State<AppState>,
    Query(query): Query<TaskPageQuery>,
) -> Result<Cdf<DeploymentTaskList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let page = state
        .core_tasks
        .list(TaskFamily::Deployment, count.page(query.exclusive_start_task_id.as_deref().map(TaskId::from_text)))
        .await?;
    Ok(Cdf(DeploymentTaskList {
        deployment_tasks: page.items.into_iter().map(|t| DeploymentTaskResource::from_task(t, false, None)).collect(),
        pagination: Pagination {
            count: count.echo,
            last_evaluated: page.last_evaluated.map(|id| crate::records::LastEvaluatedTaskId::new(id.as_str())),
        },
    }))
}

/// `GET /deploymentTasks/{taskId}/cores`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeploymentCoreList {
    cores: Vec<DeploymentRecord>,
    pagination: Pagination<LastEvaluatedThingName>,
}

/// The per-core records of a deployment task, by core name (`[]` for an unknown task).
#[utoipa::path(
    get, path = "/deploymentTasks/{taskId}/cores", tag = TAG, operation_id = "listDeploymentTaskCores",
    params(("taskId" = String, Path, description = "Task id"), ThingPageQuery),
    responses((status = 200, body = DeploymentCoreList, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 400, body = ErrorBody))
)]
pub(crate) async fn list_deployment_task_cores(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ThingPageQuery>,
) -> Result<Cdf<DeploymentCoreList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let start = query.start()?;
    let page = state.deployments.task_cores(&TaskId::from_text(&id), count.page(start)).await?;
    Ok(Cdf(DeploymentCoreList {
        cores: page.items.into_iter().map(|i| DeploymentRecord::from_item(i, None)).collect(),
        pagination: Pagination {
            count: count.echo,
            last_evaluated: page.last_evaluated.map(|n| LastEvaluatedThingName::new(n.as_str())),
        },
    }))
}

/// One core's record in a deployment task.
#[utoipa::path(
    get, path = "/deploymentTasks/{taskId}/cores/{coreName}", tag = TAG, operation_id = "getDeploymentTaskCore",
    params(("taskId" = String, Path, description = "Task id"), ("coreName" = String, Path, description = "Core name")),
    responses((status = 200, body = DeploymentRecord, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_deployment_task_core(
    State(state): State<AppState>,
    Path((id, core)): Path<(String, String)>,
) -> Result<Cdf<DeploymentRecord>, ApiError> {
    let not_found = || {
        ApiError::not_found("DEPLOYMENT_NOT_FOUND", format!("deployment task '{id}' has no record for core '{core}'"))
    };
    let name = ThingName::parse(&core).map_err(|_| not_found())?;
    let task = TaskId::from_text(&id);
    let mut page = ggprov_domain::PageRequest::first(1000);
    loop {
        let result = state.deployments.task_cores(&task, page).await?;
        if let Some(item) = result.items.into_iter().find(|i| i.name == name) {
            return Ok(Cdf(DeploymentRecord::from_item(item, None)));
        }
        match result.last_evaluated {
            Some(last) if last < name => page = ggprov_domain::PageRequest::after(1000, last),
            _ => return Err(not_found()),
        }
    }
}

/// `GET /fleet/summary`: an object keyed by template name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FleetSummary {
    /// By template name (`None`: cores without a template).
    templates: BTreeMap<String, TemplateSummary>,
}

/// Per template version: how many cores desire it, report it, and how their last deployment
/// went. `None` counts cores without a template. Exact: the counters change with the core
/// records they count.
#[utoipa::path(
    get, path = "/fleet/summary", tag = "Fleet", operation_id = "getFleetSummary",
    responses((status = 200, body = FleetSummary, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn get_fleet_summary(State(state): State<AppState>) -> Result<Cdf<FleetSummary>, ApiError> {
    Ok(Cdf(FleetSummary { templates: state.deployments.fleet_summary().await? }))
}

/// The fleet summary counted from the core records instead of the counters (ggprov
/// extension, for operators and the reliability harness): it must always equal
/// `GET /fleet/summary`.
#[utoipa::path(
    get, path = "/fleet/summary/recount", tag = "Fleet", operation_id = "getFleetSummaryRecount",
    responses((status = 200, body = FleetSummary, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn get_fleet_summary_recount(State(state): State<AppState>) -> Result<Cdf<FleetSummary>, ApiError> {
    Ok(Cdf(FleetSummary { templates: state.deployments.recounted_fleet_summary().await? }))
}
