//! Cores: `GET /cores`, `GET /cores/{name}`, `GET /cores/{name}/deployments`, and the event
//! outbox `GET /events`.

use std::collections::BTreeMap;

use axum::extract::State;
use ggprov_domain::core_service::DeviceInfo;
use ggprov_domain::cores::{Core, StoredEvent};
use ggprov_domain::ports::{CoreFilter, EffectiveDeployment, InstalledComponent};
use ggprov_domain::{ThingName, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::Cdf;
use crate::pagination::{Pagination, parse_count};
use crate::records::{ArtifactResource, LastEvaluatedThingName, parse_bool, problem};
use crate::state::AppState;

const TAG: &str = "Cores";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cores))
        .routes(routes!(get_core))
        .routes(routes!(list_core_deployments))
        .routes(routes!(list_events))
}

/// A template and version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateVersionRef {
    #[schema(example = "None")]
    name: String,
    #[schema(example = 0)]
    version: u32,
}

/// What the core last reported.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReportedTemplate {
    name: String,
    version: u32,
    /// `None` until an outcome is known, then the Greengrass deployment status.
    deployment_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_status_message: Option<String>,
}

/// Desired and reported template of a core.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoreTemplate {
    desired: TemplateVersionRef,
    reported: ReportedTemplate,
}

/// Live data from Greengrass (named apart from the client device's schema, which has the same
/// Rust name).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GreengrassDeviceResource)]
pub(crate) struct DeviceResource {
    #[schema(value_type = Vec<Object>)]
    installed_components: Vec<InstalledComponent>,
    #[schema(value_type = Vec<Object>)]
    effective_deployments: Vec<EffectiveDeployment>,
    /// `HEALTHY`, `UNHEALTHY` or `UNKNOWN`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    core_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    last_status_update_timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
}

/// A core.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CoreResource {
    #[schema(example = "core-0001")]
    name: String,
    /// The provisioning template the core was provisioned with.
    provisioning_template: String,
    /// `Success`: ggprov records a core once its provisioning succeeded.
    task_status: &'static str,
    template: CoreTemplate,
    /// The nucleus and platform the core runs, as far as ggprov knows (ggprov extension).
    software: ggprov_domain::software::CoreSoftware,
    /// The certificate the core's thing holds: id, CA, validity, key algorithm, status (ggprov
    /// extension; absent for cores provisioned before the inventory).
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<ggprov_domain::certificates::CertificateInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<BTreeMap<String, ArtifactResource>>,
    /// Only on `GET /cores/{name}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<DeviceResource>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl CoreResource {
    fn from_core(core: Core, device: Option<DeviceInfo>, with_artifacts: bool) -> Self {
        let artifacts = (with_artifacts && !core.artifacts.is_empty())
            .then(|| core.artifacts.into_iter().map(|(k, v)| (k, ArtifactResource::from(v))).collect());
        Self {
            name: core.name.as_str().to_owned(),
            provisioning_template: core.provisioning_template,
            task_status: "Success",
            template: CoreTemplate {
                desired: TemplateVersionRef { name: core.desired.name, version: core.desired.version },
                reported: ReportedTemplate {
                    name: core.reported.name,
                    version: core.reported.version,
                    deployment_status: core.deployment_status.into(),
                    deployment_status_message: core.deployment_status_message,
                },
            },
            software: core.software,
            certificate: core.certificate,
            artifacts,
            device: device.map(|d| {
                let live = d.device.unwrap_or_else(|| ggprov_domain::ports::CoreDevice {
                    status: d.status.clone(),
                    core_version: None,
                    platform: None,
                    architecture: None,
                    last_status_update_timestamp: None,
                    tags: BTreeMap::new(),
                });
                DeviceResource {
                    installed_components: d.installed_components,
                    effective_deployments: d.effective_deployments,
                    status: d.status,
                    core_version: live.core_version,
                    platform: live.platform,
                    architecture: live.architecture,
                    last_status_update_timestamp: live.last_status_update_timestamp,
                    tags: (!live.tags.is_empty()).then_some(live.tags),
                }
            }),
            created_at: core.created_at,
            updated_at: core.updated_at,
        }
    }
}

