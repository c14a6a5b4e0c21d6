//! Client devices: `POST /cores/{coreName}/deviceTasks`, `GET /deviceTasks/{taskId}`,
//! `GET /devices/{name}`, `DELETE /devices/{name}`, `GET /cores/{name}/devices`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ggprov_domain::core_task_service::NewDeviceTask;
use ggprov_domain::cores::{CoreTaskOptions, Device, Task, TaskKind};
use ggprov_domain::provisioning::CdfProvisioningParameters;
use ggprov_domain::{Problems, TaskId, TaskType, ThingName, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, ThingPageQuery, parse_count};
use crate::records::{
    ArtifactResource, ItemFields, LastEvaluatedThingName, TaskCoreResource, TaskTypeName, parse_bool, parse_items,
    parse_task_type, task_headers,
};
use crate::state::AppState;

const TAG: &str = "Client devices";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_device_task))
        .routes(routes!(get_device_task))
        .routes(routes!(retry_device_task))
        .routes(routes!(get_device, delete_device))
        .routes(routes!(list_core_devices))
}

/// `POST /cores/{coreName}/deviceTasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewDeviceTaskBody {
    /// `Create` or `Delete`.
    #[schema(required, nullable = false, value_type = TaskTypeName, example = "Create")]
    r#type: Option<String>,
    /// The client devices, 1 to 10,000 with distinct names.
    #[schema(required, nullable = false, min_items = 1, max_items = 10000)]
    devices: Option<Vec<NewDeviceBody>>,
    /// Required for `Delete`: `{"deprovisionClientDevices": true|false}`.
    options: Option<CoreTaskOptions>,
}

impl crate::body_schema::BodySchema for NewDeviceTaskBody {
    const SCHEMA: Option<&'static str> = Some("NewDeviceTaskBody");
}

/// A client device in a device task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewDeviceBody {
    /// Thing name: `[a-zA-Z0-9:_-]{1,128}`.
    #[schema(
        required,
        nullable = false,
        example = "sensor-0001",
        pattern = "^[a-zA-Z0-9:_-]+$",
        min_length = 1,
        max_length = 128
    )]
    name: Option<String>,
    /// Provisioning template name, e.g. `greengrass2_client_device`.
    #[schema(required, nullable = false, example = "greengrass2_client_device", min_length = 1)]
    provisioning_template: Option<String>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    provisioning_parameters: Option<BTreeMap<String, String>>,
    cdf_provisioning_parameters: Option<CdfProvisioningParameters>,
}

