//! The seven template routes.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ggprov_domain::template::{ConfigurationUpdate, DeploymentPolicies, JobConfig, RunWith};
use ggprov_domain::{
    Component, ComponentName, ComponentVersion, FieldProblem, Problems, Template, TemplateName, TemplateSpec, Timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{LastEvaluatedName, LastEvaluatedVersion, Pagination, parse_count};
use crate::state::AppState;

const TAG: &str = "Templates";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template, list_templates))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(list_template_versions))
        .routes(routes!(get_template_version))
}

/// A template as created or updated (`POST /templates`, `PUT /templates/{name}`). Fields not
/// listed here (`version`, `createdAt`, ...) are ignored, so a template read with `GET` can be
/// sent back as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateBody {
    /// Template name: ASCII letters, digits, `_` and `-`, at most 86 characters. Required on
    /// `POST`; on `PUT` the name in the path is used.
    #[schema(
        example = "edge_cameras",
        nullable = false,
        pattern = "^[a-zA-Z0-9_-]+$",
        min_length = 1,
        max_length = 86
    )]
    name: Option<String>,
    /// The Greengrass components this template deploys (at least one, each key once).
    #[schema(required, nullable = false, min_items = 1)]
    components: Option<Vec<ComponentBody>>,
    job_config: Option<JobConfig>,
    deployment_policies: Option<DeploymentPolicies>,
}

impl crate::body_schema::BodySchema for TemplateBody {
    const SCHEMA: Option<&'static str> = Some("TemplateBody");
}

/// A component of a template.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ComponentBody {
    /// Greengrass component name: printable ASCII without spaces.
    #[schema(
        required,
        nullable = false,
        example = "aws.greengrass.Cli",
        pattern = "^[!-~]+$",
        min_length = 1,
        max_length = 128
    )]
    key: Option<String>,
    /// Component version, a semantic version.
    #[schema(
        required,
        nullable = false,
        example = "2.4.0",
        pattern = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-+][0-9A-Za-z-]+([.+][0-9A-Za-z-]+)*)?$",
        max_length = 64
    )]
    version: Option<String>,
    configuration_update: Option<ConfigurationUpdate>,
    run_with: Option<RunWith>,
}

impl TemplateBody {
    /// The validated content, collecting every problem: those of the fields in `problems`,
    /// those of the template's rules (`TemplateSpec::new`) in `semantic`.
    fn into_spec(self, problems: &mut Problems, semantic: &mut Vec<FieldProblem>) -> Option<TemplateSpec> {
        let Some(raw_components) = self.components else {
            problems.add("components", "is required: a non-empty list of {\"key\", \"version\"} objects");
            return None;
        };
        let mut components = Vec::with_capacity(raw_components.len());
        for (i, c) in raw_components.into_iter().enumerate() {
            let key = required(problems, &format!("components[{i}].key"), c.key, ComponentName::parse);
            let version = required(problems, &format!("components[{i}].version"), c.version, ComponentVersion::parse);
            if let (Some(key), Some(version)) = (key, version) {
                components.push(Component {
                    key,
                    version,
                    configuration_update: c.configuration_update,
                    run_with: c.run_with,
                });
            }
        }
        if !problems.is_empty() {
            return None;
        }
        match TemplateSpec::new(components, self.job_config, self.deployment_policies) {
            Ok(spec) => Some(spec),
            Err(spec_problems) => {
                *semantic = spec_problems.into_vec();
                None
            }
        }
    }
}

fn required<T, E: std::fmt::Display>(
    problems: &mut Problems,
    field: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<T> {
    match value {
        None => {
            problems.add(field, "is required");
            None
        }
        Some(text) => problems.check(field, parse(&text)),
    }
}

/// A template version as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateResource {
    #[schema(example = "edge_cameras")]
    name: String,
    /// 1 for the first version, +1 for every update.
    #[schema(example = 2)]
    version: u32,
    /// Ordered by `key`. Omitted in `GET /templates` list items.
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<Vec<Component>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_config: Option<JobConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_policies: Option<DeploymentPolicies>,
    /// When the template was first created (ISO-8601, UTC, milliseconds).
    #[schema(value_type = String, example = "2024-05-20T19:16:22.123Z")]
    created_at: Timestamp,
    /// When this version was created by an update; `null` for version 1.
    #[schema(value_type = Option<String>, example = "2024-05-21T08:00:00.000Z")]
    updated_at: Option<Timestamp>,
}

impl TemplateResource {
    fn full(t: Template) -> Self {
        let components = Some(t.spec.components().to_vec());
        Self { components, ..Self::summary(t) }
    }

    fn summary(t: Template) -> Self {
        let Template { name, version, spec, created_at, updated_at } = t;
        Self {
            name: name.as_str().to_owned(),
            version,
            components: None,
            job_config: spec.job_config().cloned(),
            deployment_policies: spec.deployment_policies().cloned(),
            created_at,
            updated_at,
        }
    }
}