/// `GET /cores`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoreList {
    cores: Vec<CoreResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<LastEvaluatedThingName>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListCoresQuery {
    /// Only cores whose desired template is this (`None`: cores without a template).
    template_name: Option<String>,
    /// With `templateName`: only this desired version.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 4294967295_u64)]
    template_version: Option<String>,
    /// `true`: only cores whose last deployment failed.
    #[param(value_type = Option<bool>)]
    failed_only: Option<String>,
    /// Only cores running this nucleus version (exact, e.g. `2.12.0`; `unknown`: not known yet).
    #[param(min_length = 1, max_length = 64, pattern = "^[!-~]+$")]
    nucleus_version: Option<String>,
    /// Only cores on this operating system, as Greengrass names it (`linux`, `windows`).
    #[param(min_length = 1, max_length = 64, pattern = "^[!-~]+$")]
    os: Option<String>,
    /// Only cores of this architecture, as Greengrass names it (`amd64`, `aarch64`, `arm`).
    #[param(min_length = 1, max_length = 64, pattern = "^[!-~]+$")]
    architecture: Option<String>,
    /// Page size, 1 to 1000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    /// `pagination.lastEvaluated.thingName` of the previous page.
    #[param(pattern = "^[a-zA-Z0-9:_-]+$", min_length = 1, max_length = 128)]
    exclusive_start_thing_name: Option<String>,
}

/// Cores by name, optionally filtered by desired template and failed deployments.
#[utoipa::path(
    get, path = "/cores", tag = TAG, operation_id = "listCores",
    params(ListCoresQuery),
    responses(
        (status = 200, body = CoreList, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
    )
)]
pub(crate) async fn list_cores(
    State(state): State<AppState>,
    Query(query): Query<ListCoresQuery>,
) -> Result<Cdf<CoreList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let template_version = match query.template_version.as_deref() {
        Some(v) => {
            Some(v.parse::<u32>().map_err(|_| problem("templateVersion", format!("'{v}' is not a version number")))?)
        }
        None => None,
    };
    let software = |field: &str, value: Option<String>| -> Result<Option<String>, ApiError> {
        match value {
            Some(v) if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(problem(field, format!("'{v}' is not a {field}: 1–64 printable characters")))
            }
            other => Ok(other),
        }
    };
    let filter = CoreFilter {
        template_version: template_version.filter(|_| query.template_name.is_some()),
        template_name: query.template_name,
        failed_only: parse_bool("failedOnly", query.failed_only.as_deref(), false)?,
        nucleus_version: software("nucleusVersion", query.nucleus_version)?,
        os: software("os", query.os)?,
        architecture: software("architecture", query.architecture)?,
    };
    let start = match query.exclusive_start_thing_name.as_deref() {
        Some(name) => Some(ThingName::parse(name).map_err(|e| problem("exclusiveStartThingName", e.to_string()))?),
        None => None,
    };
    let page = state.cores.list(&filter, count.page(start)).await?;
    Ok(Cdf(CoreList {
        cores: page.items.into_iter().map(|c| CoreResource::from_core(c, None, false)).collect(),
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|n| LastEvaluatedThingName::new(n.as_str()))),
    }))
}

/// A core with its artifacts and live Greengrass data (`device`).
#[utoipa::path(
    get, path = "/cores/{name}", tag = TAG, operation_id = "getCore",
    params(("name" = String, Path, description = "Core (thing) name")),
    responses(
        (status = 200, body = CoreResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such core", body = ErrorBody),
    )
)]
pub(crate) async fn get_core(
    State(state): State<AppState>,
    Path(name): Path<String>,
    access: Option<axum::Extension<crate::ops::Access>>,
) -> Result<axum::response::Response, ApiError> {
    // A certs bundle holds the core's private key: its link is for callers who may write.
    let can_write = access.is_none_or(|a| a.can_write);
    let key = if can_write { std::borrow::Cow::Borrowed(name.as_str()) } else { format!("{name}\nread-only").into() };
    // Taken before the reads: a commit meanwhile makes what they answer stale at once.
    let at = state.cores.data_state();
    if let Some(body) = state.core_bodies.get(at, &key) {
        return Ok(cdf_body(body));
    }
    let not_found = || ApiError::not_found("CORE_NOT_FOUND", format!("core '{name}' does not exist"));
    let thing = ThingName::parse(&name).map_err(|_| not_found())?;
    let (core, device, exact) = state.cores.get_exact(&thing).await?.ok_or_else(not_found)?;
    let mut links = if can_write { state.cores.download_links(&core).await } else { Default::default() };
    // Download links expire: a body that carries one is never remembered.
    let remember = exact && links.is_empty();
    let mut resource = CoreResource::from_core(core, Some(device), true);
    for (name, artifact) in resource.artifacts.iter_mut().flatten() {
        artifact.download_url = links.remove(name);
    }
    let body = axum::body::Bytes::from(serde_json::to_vec(&resource).map_err(ApiError::internal)?);
    if remember {
        state.core_bodies.put(at, &key, body.clone());
    }
    Ok(cdf_body(body))
}