/// A device task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceTaskResource {
    id: String,
    core_name: String,
    r#type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<CoreTaskOptions>,
    /// Per-device status, by name.
    devices: Vec<TaskCoreResource>,
    task_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl DeviceTaskResource {
    fn from_task(task: Task) -> Self {
        let core_name = match &task.kind {
            TaskKind::Device { core_name } => core_name.as_str().to_owned(),
            TaskKind::Core | TaskKind::Deployment(_) | TaskKind::Rotation(_) => String::new(),
        };
        Self {
            id: task.id.as_str().to_owned(),
            core_name,
            r#type: task.task_type.as_str().to_owned(),
            options: task.options,
            devices: task.items.into_iter().map(TaskCoreResource::from_item).collect(),
            task_status: task.status.as_str().to_owned(),
            status_message: task.status_message,
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}

/// A client device.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ClientDeviceResource)]
pub(crate) struct DeviceResource {
    name: String,
    /// The core it is associated with.
    core_name: String,
    provisioning_template: String,
    /// The certificate the device's thing holds (ggprov extension; absent for devices
    /// provisioned before the inventory).
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<ggprov_domain::certificates::CertificateInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<BTreeMap<String, ArtifactResource>>,
    #[schema(value_type = String)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    updated_at: Option<Timestamp>,
}

impl DeviceResource {
    fn from_device(device: Device) -> Self {
        Self {
            name: device.name.as_str().to_owned(),
            core_name: device.core_name.as_str().to_owned(),
            provisioning_template: device.provisioning_template,
            certificate: device.certificate,
            artifacts: (!device.artifacts.is_empty())
                .then(|| device.artifacts.into_iter().map(|(k, v)| (k, ArtifactResource::from(v))).collect()),
            created_at: device.created_at,
            updated_at: device.updated_at,
        }
    }
}

/// Submit a client-device task for a core. The core must be a ggprov core, and registered
/// with Greengrass for `Create` (400 otherwise, nothing stored).
#[utoipa::path(
    post, path = "/cores/{coreName}/deviceTasks", tag = TAG, operation_id = "createDeviceTask",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]+$", min_length = 1, max_length = 255, description = "Optional. The same key with the same request within 24 h gets the first answer again (same task id); with another request, 422 IDEMPOTENCY_KEY_REUSED; while the first is still being answered, 409 IDEMPOTENT_REQUEST_IN_PROGRESS."), ("coreName" = String, Path, description = "The core to associate the devices with")),
    request_body(content((NewDeviceTaskBody = "application/vnd.aws-cdf-v1.0+json"), (NewDeviceTaskBody = "application/json"))),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/deviceTasks/{taskId}`"),
            ("x-taskid" = String, description = "the task id"),
        )),
        (status = 400, description = "Invalid task, unknown or unregistered core", body = ErrorBody),
        (status = 409, description = "`THING_BUSY`: a named thing has an open item in another task (its id is in `details`); submit again when that task has ended; or IDEMPOTENT_REQUEST_IN_PROGRESS: a request with this Idempotency-Key is still being answered (Retry-After)", body = ErrorBody),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used for another request; or `VALIDATION_FAILED` for a rule the schema cannot state: a name listed twice, a provisioning template, its parameters or a CA that do not fit, a thing that is a core", body = ErrorBody),
    )
)]
pub(crate) async fn create_device_task(
    State(state): State<AppState>,
    Path(core_name): Path<String>,
    CdfJson(body): CdfJson<NewDeviceTaskBody>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let core_name = problems.check("coreName", ThingName::parse(&core_name));
    let task_type = parse_task_type(&mut problems, body.r#type.as_deref(), "device task");
    let devices = parse_items(
        &mut problems,
        "devices",
        body.devices.map(|list| {
            list.into_iter()
                .map(|d| ItemFields {
                    name: d.name,
                    provisioning_template: d.provisioning_template,
                    provisioning_parameters: d.provisioning_parameters,
                    cdf_provisioning_parameters: d.cdf_provisioning_parameters,
                    config_file_generator: None,
                })
                .collect()
        }),
    );
    if task_type == Some(TaskType::Delete) && body.options.as_ref().is_none_or(|o| o == &CoreTaskOptions::default()) {
        problems.add("options", "is required for Delete: {\"deprovisionClientDevices\": true|false}");
    }
    let (Some(core_name), Some(task_type)) = (core_name, task_type) else {
        return Err(ApiError::validation(problems.into_vec()));
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.into_vec()));
    }
    let task = state
        .core_tasks
        .submit_device_task(NewDeviceTask { core_name, task_type, devices, options: body.options })
        .await?;
    Ok((StatusCode::ACCEPTED, task_headers("/deviceTasks", &task.id)).into_response())
}

/// A device task with the status of each device.
#[utoipa::path(
    get, path = "/deviceTasks/{taskId}", tag = TAG, operation_id = "getDeviceTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses((status = 200, body = DeviceTaskResource, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_device_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<DeviceTaskResource>, ApiError> {
    let task = state
        .core_tasks
        .get(&TaskId::from_text(&id), ggprov_domain::cores::TaskFamily::Device)
        .await
        .map_err(|e| ApiError::from(e).with_code_on_404("DEVICE_TASK_NOT_FOUND"))?;
    Ok(Cdf(DeviceTaskResource::from_task(task)))
}

/// Retry only what failed: a new device task of the same core (same type and options) holding
/// only the devices of a finished task whose item failed.
#[utoipa::path(
    post, path = "/deviceTasks/{taskId}/retry", tag = TAG, operation_id = "retryDeviceTask",
    params(("taskId" = String, Path, description = "Task id")),
    responses(
        (status = 202, description = "Accepted; no body", headers(
            ("location" = String, description = "`/deviceTasks/{taskId}` of the new task"),
            ("x-taskid" = String, description = "the new task's id"),
        )),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "TASK_NOT_FINISHED, NOTHING_TO_RETRY, or THING_BUSY (a device has an open item in another task)", body = ErrorBody),
    )
)]
pub(crate) async fn retry_device_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = state
        .core_tasks
        .retry(&TaskId::from_text(&id), ggprov_domain::cores::TaskFamily::Device)
        .await
        .map_err(|e| ApiError::from(e).with_code_on_404("DEVICE_TASK_NOT_FOUND"))?;
    Ok((StatusCode::ACCEPTED, task_headers("/deviceTasks", &task.id)).into_response())
}

fn device_not_found(name: &str) -> ApiError {
    ApiError::not_found("DEVICE_NOT_FOUND", format!("client device '{name}' does not exist"))
}

/// A client device.
#[utoipa::path(
    get, path = "/devices/{name}", tag = TAG, operation_id = "getDevice",
    params(("name" = String, Path, description = "Device (thing) name")),
    responses((status = 200, body = DeviceResource, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Cdf<DeviceResource>, ApiError> {
    let thing = ThingName::parse(&name).map_err(|_| device_not_found(&name))?;
    Ok(Cdf(DeviceResource::from_device(state.devices.get(&thing).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteDeviceQuery {
    /// Also delete the thing, its certificate and the policies ggprov created (default `true`).
    #[param(value_type = Option<bool>)]
    deprovision: Option<String>,
    /// Also disassociate it from its core (default `true`).
    #[param(value_type = Option<bool>)]
    disassociate_device_from_core: Option<String>,
}

/// Delete a client device now (no task): disassociate it from its core and deprovision it,
/// each unless turned off with `false`.
#[utoipa::path(
    delete, path = "/devices/{name}", tag = TAG, operation_id = "deleteDevice",
    params(("name" = String, Path, description = "Device (thing) name"), DeleteDeviceQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody),
        (status = 409, description = "`THING_BUSY`: a device task's open item owns the device (its id is in the message); or `DEVICE_REMOVAL_REFUSED`: Greengrass or IoT refused the removal", body = ErrorBody),
    )
)]
pub(crate) async fn delete_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteDeviceQuery>,
) -> Result<StatusCode, ApiError> {
    // An empty value (`?deprovision=`) turns the option off, as it did in the original.
    let flag = |field: &str, value: Option<&str>| match value {
        Some("") => Ok(false),
        other => parse_bool(field, other, true),
    };
    let deprovision = flag("deprovision", query.deprovision.as_deref())?;
    let disassociate = flag("disassociateDeviceFromCore", query.disassociate_device_from_core.as_deref())?;
    let thing = ThingName::parse(&name).map_err(|_| device_not_found(&name))?;
    state.devices.delete(&thing, deprovision, disassociate).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /cores/{name}/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceList {
    devices: Vec<DeviceResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<LastEvaluatedThingName>>,
}

/// The client devices of a core, by name (ggprov extension).
#[utoipa::path(
    get, path = "/cores/{name}/devices", tag = TAG, operation_id = "listCoreDevices",
    params(("name" = String, Path, description = "Core name"), ThingPageQuery),
    responses((status = 200, body = DeviceList, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 400, body = ErrorBody))
)]
pub(crate) async fn list_core_devices(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ThingPageQuery>,
) -> Result<Cdf<DeviceList>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let start = query.start()?;
    let Ok(core) = ThingName::parse(&name) else {
        return Ok(Cdf(DeviceList { devices: vec![], pagination: Pagination::form_a(&count, None) }));
    };
    let page = state.devices.list_of_core(&core, count.page(start)).await?;
    Ok(Cdf(DeviceList {
        devices: page.items.into_iter().map(DeviceResource::from_device).collect(),
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|n| LastEvaluatedThingName::new(n.as_str()))),
    }))
}
