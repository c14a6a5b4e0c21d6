//! Certificate rotation tasks (ggprov extension): `POST /certificateRotationTasks`,
//! `GET /certificateRotationTasks`, `GET /certificateRotationTasks/{taskId}`,
//! `POST /certificateRotationTasks/{taskId}/retry`, and for one with waves
//! `POST /certificateRotationTasks/{taskId}/pause|resume|cancel`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ggprov_domain::certificate_service::{NewRotation, RotationTargets};
use ggprov_domain::core_task_service::CoreTaskError;
use ggprov_domain::cores::{Task, TaskFamily, TaskKind};
use ggprov_domain::provisioning::KeyAlgorithm;
use ggprov_domain::rollout::{RolloutAction, RolloutSpec, RolloutState, WaveTally};
use ggprov_domain::rollout_service::RolloutError;
use ggprov_domain::rotation::RevokeOld;
use ggprov_domain::{TaskId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core_tasks::ListTasksQuery;
use crate::deployment_tasks::RolloutView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, parse_count};
use crate::records::{LastEvaluatedTaskId, TaskCoreResource, task_headers};
use crate::state::AppState;

const TAG: &str = "Certificates";
const PATH: &str = "/certificateRotationTasks";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rotation_task, list_rotation_tasks))
        .routes(routes!(get_rotation_task))
        .routes(routes!(retry_rotation_task))
        .routes(routes!(pause_rotation_task))
        .routes(routes!(resume_rotation_task))
        .routes(routes!(cancel_rotation_task))
}

fn rollout_error(err: RolloutError) -> ApiError {
    match err {
        RolloutError::NotFound(id) => rotation_error(CoreTaskError::NotFound(id)),
        other => other.into(),
    }
}

fn rotation_error(err: CoreTaskError) -> ApiError {
    match err {
        CoreTaskError::NotFound(id) => {
            ApiError::not_found("ROTATION_TASK_NOT_FOUND", format!("certificate rotation task '{id}' does not exist"))
        }
        other => other.into(),
    }
}

/// `POST /certificateRotationTasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewRotationBody {
    /// Which cores: the union of `thingNames`, `thingGroupNames`, `thingIndexQuery` and
    /// `expiringWithinDays` (groups, queries and expiry select among ggprov's cores).
    #[schema(required, nullable = false, example = json!({"expiringWithinDays": 30}))]
    targets: Option<RotationTargets>,
    /// The CA that signs the new certificates (default: the default CA). Rotating every core
    /// onto a new CA is this with `targets` selecting them.
    #[schema(nullable = false)]
    ca_id: Option<String>,
    /// The key the cores generate (`EC_P256` by default).
    #[schema(nullable = false)]
    key_algorithm: Option<KeyAlgorithm>,
    /// Validity of the new certificates in days (default: as long as each old one).
    #[schema(nullable = false, minimum = 1, maximum = 36500)]
    days_expiry: Option<u32>,
    /// When the old certificate goes: `afterConfirm` (default), `immediately`, `never`.
    #[schema(nullable = false)]
    revoke_old: Option<RevokeOld>,
    /// Waves, as for deployment tasks: the cores (in name order) rotate wave by wave, each wave
    /// when the previous one met `successThreshold`; `failureThreshold` aborts the rest; with
    /// `approval: manual` each wave waits for `POST .../resume`. `onAbort` must be `stop`.
    #[schema(nullable = false)]
    rollout: Option<RolloutSpec>,
}

impl crate::body_schema::BodySchema for NewRotationBody {
    const SCHEMA: Option<&'static str> = Some("NewRotationBody");
}

/// Item counts of a task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotationCounts {
    total: usize,
    waiting: usize,
    in_progress: usize,
    success: usize,
    failure: usize,
}

