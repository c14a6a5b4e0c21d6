//! The OpenAPI document, generated from the handlers.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::CDF_MEDIA_TYPE;

use crate::router::api_router;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ggprov",
        description = "Provision and deploy to fleets of AWS IoT Greengrass V2 core devices and their client devices. \
                       Wire-compatible with the CDF greengrass2-provisioning module: request and response bodies use \
                       `application/vnd.aws-cdf-v1.0+json` (`application/json` is accepted too). Every error has the body \
                       `{\"error\": CODE, \"message\": text}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "Templates", description = "Versioned sets of Greengrass components and their deployment settings"),
        (name = "Applications", description = "Docker Compose applications, each version a generated Greengrass component that templates deploy"),
        (name = "Core tasks", description = "Provision and delete Greengrass cores in bulk, asynchronously"),
        (name = "Cores", description = "Provisioned cores, their artifacts and live Greengrass status"),
        (name = "Client devices", description = "Provision client devices in bulk and associate them with their core"),
        (name = "Deployment tasks", description = "Roll template versions out to cores: one Greengrass deployment per template version"),
        (name = "Fleet", description = "Desired, reported and failed template versions across the fleet"),
        (name = "Certificates", description = "Every core's and client device's certificate: expiry you can see, revocation that sticks (ggprov extension)"),
        (name = "Core software", description = "Which nucleus each core runs on which platform, and nucleus updates through templates"),
        (name = "Provisioning templates", description = "CDF provisioning templates used to provision cores and devices"),
        (name = "Events", description = "Lifecycle events (what is published to EventBridge)"),
        (name = "Operations", description = "Health, readiness and API documentation"),
    )
)]
struct ApiDoc;

/// The complete OpenAPI document of the API, as JSON.
pub fn openapi() -> Value {
    let (_, api) = api_router().split_for_parts();
    finish(&api)
}

pub(crate) fn base() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The operational routes: plain `application/json`, outside the CDF media-type rule.
pub(crate) const OPERATIONAL_PATHS: &[&str] = &["/health", "/ready"];

/// Answers any CDF operation can give besides its own, each with the JSON error body.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("401", "`UNAUTHENTICATED`: authentication is configured and the request has no valid credentials"),
    ("403", "`FORBIDDEN`: the caller may read but not write"),
    ("415", "`UNSUPPORTED_MEDIA_TYPE`: `Accept` names only types this API cannot produce, or a body is not JSON"),
    ("500", "`INTERNAL_ERROR`: an unexpected failure; nothing half-done is left behind, retry"),
    ("503", "`REQUEST_TIMEOUT` or `SERVICE_UNAVAILABLE` (a backend cannot be reached); retry later"),
];

/// Answers of any operation that takes a body.
const BODY_ERRORS: &[(&str, &str)] = &[
    ("400", "`INVALID_JSON` or `VALIDATION_FAILED` (each problem with its field in `details`)"),
    ("413", "`PAYLOAD_TOO_LARGE`: the body is larger than 1 MiB"),
];

/// A stateful link: from (operation id, status), named, to an operation id, with parameters.
type Link = (&'static str, &'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

/// What a client can do next with what an answer names.
#[rustfmt::skip]
const LINKS: &[Link] = &[
    ("createTemplate", "201", "GetTemplate", "getTemplate", &[("name", "$response.header.x-name")]),
    ("createTemplate", "201", "UpdateTemplate", "updateTemplate", &[("name", "$response.header.x-name")]),
    ("createTemplate", "201", "ListTemplateVersions", "listTemplateVersions", &[("name", "$response.header.x-name")]),
    ("createTemplate", "201", "GetTemplateVersion", "getTemplateVersion", &[("name", "$response.header.x-name"), ("version", "$response.header.x-version")]),
    ("createTemplate", "201", "DeleteTemplate", "deleteTemplate", &[("name", "$response.header.x-name")]),
    ("updateTemplate", "204", "GetTemplateVersion", "getTemplateVersion", &[("name", "$response.header.x-name"), ("version", "$response.header.x-version")]),
    ("createCoreTask", "202", "GetCoreTask", "getCoreTask", &[("taskId", "$response.header.x-taskid")]),
    ("createDeviceTask", "202", "GetDeviceTask", "getDeviceTask", &[("taskId", "$response.header.x-taskid")]),
    ("createDeploymentTask", "202", "GetDeploymentTask", "getDeploymentTask", &[("taskId", "$response.header.x-taskid")]),
    ("createDeploymentTask", "202", "ListDeploymentTaskCores", "listDeploymentTaskCores", &[("taskId", "$response.header.x-taskid")]),
    ("putProvisioningTemplate", "204", "GetProvisioningTemplate", "getProvisioningTemplate", &[("name", "$request.path.name")]),
    ("putProvisioningTemplate", "204", "DeleteProvisioningTemplate", "deleteProvisioningTemplate", &[("name", "$request.path.name")]),
];

/// What the handlers' attributes cannot say once per operation: the CDF media type on every
/// error body, the errors every operation can give, the request id header, and the links
/// between operations. Applied to the generated document, never to a hand-edited one.
/// The result is JSON because some of it (the provisioning template document's schema) uses
/// JSON Schema keywords utoipa's types do not model.
pub(crate) fn finish(api: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(api).expect("the OpenAPI document serialises");
    unsigned_32_bit(&mut doc);
    schemas_beyond_utoipa(&mut doc);
    let error_content = json!({ CDF_MEDIA_TYPE: { "schema": { "$ref": "#/components/schemas/ErrorBody" } } });
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let operational = OPERATIONAL_PATHS.contains(&path.as_str());
            for operation in item.as_object_mut().into_iter().flat_map(|item| item.values_mut()) {
                if let Some(operation) = operation.as_object_mut() {
                    operation_conventions(operation, operational, &error_content);
                }
            }
        }
    }
    add_links(&mut doc);
    doc
}