/// Serialised `GET /cores/{name}` bodies by core, exact per state of the records and of
/// Greengrass (both backends must tell theirs: the embedded default's databases do, AWS does
/// not). A read of an unchanged core is then two `pread`s and a copy (decision 82).
pub type CoreBodies = ggprov_domain::read_cache::KeyedReadCache<
    axum::body::Bytes,
    (ggprov_domain::ports::DataState, ggprov_domain::ports::DataState),
>;

/// Bodies kept per state at most (a bound, not a working-set estimate).
pub const MAX_CACHED_CORE_BODIES: usize = 16_384;

fn cdf_body(body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    ([(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(crate::CDF_MEDIA_TYPE))], body)
        .into_response()
}

/// `GET /cores/{name}/deployments`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoreDeploymentList {
    deployments: Vec<crate::records::DeploymentRecord>,
    pagination: Pagination<crate::records::LastEvaluatedTaskId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, 1 to 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    /// `pagination.lastEvaluated.taskId` of the previous page.
    exclusive_start_task_id: Option<String>,
}

/// The deployment tasks that targeted a core, by task id (`[]` for an unknown core).
#[utoipa::path(
    get, path = "/cores/{name}/deployments", tag = TAG, operation_id = "listCoreDeployments",
    params(("name" = String, Path, description = "Core (thing) name"), PageQuery),
    responses((status = 200, body = CoreDeploymentList, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 400, body = ErrorBody))
)]
pub(crate) async fn list_core_deployments(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Cdf<CoreDeploymentList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let Ok(core) = ThingName::parse(&name) else {
        return Ok(Cdf(CoreDeploymentList {
            deployments: Vec::new(),
            pagination: Pagination { count: count.echo, last_evaluated: None },
        }));
    };
    let start = query.exclusive_start_task_id.as_deref().map(ggprov_domain::TaskId::from_text);
    let page = state.deployments.core_deployments(&core, count.page(start)).await?;
    Ok(Cdf(CoreDeploymentList {
        deployments: page.items.into_iter().map(|(task, item)| crate::records::core_record(&task, item)).collect(),
        pagination: Pagination {
            count: count.echo,
            last_evaluated: page.last_evaluated.map(|id| crate::records::LastEvaluatedTaskId::new(id.as_str())),
        },
    }))
}

/// An event as published to EventBridge.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventResource {
    id: String,
    /// Position in the outbox; newer events have larger numbers.
    sequence: u64,
    source: String,
    /// EventBridge detail-type, e.g. `Core Created Event`.
    detail_type: String,
    #[schema(value_type = Object)]
    detail: serde_json::Value,
    #[schema(value_type = String)]
    time: Timestamp,
}

impl EventResource {
    pub(crate) fn new(event: StoredEvent, source: String) -> Self {
        Self {
            id: event.id,
            sequence: event.sequence,
            source,
            detail_type: event.event.detail_type,
            detail: event.event.detail,
            time: event.time,
        }
    }
}

/// `GET /events`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventList {
    events: Vec<EventResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<LastEvaluatedSequence>>,
}

/// `lastEvaluated` of the event list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LastEvaluatedSequence {
    sequence: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Page size, 1 to 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    /// `pagination.lastEvaluated.sequence` of the previous page.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_u64)]
    exclusive_start_sequence: Option<String>,
}

/// Lifecycle events, newest first (the embedded default's view of what goes to EventBridge).
#[utoipa::path(
    get, path = "/events", tag = "Events", operation_id = "listEvents",
    params(EventsQuery),
    responses((status = 200, body = EventList, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 400, body = ErrorBody))
)]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Cdf<EventList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let start = match query.exclusive_start_sequence.as_deref() {
        Some(s) => Some(s.parse::<u64>().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| {
            problem("exclusiveStartSequence", format!("'{s}' is not a sequence number (0 to 2^63-1)"))
        })?),
        None => None,
    };
    let page = state.cores.events(count.page(start)).await?;
    let source = state.event_source.clone();
    Ok(Cdf(EventList {
        events: page.items.into_iter().map(|e: StoredEvent| EventResource::new(e, source.clone())).collect(),
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|sequence| LastEvaluatedSequence { sequence })),
    }))
}
