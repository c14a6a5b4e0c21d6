//! Core software: `GET /fleet/software[/recount]`, and software update tasks
//! (`POST/GET /softwareUpdateTasks`, `GET /softwareUpdateTasks/{taskId}`,
//! `POST /softwareUpdateTasks/{taskId}/resume`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ggprov_domain::deployment_service::DeploymentTaskError;
use ggprov_domain::software::{SoftwareCounts, SoftwareKey};
use ggprov_domain::software_update::{
    CoreOutcome, NewSoftwareUpdate, SoftwareUpdateError, SoftwareUpdateTask, SoftwareUpdateView, TemplateUpdate,
};
use ggprov_domain::{TaskId, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::deployment_tasks::TaskPageQuery;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, parse_count};
use crate::records::task_headers;
use crate::state::AppState;

const TAG: &str = "Core software";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_fleet_software))
        .routes(routes!(get_fleet_software_recount))
        .routes(routes!(create_software_update_task, list_software_update_tasks))
        .routes(routes!(get_software_update_task))
        .routes(routes!(resume_software_update_task))
}

/// One nucleus version on one platform.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SoftwareRow {
    #[schema(example = "aws.greengrass.Nucleus")]
    nucleus: String,
    /// `unknown` until ggprov learns it.
    #[schema(example = "2.12.0")]
    nucleus_version: String,
    #[schema(example = "linux")]
    os: String,
    #[schema(example = "amd64")]
    architecture: String,
    cores: i64,
    /// Cores whose running deployment brings another nucleus version.
    updating: i64,
}

/// `GET /fleet/software`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SoftwareSummary {
    /// By nucleus, version, os and architecture.
    versions: Vec<SoftwareRow>,
    total: SoftwareCounts,
}

impl SoftwareSummary {
    fn from_counts(counts: BTreeMap<SoftwareKey, SoftwareCounts>) -> Self {
        let mut total = SoftwareCounts::default();
        let versions = counts
            .into_iter()
            .map(|(k, c)| {
                total.cores += c.cores;
                total.updating += c.updating;
                SoftwareRow {
                    nucleus: k.nucleus,
                    nucleus_version: k.version,
                    os: k.os,
                    architecture: k.architecture,
                    cores: c.cores,
                    updating: c.updating,
                }
            })
            .collect();
        Self { versions, total }
    }
}