/// Schema that attributes cannot produce: the provisioning template document, the name POST
/// /templates requires, and the `options` a `Delete` task requires.
fn schemas_beyond_utoipa(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["ProvisioningTemplateDocument"] = crate::provisioning_templates::document_schema();
    schemas["ProvisioningTemplateExpression"] = crate::provisioning_templates::expression_schema();
    // POST /templates needs the name that PUT takes from its path.
    schemas["NewTemplateBody"] = json!({
        "description": "A new template: `name` and the content of its version 1.",
        "allOf": [{ "$ref": "#/components/schemas/TemplateBody" }, { "required": ["name"] }]
    });
    for body in ["NewCoreTaskBody", "NewDeviceTaskBody"] {
        schemas[body]["if"] = json!({"properties": {"type": {"const": "Delete"}}, "required": ["type"]});
        schemas[body]["then"] =
            json!({"required": ["options"], "properties": {"options": {"type": "object", "minProperties": 1}}});
    }
    // coreVersion, or a template to take it from.
    schemas["NewCoreTaskBody"]["allOf"] =
        json!([{"if": {"not": {"required": ["template"]}}, "then": {"required": ["coreVersion"]}}]);
    // A wave is a percentage or a count, never both; a failure threshold names at least one.
    schemas["WaveStep"]["oneOf"] = json!([{"required": ["percent"]}, {"required": ["count"]}]);
    schemas["FailureThreshold"]["minProperties"] = json!(1);
    for media in [CDF_MEDIA_TYPE, "application/json"] {
        doc["paths"]["/templates"]["post"]["requestBody"]["content"][media]["schema"] =
            json!({ "$ref": "#/components/schemas/NewTemplateBody" });
    }
}

/// One operation's answers as the server gives them: required bodies, the errors every
/// operation can give, the CDF media type on every body, a description on every response, and
/// the headers sent.
fn operation_conventions(operation: &mut serde_json::Map<String, Value>, operational: bool, error_content: &Value) {
    let has_body = operation.contains_key("requestBody");
    if let Some(body) = operation.get_mut("requestBody").and_then(Value::as_object_mut) {
        // Every body is required: a missing or empty one is a 400.
        body.insert("required".into(), Value::Bool(true));
    }
    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { return };
    if !operational {
        let extra = COMMON_ERRORS.iter().chain(if has_body { BODY_ERRORS } else { &[] });
        for (status, description) in extra {
            responses.entry(*status).or_insert_with(|| json!({ "description": description, "content": error_content }));
        }
    }
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else { continue };
        // OpenAPI requires a description on every response.
        if response.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Answer");
            response.insert("description".into(), Value::from(reason));
        }
        if !operational
            && let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
            && let Some(json) = content.remove("application/json")
        {
            content.entry(CDF_MEDIA_TYPE).or_insert(json);
        }
        if status.starts_with(['4', '5']) && !response.contains_key("content") {
            response.insert("content".into(), error_content.clone());
        }
        let Some(headers) = response.entry("headers").or_insert_with(|| json!({})).as_object_mut() else { continue };
        headers.entry("x-request-id").or_insert_with(|| {
            json!({
                "description": "The request's id (the caller's own `x-request-id`, or a new UUID); it is in the server's log lines",
                "schema": { "type": "string" }
            })
        });
        if status == "401" {
            headers.entry("WWW-Authenticate").or_insert_with(
                || json!({"description": "`Bearer`: how to authenticate", "schema": {"type": "string"}}),
            );
        }
        if status == "409" && has_body {
            headers.entry("Retry-After").or_insert_with(|| {
                json!({
                    "description": "With `IDEMPOTENT_REQUEST_IN_PROGRESS`: seconds to wait before sending the request again",
                    "schema": {"type": "integer"}
                })
            });
        }
    }
}

/// The `LINKS`, on the responses they start from.
fn add_links(doc: &mut Value) {
    let mut operations = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if let Some(id) = operation["operationId"].as_str() {
                operations.insert(id.to_owned(), (path.clone(), method.clone()));
            }
        }
    }
    for (from, status, name, to, parameters) in LINKS {
        assert!(operations.contains_key(*to), "link target {to} is an operation");
        let (path, method) = operations.get(*from).unwrap_or_else(|| panic!("link source {from} is an operation"));
        let response = &mut doc["paths"][path][method]["responses"][*status];
        assert!(response.is_object(), "{from} documents {status}");
        let parameters: serde_json::Map<String, Value> =
            parameters.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
        response["links"][*name] = json!({ "operationId": to, "parameters": parameters });
    }
}

/// utoipa writes a `u32` as `format: int32`, whose range ends at 2^31 - 1, while the server
/// takes values up to 2^32 - 1: such schemas become `int64` bounded by 0 and 2^32 - 1.
fn unsigned_32_bit(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let unsigned = map.get("format").and_then(Value::as_str) == Some("int32")
                && map.get("minimum").and_then(Value::as_f64).is_some_and(|m| m >= 0.0);
            if unsigned {
                map.insert("format".into(), Value::from("int64"));
                map.entry("maximum").or_insert_with(|| Value::from(u32::MAX));
            }
            map.values_mut().for_each(unsigned_32_bit);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_32_bit),
        _ => {}
    }
}
