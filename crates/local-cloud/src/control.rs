//! The local cloud's control surface, `/local-cloud/...`: connect and disconnect simulated
//! cores, set how their deployments end, inject faults, and look at the simulated registry.
//! Mounted only when the local cloud is the configured backend.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ggprov_domain::ThingName;
use ggprov_domain::ports::CloudError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{CoreBehavior, FaultSettings, LocalCloud};

/// Routes under `/local-cloud`.
pub fn control_router(cloud: LocalCloud) -> Router {
    Router::new()
        .route("/local-cloud/cores/{name}/connect", post(connect))
        .route("/local-cloud/cores/{name}/disconnect", post(disconnect))
        .route("/local-cloud/cores/{name}/behavior", put(behavior))
        .route("/local-cloud/cores/{name}/platform", put(platform))
        .route("/local-cloud/behaviors", put(behaviors))
        .route("/local-cloud/things/{name}/attributes", put(attributes))
        .route("/local-cloud/faults", put(set_faults).get(get_faults))
        .route("/local-cloud/things/{name}", get(thing))
        .route("/local-cloud/cores/{name}/credentials", get(credentials))
        .route("/local-cloud/inventory", get(inventory))
        .route("/local-cloud/calls", get(calls))
        .with_state(cloud)
}

/// An error answered by the control surface, as `{"error": CODE, "message": text}`.
struct ControlError(StatusCode, &'static str, String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.1, "message": self.2});
        let mut response = (self.0, Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl From<CloudError> for ControlError {
    fn from(err: CloudError) -> Self {
        let (status, code) = match err {
            CloudError::NotFound { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            CloudError::Rejected { .. } | CloudError::AlreadyExists { .. } => (StatusCode::CONFLICT, "REJECTED"),
            CloudError::Throttled { .. } | CloudError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
            }
        };
        Self(status, code, err.to_string())
    }
}

fn invalid(message: String) -> ControlError {
    ControlError(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", message)
}

fn thing_name(name: &str) -> Result<ThingName, ControlError> {
    ThingName::parse(name).map_err(|e| invalid(format!("name: {e}")))
}

/// A JSON body; an empty body is the type's default.
fn body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ControlError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid body: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectBody {
    nucleus_version: Option<String>,
}

async fn connect(
    State(cloud): State<LocalCloud>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ControlError> {
    let name = thing_name(&name)?;
    let body: ConnectBody = body(&bytes)?;
    cloud.connect_core(&name, body.nucleus_version.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn disconnect(State(cloud): State<LocalCloud>, Path(name): Path<String>) -> Result<StatusCode, ControlError> {
    cloud.disconnect_core(&thing_name(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn behavior(
    State(cloud): State<LocalCloud>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ControlError> {
    let name = thing_name(&name)?;
    let behavior: CoreBehavior = body(&bytes)?;
    cloud.set_core_behavior(&name, behavior).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /local-cloud/behaviors`: one behavior for many cores at once, named (`names`) or a
/// share of every core registered with Greengrass (`share`, 0–1, chosen by a hash of the name,
/// so the same share picks the same cores); answers the names it set.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BehaviorsBody {
    #[serde(default)]
    names: Vec<String>,
    share: Option<f64>,
    #[serde(default)]
    deployment_outcome: crate::DeploymentOutcome,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    image_pull_error: bool,
    #[serde(default)]
    nucleus_update_fails: bool,
    #[serde(default)]
    rotation_fails: bool,
}

/// `PUT /local-cloud/cores/{name}/platform`: the platform the core reports to Greengrass.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlatformBody {
    os: String,
    architecture: String,
}

async fn platform(
    State(cloud): State<LocalCloud>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ControlError> {
    let name = thing_name(&name)?;
    let body: PlatformBody = body(&bytes)?;
    let valid = |v: &str| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid(&body.os) || !valid(&body.architecture) {
        return Err(invalid("os and architecture must be names like linux and aarch64".into()));
    }
    cloud.set_core_platform(&name, &body.os, &body.architecture).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn behaviors(
    State(cloud): State<LocalCloud>,
    bytes: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ControlError> {
    let body: BehaviorsBody = body(&bytes)?;
    let mut names = body.names.iter().map(|n| thing_name(n)).collect::<Result<Vec<_>, _>>()?;
    match body.share {
        Some(share) if !(0.0..=1.0).contains(&share) => return Err(invalid(format!("share {share} is outside 0–1"))),
        Some(share) => names.extend(cloud.core_share(share).await?),
        None if names.is_empty() => return Err(invalid("name the cores (names) or a share of them (share)".into())),
        None => {}
    }
    let behavior = CoreBehavior {
        deployment_outcome: body.deployment_outcome,
        delay_ms: body.delay_ms,
        image_pull_error: body.image_pull_error,
        nucleus_update_fails: body.nucleus_update_fails,
        rotation_fails: body.rotation_fails,
    };
    for name in &names {
        cloud.set_core_behavior(name, behavior).await?;
    }
    Ok(Json(serde_json::json!({"names": names.iter().map(ThingName::as_str).collect::<Vec<_>>()})))
}

/// `PUT /local-cloud/things/{name}/attributes`: merges string attributes into a thing (`null`
/// removes one), for fleet-indexing queries.
async fn attributes(
    State(cloud): State<LocalCloud>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ControlError> {
    let name = thing_name(&name)?;
    let changes: std::collections::BTreeMap<String, Option<String>> = body(&bytes)?;
    cloud.merge_thing_attributes(&name, &changes).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_faults(State(cloud): State<LocalCloud>, bytes: axum::body::Bytes) -> Result<StatusCode, ControlError> {
    let settings: FaultSettings = body(&bytes)?;
    settings.validate().map_err(invalid)?;
    cloud.set_faults(settings);
    Ok(StatusCode::NO_CONTENT)
}

async fn get_faults(State(cloud): State<LocalCloud>) -> Json<FaultSettings> {
    Json(cloud.faults())
}

/// `GET /local-cloud/cores/{name}/credentials`: the certificate a rotated core connects with and
/// the digest of the public key it generated (404 before its first rotation).
async fn credentials(
    State(cloud): State<LocalCloud>,
    Path(name): Path<String>,
) -> Result<Json<crate::DeviceCredentials>, ControlError> {
    let name = thing_name(&name)?;
    match cloud.device_credentials(&name).await? {
        Some(credentials) => Ok(Json(credentials)),
        None => Err(ControlError::from(crate::not_found(
            "Credentials",
            format!("core {name} has not rotated its certificate"),
        ))),
    }
}

async fn thing(
    State(cloud): State<LocalCloud>,
    Path(name): Path<String>,
) -> Result<Json<crate::ThingView>, ControlError> {
    let name = thing_name(&name)?;
    cloud.thing_view(&name).await?.map(Json).ok_or_else(|| {
        ControlError(StatusCode::NOT_FOUND, "NOT_FOUND", format!("thing {name} does not exist in the local cloud"))
    })
}

async fn calls(State(cloud): State<LocalCloud>) -> Json<std::collections::BTreeMap<&'static str, u64>> {
    Json(cloud.api_calls())
}

async fn inventory(State(cloud): State<LocalCloud>) -> Result<Json<crate::Inventory>, ControlError> {
    Ok(Json(cloud.inventory().await?))
}