/// A certificate rotation task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotationTaskResource {
    task_id: String,
    /// `Waiting`, `InProgress`, then `Success` or `Failure` (some core failed).
    task_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[schema(value_type = Object)]
    targets: serde_json::Value,
    ca_id: String,
    key_algorithm: KeyAlgorithm,
    revoke_old: RevokeOld,
    #[serde(skip_serializing_if = "Option::is_none")]
    days_expiry: Option<u32>,
    counts: RotationCounts,
    /// The waves, when the task has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutView>,
    /// Each core's outcome (`GET /certificateRotationTasks/{taskId}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cores: Option<Vec<TaskCoreResource>>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl RotationTaskResource {
    fn from_task(task: Task, with_cores: bool, tallies: Option<Vec<WaveTally>>) -> Option<Self> {
        let TaskKind::Rotation(spec) = task.kind else { return None };
        let rollout = spec.rollout.as_deref().map(|state| RolloutView::of(state, tallies, true));
        let status_message =
            task.status_message.or_else(|| spec.rollout.as_deref().and_then(RolloutState::status_message));
        let count = |s: ggprov_domain::TaskStatus| task.items.iter().filter(|i| i.status == s).count();
        let counts = RotationCounts {
            total: task.items.len(),
            waiting: count(ggprov_domain::TaskStatus::Waiting),
            in_progress: count(ggprov_domain::TaskStatus::InProgress),
            success: count(ggprov_domain::TaskStatus::Success),
            failure: count(ggprov_domain::TaskStatus::Failure),
        };
        Some(Self {
            task_id: task.id.as_str().to_owned(),
            task_status: task.status.as_str().to_owned(),
            status_message,
            targets: spec.targets,
            ca_id: spec.ca_id,
            key_algorithm: spec.key_algorithm,
            revoke_old: spec.revoke_old,
            days_expiry: spec.days_expiry,
            counts,
            rollout,
            cores: with_cores.then(|| task.items.into_iter().map(TaskCoreResource::from_item).collect()),
            created_at: task.created_at,
            updated_at: task.updated_at,
        })
    }
}

