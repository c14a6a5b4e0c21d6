//! Liveness and readiness, outside the CDF media-type rules.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

const TAG: &str = "Operations";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

/// Health or readiness report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    /// Readiness only: each dependency and `ok` or `unavailable`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    checks: BTreeMap<&'static str, &'static str>,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = TAG, operation_id = "health", responses((status = 200, body = Status)))]
pub(crate) async fn health() -> Json<Status> {
    Json(Status { status: "ok", checks: BTreeMap::new() })
}

/// Readiness: the store (and the queue, once there is one) answer.
#[utoipa::path(
    get, path = "/ready", tag = TAG, operation_id = "ready",
    responses((status = 200, body = Status), (status = 503, description = "A dependency is unavailable", body = Status))
)]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Status>) {
    let results = futures::future::join_all(
        state.readiness.iter().map(|check| async move { (check.name(), check.check().await) }),
    )
    .await;
    let mut checks = BTreeMap::new();
    let mut all_ok = true;
    for (name, result) in results {
        match result {
            Ok(()) => {
                checks.insert(name, "ok");
            }
            Err(err) => {
                tracing::warn!(check = name, error = %err, "readiness check failed");
                checks.insert(name, "unavailable");
                all_ok = false;
            }
        }
    }
    if all_ok {
        (StatusCode::OK, Json(Status { status: "ready", checks }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Status { status: "unavailable", checks }))
    }
}