/// Cores by nucleus version and platform, and how many are updating: counters moved with
/// every core change (reads O(rows), not O(cores)).
#[utoipa::path(
    get, path = "/fleet/software", tag = TAG, operation_id = "getFleetSoftware",
    responses((status = 200, body = SoftwareSummary, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn get_fleet_software(State(state): State<AppState>) -> Result<Cdf<SoftwareSummary>, ApiError> {
    Ok(Cdf(SoftwareSummary::from_counts(state.deployments.software_summary().await?)))
}

/// The software summary counted from the core records instead of the counters (reads every
/// core; for checking the counters).
#[utoipa::path(
    get, path = "/fleet/software/recount", tag = TAG, operation_id = "getFleetSoftwareRecount",
    responses((status = 200, body = SoftwareSummary, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn get_fleet_software_recount(
    State(state): State<AppState>,
) -> Result<Cdf<SoftwareSummary>, ApiError> {
    Ok(Cdf(SoftwareSummary::from_counts(state.deployments.recounted_software_summary().await?)))
}

/// Item counts of a software update task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateCounts {
    total: i64,
    waiting: i64,
    in_progress: i64,
    success: i64,
    failure: i64,
}

/// A software update task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SoftwareUpdateResource {
    task_id: String,
    /// `InProgress` while template versions are being made or cores are moving; then
    /// `Success` (every core runs the version) or `Failure`.
    status: String,
    nucleus_version: String,
    allow_downgrade: bool,
    #[schema(value_type = Object)]
    targets: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    rollout: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
    /// Every template version made and every deployment task started.
    planned: bool,
    /// The template versions the update made, one per template version the cores ran.
    templates: Vec<TemplateUpdate>,
    /// The deployment tasks it started.
    deployment_tasks: Vec<String>,
    counts: UpdateCounts,
    /// Every targeted core's outcome (only on `GET /softwareUpdateTasks/{taskId}` and the
    /// answer to the `POST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cores: Option<Vec<CoreOutcome>>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = String)]
    updated_at: Timestamp,
}

impl SoftwareUpdateResource {
    fn new(task: SoftwareUpdateTask, status: &str, counts: UpdateCounts, cores: Option<Vec<CoreOutcome>>) -> Self {
        Self {
            task_id: task.id.as_str().to_owned(),
            status: status.to_owned(),
            nucleus_version: task.request.nucleus_version,
            allow_downgrade: task.request.allow_downgrade,
            targets: task.request.targets,
            rollout: task.request.rollout.map(|r| serde_json::to_value(r).expect("a rollout serialises")),
            client_token: task.request.client_token,
            planned: task.planned,
            deployment_tasks: task
                .templates
                .iter()
                .filter(|t| t.deployment_task_started)
                .map(|t| t.deployment_task_id.as_str().to_owned())
                .collect(),
            templates: task.templates,
            counts,
            cores,
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }

    fn from_view(view: SoftwareUpdateView) -> Self {
        let in_progress =
            view.cores.iter().filter(|c| c.status == ggprov_domain::TaskStatus::InProgress).count() as i64;
        let counts = UpdateCounts {
            total: view.counts.total,
            waiting: view.counts.waiting,
            in_progress,
            success: view.counts.success,
            failure: view.counts.failure,
        };
        Self::new(view.task, view.status.as_str(), counts, Some(view.cores))
    }
}

impl crate::body_schema::BodySchema for NewSoftwareUpdate {
    const SCHEMA: Option<&'static str> = Some("NewSoftwareUpdate");
}

fn update_error(err: SoftwareUpdateError) -> ApiError {
    match err {
        SoftwareUpdateError::Invalid(problems) => ApiError::validation(problems),
        SoftwareUpdateError::TokenReused(_) => {
            ApiError::new(StatusCode::CONFLICT, "CLIENT_TOKEN_REUSED", err.to_string())
        }
        SoftwareUpdateError::NotFound(_) => ApiError::not_found("SOFTWARE_UPDATE_TASK_NOT_FOUND", err.to_string()),
        SoftwareUpdateError::Cloud(cloud) => ApiError::unavailable(format!("could not ask AWS: {cloud}"), cloud),
        SoftwareUpdateError::Template(template) => template.into(),
        SoftwareUpdateError::Deployment(DeploymentTaskError::Invalid(problems)) => ApiError::validation(problems),
        SoftwareUpdateError::Deployment(DeploymentTaskError::Store(store)) => store.into(),
        SoftwareUpdateError::Deployment(other) => ApiError::internal(other),
        SoftwareUpdateError::Store(store) => store.into(),
    }
}

/// Update the nucleus of the targeted cores through their templates: each core is checked
/// (a ggprov core running a template, a platform the version runs on, no downgrade unless
/// `allowDowngrade`; refused cores are items with `Failure` and the reason); for each template
/// version the accepted cores run, one new template version with the nucleus and the
/// components that move with it bumped, and one deployment task with the rollout given.
#[utoipa::path(
    post, path = "/softwareUpdateTasks", tag = TAG, operation_id = "createSoftwareUpdateTask",
    request_body(content((NewSoftwareUpdate = "application/vnd.aws-cdf-v1.0+json"), (NewSoftwareUpdate = "application/json"))),
    responses(
        (status = 201, description = "Created", body = SoftwareUpdateResource, content_type = "application/vnd.aws-cdf-v1.0+json", headers(
            ("location" = String, description = "`/softwareUpdateTasks/{taskId}`"),
            ("x-taskid" = String, description = "the task id"),
        )),
        (status = 200, description = "The clientToken named this task already", body = SoftwareUpdateResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid request, unknown nucleus version or thing group", body = ErrorBody),
        (status = 409, description = "CLIENT_TOKEN_REUSED: the clientToken was used for another request", body = ErrorBody),
    )
)]

pub(crate) async fn create_software_update_task(
    State(state): State<AppState>,
    CdfJson(body): CdfJson<NewSoftwareUpdate>,
) -> Result<Response, ApiError> {
    let (task, created) = state.software_updates.submit(body).await.map_err(update_error)?;
    let view =
        state.software_updates.get(&task.id).await.map_err(update_error)?.ok_or_else(|| {
            ApiError::internal(format!("software update task {} vanished after it was stored", task.id))
        })?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let headers = task_headers("/softwareUpdateTasks", &task.id);
    Ok((status, headers, Cdf(SoftwareUpdateResource::from_view(view))).into_response())
}

/// A software update task with every targeted core's outcome: refused cores and cores that
/// already ran the version as planned; the others as their deployment task's item stands and,
/// once moved, as the core reports (`Success` when it runs the version).
#[utoipa::path(
    get, path = "/softwareUpdateTasks/{taskId}", tag = TAG, operation_id = "getSoftwareUpdateTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses((status = 200, body = SoftwareUpdateResource, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_software_update_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<SoftwareUpdateResource>, ApiError> {
    let id = TaskId::from_text(&id);
    let view = state
        .software_updates
        .get(&id)
        .await
        .map_err(update_error)?
        .ok_or_else(|| update_error(SoftwareUpdateError::NotFound(id)))?;
    Ok(Cdf(SoftwareUpdateResource::from_view(view)))
}

/// Finishes a task whose planning a crash interrupted (`planned: false`): makes the template
/// versions and deployment tasks still missing, never twice. Nothing to do for a planned task.
#[utoipa::path(
    post, path = "/softwareUpdateTasks/{taskId}/resume", tag = TAG, operation_id = "resumeSoftwareUpdateTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses((status = 200, body = SoftwareUpdateResource, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn resume_software_update_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<SoftwareUpdateResource>, ApiError> {
    let id = TaskId::from_text(&id);
    state.software_updates.resume(&id).await.map_err(update_error)?;
    get_software_update_task(State(state), Path(id.as_str().to_owned())).await
}