/// `GET /templates` and `GET /templates/{name}/versions`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateList<K> {
    templates: Vec<TemplateResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<K>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListTemplatesQuery {
    /// Page size, 1 to 1000 (default: 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    /// `pagination.lastEvaluated.name` of the previous page.
    #[param(pattern = "^[a-zA-Z0-9_-]+$", min_length = 1, max_length = 86)]
    exclusive_start_name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListVersionsQuery {
    /// Page size, 1 to 1000 (default: 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    /// `pagination.lastEvaluated.version` of the previous page.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 4294967295_u64)]
    exclusive_start_version: Option<String>,
}

/// `Location`, `x-name` and `x-version` of a template write.
fn template_headers(template: &Template) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let name = template.name.as_str();
    // Template names are restricted to URL-safe characters: no encoding needed.
    for (key, value) in [
        (header::LOCATION, format!("/templates/{name}")),
        (HeaderName::from_static("x-name"), name.to_owned()),
        (HeaderName::from_static("x-version"), template.version.to_string()),
    ] {
        headers.insert(key, HeaderValue::from_str(&value).expect("template names are header-safe"));
    }
    headers
}

/// 400 for what the schema states; 422 when only rules beyond it are broken: a component key
/// listed twice, `merge` text that is not a JSON object, a rate-increase criterion with neither
/// count.
fn invalid(problems: Problems, spec_problems: Vec<FieldProblem>) -> ApiError {
    if !problems.is_empty() {
        return ApiError::validation(problems.into_vec());
    }
    let beyond_schema =
        |p: &FieldProblem| [".key", ".merge", ".rateIncreaseCriteria"].iter().any(|end| p.field.ends_with(end));
    if spec_problems.iter().all(beyond_schema) {
        ApiError::unprocessable(spec_problems)
    } else {
        ApiError::validation(spec_problems)
    }
}

/// A template name from a path: a name that cannot be valid cannot exist either.
fn existing_name(name: &str) -> Result<TemplateName, ApiError> {
    TemplateName::parse(name)
        .map_err(|_| ApiError::not_found("TEMPLATE_NOT_FOUND", format!("template '{name}' does not exist")))
}

/// Create a template (version 1).
#[utoipa::path(
    post, path = "/templates", tag = TAG, operation_id = "createTemplate",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]+$", min_length = 1, max_length = 255, description = "Optional. The same key with the same request within 24 h gets the first answer again (same task id); with another request, 422 IDEMPOTENCY_KEY_REUSED; while the first is still being answered, 409 IDEMPOTENT_REQUEST_IN_PROGRESS.")),
    request_body(content(
        (TemplateBody = "application/vnd.aws-cdf-v1.0+json"),
        (TemplateBody = "application/json"),
    )),
    responses(
        (status = 201, description = "Created; no body", headers(
            ("location" = String, description = "`/templates/{name}`"),
            ("x-name" = String, description = "the template name"),
            ("x-version" = String, description = "`1`"),
        )),
        (status = 400, description = "The body breaks the schema (`INVALID_JSON`, `VALIDATION_FAILED` with each field in `details`)", body = ErrorBody),
        (status = 409, description = "A template with this name exists; or IDEMPOTENT_REQUEST_IN_PROGRESS: a request with this Idempotency-Key is still being answered (Retry-After)", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used for another request; or `INVALID_COMPONENT`: a component version is not in the Greengrass catalogue; or `VALIDATION_FAILED`: a rule the schema cannot state (a key listed twice, `merge` that is not a JSON object, a value out of range)", body = ErrorBody),
    )
)]
pub(crate) async fn create_template(
    State(state): State<AppState>,
    CdfJson(mut body): CdfJson<TemplateBody>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let mut semantic = Vec::new();
    let name = required(&mut problems, "name", body.name.take(), TemplateName::parse);
    let spec = body.into_spec(&mut problems, &mut semantic);
    let (Some(name), Some(spec)) = (name, spec) else {
        return Err(invalid(problems, semantic));
    };
    let template = state.templates.create(name, spec).await?;
    Ok((StatusCode::CREATED, template_headers(&template)).into_response())
}

