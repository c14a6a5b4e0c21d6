//! Provisioning templates: `PUT/GET/DELETE /provisioningTemplates/{name}`, `GET /provisioningTemplates`.

use axum::extract::State;
use axum::http::StatusCode;
use ggprov_domain::provisioning_templates::TemplateDocumentError;
use serde::Serialize;
use serde_json::json;
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

/// A provisioning template document. Its schema ([`document_schema`]) needs JSON Schema
/// keywords (`const`, `prefixItems`, recursion) utoipa's types do not model, so the document
/// gets it when it is finished; here it is a placeholder that names it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ProvisioningTemplateDocument(serde_json::Value);

/// The JSON Schema of what `ProvisioningTemplate::parse` accepts: an AWS IoT provisioning
/// template (things, certificates, policies; `Ref`, `Fn::Join`, `Fn::Sub`) plus a `CDF` section.
pub(crate) fn document_schema() -> serde_json::Value {
    let expression = json!({ "$ref": "#/components/schemas/ProvisioningTemplateExpression" });
    let document = json!({ "anyOf": [{ "type": "object" }, expression] });
    json!({
        "type": "object",
        "description": "An AWS IoT provisioning template plus a `CDF` section (see GET /provisioningTemplates/greengrass2_core). Values may use `Ref`, `Fn::Join` and `Fn::Sub`; every `Ref` must name a parameter when a core or device is provisioned with it (checked then, 422).",
        "required": ["Resources"],
        "additionalProperties": false,
        "properties": {
            "Parameters": { "type": "object", "additionalProperties": { "type": "object" } },
            "Resources": {
                "type": "object",
                "additionalProperties": { "oneOf": [
                    resource("AWS::IoT::Thing", true, &json!({
                        "type": "object",
                        "required": ["ThingName"],
                        "additionalProperties": false,
                        "properties": {
                            "ThingName": expression,
                            "ThingTypeName": expression,
                            "AttributePayload": { "type": "object", "additionalProperties": expression },
                            "ThingGroups": { "type": "array", "items": expression }
                        }
                    })),
                    resource("AWS::IoT::Certificate", false, &json!({
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "CertificateId": {},
                            "CertificatePem": {},
                            "CACertificatePem": {},
                            "Status": { "enum": ["ACTIVE", "INACTIVE"] }
                        }
                    })),
                    resource("AWS::IoT::Policy", true, &json!({
                        "type": "object",
                        "required": ["PolicyName"],
                        "properties": { "PolicyName": expression, "PolicyDocument": document }
                    }))
                ] }
            },
            "CDF": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "createDeviceCertificate": { "type": "boolean" },
                    "registerDeviceCertificateWithoutCA": { "type": "boolean" },
                    "clientIdMustMatchThingName": { "type": "boolean" },
                    "attachAdditionalPolicies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": { "name": expression, "document": document }
                        }
                    }
                }
            },
            "DeviceConfiguration": { "type": "object" }
        }
    })
}

/// One resource type of a provisioning template: `Type` names it, `Properties` holds its settings.
fn resource(kind: &str, properties_required: bool, properties: &serde_json::Value) -> serde_json::Value {
    let required = if properties_required { json!(["Type", "Properties"]) } else { json!(["Type"]) };
    json!({
        "type": "object",
        "required": required,
        "properties": { "Type": { "const": kind }, "Properties": properties }
    })
}

/// The schema of a value in a provisioning template: a literal or an intrinsic function.
pub(crate) fn expression_schema() -> serde_json::Value {
    let expression = json!({ "$ref": "#/components/schemas/ProvisioningTemplateExpression" });
    json!({
        "description": "A literal, `{\"Ref\": parameter}`, `{\"Fn::Join\": [separator, [values]]}` or `{\"Fn::Sub\": \"text with ${parameter}\"}`",
        "anyOf": [
            { "type": "string" },
            { "type": "number" },
            { "type": "boolean" },
            { "type": "object", "required": ["Ref"], "additionalProperties": false, "properties": { "Ref": { "type": "string" } } },
            { "type": "object", "required": ["Fn::Sub"], "additionalProperties": false, "properties": { "Fn::Sub": { "type": "string" } } },
            {
                "type": "object",
                "required": ["Fn::Join"],
                "additionalProperties": false,
                "properties": {
                    "Fn::Join": {
                        "type": "array",
                        "prefixItems": [{ "type": "string" }, { "type": "array", "items": expression }],
                        // For tools that read only `items` (no entry follows the two above).
                        "items": { "anyOf": [{ "type": "string" }, { "type": "array", "items": expression }] },
                        "minItems": 2,
                        "maxItems": 2
                    }
                }
            }
        ]
    })
}

/// Store a provisioning template (an AWS IoT provisioning template plus a `CDF` section).
/// It is checked first: constructs ggprov cannot interpret are refused with their name.
#[utoipa::path(
    put, path = "/provisioningTemplates/{name}", tag = TAG, operation_id = "putProvisioningTemplate",
    params(("name" = String, Path, description = "Template name", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$", min_length = 1, max_length = 128)),
    request_body(content((ProvisioningTemplateDocument = "application/vnd.aws-cdf-v1.0+json"), (ProvisioningTemplateDocument = "application/json"))),
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
    params(("name" = String, Path, description = "Template name", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$", min_length = 1, max_length = 128)),
    responses((status = 200, body = ProvisioningTemplateDocument, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 404, body = ErrorBody))
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
    params(("name" = String, Path, description = "Template name", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$", min_length = 1, max_length = 128)),
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
