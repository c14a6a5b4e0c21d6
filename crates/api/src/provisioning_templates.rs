//! Provisioning templates: `PUT/GET/DELETE /provisioningTemplates/{name}`, `GET /provisioningTemplates`.

use axum::extract::State;
use axum::http::StatusCode;
use ggprov_domain::provisioning_templates::TemplateDocumentError;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::media::{Cdf, CdfJson};
use crate::state::AppState;

const TAG: &str = "Provisioning templates";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_provisioning_template, get_provisioning_template, delete_provisioning_template))
        .routes(routes!(list_provisioning_templates))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("PROVISIONING_TEMPLATE_NOT_FOUND", format!("provisioning template '{name}' does not exist"))
}

/// Store a provisioning template (an AWS IoT provisioning template plus a `CDF` section).
/// It is checked first: constructs ggprov cannot interpret are refused with their name.
#[utoipa::path(
    put, path = "/provisioningTemplates/{name}", tag = TAG, operation_id = "putProvisioningTemplate",
    params(("name" = String, Path, description = "Template name")),
    request_body(content((Object = "application/vnd.aws-cdf-v1.0+json"), (Object = "application/json"))),
    responses((status = 204, description = "Stored"), (status = 400, description = "Unusable template", body = ErrorBody))
)]
pub(crate) async fn put_provisioning_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CdfJson(document): CdfJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    // A missing or empty body would store an empty template that core tasks could then name.
    if document.as_object().is_some_and(serde_json::Map::is_empty) {
        return Err(ApiError::bad_request(
            "INVALID_PROVISIONING_TEMPLATE",
            "the body is empty: send the provisioning template document (an object with Parameters and Resources, as GET /provisioningTemplates/greengrass2_core shows)",
        ));
    }
    state.provisioning_templates.put(&name, &document).await.map_err(|err| match err {
        TemplateDocumentError::InvalidName(_) | TemplateDocumentError::Invalid(_) => {
            ApiError::bad_request("INVALID_PROVISIONING_TEMPLATE", err.to_string())
        }
        TemplateDocumentError::Store(store) => store.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A provisioning template document (stored, or one of the bundled ones).
#[utoipa::path(
    get, path = "/provisioningTemplates/{name}", tag = TAG, operation_id = "getProvisioningTemplate",
    params(("name" = String, Path, description = "Template name")),
    responses((status = 200, body = Object, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_provisioning_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Cdf<serde_json::Value>, ApiError> {
    state.provisioning_templates.get(&name).await?.map(Cdf).ok_or_else(|| not_found(&name))
}

/// Delete a stored provisioning template (the bundled ones cannot be deleted).
#[utoipa::path(
    delete, path = "/provisioningTemplates/{name}", tag = TAG, operation_id = "deleteProvisioningTemplate",
    params(("name" = String, Path, description = "Template name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody))
)]
pub(crate) async fn delete_provisioning_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.provisioning_templates.delete(&name).await? { Ok(StatusCode::NO_CONTENT) } else { Err(not_found(&name)) }
}

/// `GET /provisioningTemplates`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProvisioningTemplateList {
    /// Names, sorted.
    templates: Vec<String>,
}

/// Every provisioning template name, stored and bundled.
#[utoipa::path(
    get, path = "/provisioningTemplates", tag = TAG, operation_id = "listProvisioningTemplates",
    responses((status = 200, body = ProvisioningTemplateList, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn list_provisioning_templates(
    State(state): State<AppState>,
) -> Result<Cdf<ProvisioningTemplateList>, ApiError> {
    Ok(Cdf(ProvisioningTemplateList { templates: state.provisioning_templates.names().await? }))
}