/// Update a template: stores its next version. The body replaces the whole content; fields
/// left out are cleared in the new version.
#[utoipa::path(
    put, path = "/templates/{name}", tag = TAG, operation_id = "updateTemplate",
    params(("name" = String, Path, description = "Template name")),
    request_body(content(
        (TemplateBody = "application/vnd.aws-cdf-v1.0+json"),
        (TemplateBody = "application/json"),
    )),
    responses(
        (status = 204, description = "Updated; no body", headers(
            ("location" = String, description = "`/templates/{name}`"),
            ("x-name" = String, description = "the template name"),
            ("x-version" = String, description = "the new version number"),
        )),
        (status = 400, description = "The body breaks the schema (`INVALID_JSON`, `VALIDATION_FAILED` with each field in `details`)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 422, description = "`INVALID_COMPONENT`: a component version is not in the Greengrass catalogue; or `VALIDATION_FAILED`: a rule the schema cannot state (a key listed twice, `merge` that is not a JSON object, a value out of range)", body = ErrorBody),
    )
)]
pub(crate) async fn update_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CdfJson(body): CdfJson<TemplateBody>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let mut semantic = Vec::new();
    let spec = body.into_spec(&mut problems, &mut semantic);
    let name = existing_name(&name)?;
    let Some(spec) = spec else {
        return Err(invalid(problems, semantic));
    };
    let template = state.templates.update(name, spec).await?;
    Ok((StatusCode::NO_CONTENT, template_headers(&template)).into_response())
}

/// The current (latest) version of a template.
#[utoipa::path(
    get, path = "/templates/{name}", tag = TAG, operation_id = "getTemplate",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, body = TemplateResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such template", body = ErrorBody),
    )
)]
pub(crate) async fn get_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Cdf<TemplateResource>, ApiError> {
    let template = state.templates.get(&existing_name(&name)?).await?;
    Ok(Cdf(TemplateResource::full(template)))
}

/// Delete a template and all its versions.
#[utoipa::path(
    delete, path = "/templates/{name}", tag = TAG, operation_id = "deleteTemplate",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such template", body = ErrorBody),
    )
)]
pub(crate) async fn delete_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.templates.delete(&existing_name(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The latest version of every template, by name (items omit `components`).
#[utoipa::path(
    get, path = "/templates", tag = TAG, operation_id = "listTemplates",
    params(ListTemplatesQuery),
    responses(
        (status = 200, body = TemplateList<LastEvaluatedName>, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid `count`", body = ErrorBody),
    )
)]
pub(crate) async fn list_templates(
    State(state): State<AppState>,
    Query(query): Query<ListTemplatesQuery>,
) -> Result<Cdf<TemplateList<LastEvaluatedName>>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let start = match query.exclusive_start_name.as_deref() {
        Some(name) => Some(TemplateName::parse(name).map_err(|err| {
            ApiError::validation(vec![ggprov_domain::FieldProblem {
                field: "exclusiveStartName".into(),
                problem: err.to_string(),
            }])
        })?),
        None => None,
    };
    let page = state.templates.list(count.page(start)).await?;
    Ok(Cdf(TemplateList {
        templates: page.items.into_iter().map(TemplateResource::summary).collect(),
        pagination: Pagination::form_a(
            &count,
            page.last_evaluated.map(|n| LastEvaluatedName { name: n.as_str().to_owned() }),
        ),
    }))
}

/// Every version of a template, in ascending numeric order (`[]` for an unknown template).
#[utoipa::path(
    get, path = "/templates/{name}/versions", tag = TAG, operation_id = "listTemplateVersions",
    params(("name" = String, Path, description = "Template name"), ListVersionsQuery),
    responses(
        (status = 200, body = TemplateList<LastEvaluatedVersion>, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid `count` or `exclusiveStartVersion`", body = ErrorBody),
    )
)]
pub(crate) async fn list_template_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ListVersionsQuery>,
) -> Result<Cdf<TemplateList<LastEvaluatedVersion>>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let start = match query.exclusive_start_version.as_deref() {
        Some(text) => Some(text.parse::<u32>().map_err(|_| {
            ApiError::validation(vec![ggprov_domain::FieldProblem {
                field: "exclusiveStartVersion".into(),
                problem: format!(
                    "'{text}' is not a version number; use pagination.lastEvaluated.version of the previous page"
                ),
            }])
        })?),
        None => None,
    };
    let Ok(name) = TemplateName::parse(&name) else {
        return Ok(Cdf(TemplateList { templates: vec![], pagination: Pagination::form_a(&count, None) }));
    };
    let page = state.templates.list_versions(&name, count.page(start)).await?;
    Ok(Cdf(TemplateList {
        templates: page.items.into_iter().map(TemplateResource::full).collect(),
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|version| LastEvaluatedVersion { version })),
    }))
}

/// One version of a template; `current` names the latest.
#[utoipa::path(
    get, path = "/templates/{name}/versions/{version}", tag = TAG, operation_id = "getTemplateVersion",
    params(
        ("name" = String, Path, description = "Template name"),
        ("version" = String, Path, description = "Version number, or `current`"),
    ),
    responses(
        (status = 200, body = TemplateResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such template or version", body = ErrorBody),
    )
)]
pub(crate) async fn get_template_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Cdf<TemplateResource>, ApiError> {
    let template = state.templates.get_version(&existing_name(&name)?, &version).await?;
    Ok(Cdf(TemplateResource::full(template)))
}