/// `GET /softwareUpdateTasks`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SoftwareUpdateList {
    software_update_tasks: Vec<SoftwareUpdateResource>,
    pagination: Pagination<crate::records::LastEvaluatedTaskId>,
}

/// Software update tasks by id (without their cores' outcomes).
#[utoipa::path(
    get, path = "/softwareUpdateTasks", tag = TAG, operation_id = "listSoftwareUpdateTasks",
    params(TaskPageQuery),
    responses((status = 200, body = SoftwareUpdateList, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 400, body = ErrorBody))
)]
pub(crate) async fn list_software_update_tasks(
    State(state): State<AppState>,
    Query(query): Query<TaskPageQuery>,
) -> Result<Cdf<SoftwareUpdateList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let page = state
        .software_updates
        .list(count.page(query.exclusive_start_task_id.as_deref().map(TaskId::from_text)))
        .await
        .map_err(update_error)?;
    Ok(Cdf(SoftwareUpdateList {
        software_update_tasks: page
            .items
            .into_iter()
            .map(|task| {
                let status = if task.planned { "Planned" } else { "InProgress" };
                let counts = UpdateCounts {
                    total: (task.refused.len()
                        + task.current.len()
                        + task.templates.iter().map(|t| t.cores.len()).sum::<usize>())
                        as i64,
                    waiting: 0,
                    in_progress: 0,
                    success: task.current.len() as i64,
                    failure: task.refused.len() as i64,
                };
                SoftwareUpdateResource::new(task, status, counts, None)
            })
            .collect(),
        pagination: Pagination {
            count: count.echo,
            last_evaluated: page.last_evaluated.map(|id| crate::records::LastEvaluatedTaskId::new(id.as_str())),
        },
    }))
}