/// Rotate the certificates of cores: for each core, one new certificate whose key the core
/// makes itself (a CSR through its rotation component), signed by `caId`, registered and
/// attached next to the old one with the same policies, handed to the core; once the core
/// runs with it, the old one is retired as `revokeOld` says and a `Certificate Rotated` event
/// is sent. A core that cannot use the new certificate keeps its old one and its item fails.
/// Everything is validated first (422 with `details`, nothing stored).
#[utoipa::path(
    post, path = "/certificateRotationTasks", tag = TAG, operation_id = "createCertificateRotationTask",
    request_body(content((NewRotationBody = "application/vnd.aws-cdf-v1.0+json"), (NewRotationBody = "application/json"))),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/certificateRotationTasks/{taskId}`"),
            ("x-taskid" = String, description = "the task id"),
        )),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 409, description = "THING_BUSY: a core has an open item in another task; ROTATION_UNAVAILABLE: this backend cannot reach the cores' rotation component", body = ErrorBody),
        (status = 422, description = "Targets that select no core, unknown names, groups or CA", body = ErrorBody),
    )
)]
pub(crate) async fn create_rotation_task(
    State(state): State<AppState>,
    CdfJson(body): CdfJson<NewRotationBody>,
) -> Result<Response, ApiError> {
    let request = NewRotation {
        targets: body.targets.unwrap_or_default(),
        ca_id: body.ca_id,
        key_algorithm: body.key_algorithm,
        days_expiry: body.days_expiry,
        revoke_old: body.revoke_old,
        rollout: body.rollout,
    };
    let task = state.certificates.submit_rotation(request).await.map_err(rotation_error)?;
    Ok((StatusCode::ACCEPTED, task_headers(PATH, &task.id)).into_response())
}

/// `GET /certificateRotationTasks`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotationTaskList {
    tasks: Vec<RotationTaskResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<LastEvaluatedTaskId>>,
}

/// Rotation tasks by id (without their cores).
#[utoipa::path(
    get, path = "/certificateRotationTasks", tag = TAG, operation_id = "listCertificateRotationTasks",
    params(ListTasksQuery),
    responses(
        (status = 200, body = RotationTaskList, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid `count`", body = ErrorBody),
    )
)]
pub(crate) async fn list_rotation_tasks(
    State(state): State<AppState>,
    Query(query): Query<ListTasksQuery>,
) -> Result<Cdf<RotationTaskList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let page = state
        .core_tasks
        .list(TaskFamily::Rotation, count.page(query.exclusive_start_task_id.as_deref().map(TaskId::from_text)))
        .await
        .map_err(rotation_error)?;
    Ok(Cdf(RotationTaskList {
        tasks: page.items.into_iter().filter_map(|t| RotationTaskResource::from_task(t, false, None)).collect(),
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|id| LastEvaluatedTaskId::new(id.as_str()))),
    }))
}

/// A rotation task with each core's outcome.
#[utoipa::path(
    get, path = "/certificateRotationTasks/{taskId}", tag = TAG, operation_id = "getCertificateRotationTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 200, body = RotationTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub(crate) async fn get_rotation_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<RotationTaskResource>, ApiError> {
    let id = TaskId::from_text(&id);
    let task = state.core_tasks.get(&id, TaskFamily::Rotation).await.map_err(rotation_error)?;
    let tallies = state.rollouts.waves(&task).await?;
    RotationTaskResource::from_task(task, true, tallies)
        .map(Cdf)
        .ok_or_else(|| rotation_error(CoreTaskError::NotFound(id)))
}

async fn act(state: &AppState, id: &str, action: RolloutAction) -> Result<Response, ApiError> {
    let task = state.rollouts.act(&TaskId::from_text(id), TaskFamily::Rotation, action).await.map_err(rollout_error)?;
    let tallies = state.rollouts.waves(&task).await?;
    let resource = RotationTaskResource::from_task(task, false, tallies)
        .ok_or_else(|| rotation_error(CoreTaskError::NotFound(TaskId::from_text(id))))?;
    Ok((StatusCode::ACCEPTED, Cdf(resource)).into_response())
}

/// Pause a rotation's waves: no further core starts rotating until it is resumed (cores
/// already rotating finish). Idempotent.
#[utoipa::path(
    post, path = "/certificateRotationTasks/{taskId}/pause", tag = TAG, operation_id = "pauseCertificateRotationTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollout is paused; the task with its rollout", body = RotationTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: the rollout's state does not allow it (the message names it)", body = ErrorBody),
    )
)]
pub(crate) async fn pause_rotation_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Pause).await
}

/// Resume a paused rotation; after a wave that waits for manual approval, the next wave
/// starts. Idempotent.
#[utoipa::path(
    post, path = "/certificateRotationTasks/{taskId}/resume", tag = TAG, operation_id = "resumeCertificateRotationTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollout runs; the task with its rollout", body = RotationTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: the rollout's state does not allow it (the message names it)", body = ErrorBody),
    )
)]
pub(crate) async fn resume_rotation_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Resume).await
}

/// Cancel a rotation's waves: cores not started keep their certificates (items `Failure`,
/// "Not rotated"); cores already rotated keep their new ones. The task ends `Failure`.
/// Idempotent.
#[utoipa::path(
    post, path = "/certificateRotationTasks/{taskId}/cancel", tag = TAG, operation_id = "cancelCertificateRotationTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "The rollout is cancelled; the task with its rollout", body = RotationTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "NO_ROLLOUT, or ROLLOUT_STATE: the rollout's state does not allow it (the message names it)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_rotation_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&state, &id, RolloutAction::Cancel).await
}

/// Retry only what failed: a new rotation task (same CA, key, validity and `revokeOld`) of the
/// cores of a finished task whose item failed.
#[utoipa::path(
    post, path = "/certificateRotationTasks/{taskId}/retry", tag = TAG, operation_id = "retryCertificateRotationTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/certificateRotationTasks/{taskId}` of the new task"),
            ("x-taskid" = String, description = "the new task's id"),
        )),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "TASK_NOT_FINISHED, NOTHING_TO_RETRY, or THING_BUSY", body = ErrorBody),
    )
)]
pub(crate) async fn retry_rotation_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = state.core_tasks.retry(&TaskId::from_text(&id), TaskFamily::Rotation).await.map_err(rotation_error)?;
    Ok((StatusCode::ACCEPTED, task_headers(PATH, &task.id)).into_response())
}
