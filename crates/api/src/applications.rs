//! Docker Compose applications: `POST /applications`, `PUT/GET/DELETE /applications/{name}`,
//! `GET /applications`, `GET /applications/{name}/versions[/{version}]`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ggprov_domain::application::{
    Application, ApplicationInput, ApplicationName, ApplicationOptions, ApplicationState, ComposeService, ImageTarball,
    RegistryCredential, ResolvedOptions, StoredArtifact,
};
use ggprov_domain::application_service::ApplicationError;
use ggprov_domain::{FieldProblem, Problems, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{LastEvaluatedName, LastEvaluatedVersion, Pagination, parse_count};
use crate::state::AppState;

const TAG: &str = "Applications";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_application, list_applications))
        .routes(routes!(get_application, update_application, delete_application))
        .routes(routes!(list_application_versions))
        .routes(routes!(get_application_version))
}

/// An application as created or updated. On `PUT` the name in the path is used.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationBody {
    /// Application name: 1–64 ASCII letters, digits, `_` and `-`, starting with a letter or
    /// digit. Required on `POST`; on `PUT`, leave it out or repeat the path's name. The
    /// component is `<prefix>.<name>`.
    #[schema(example = "shop", nullable = false, pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    name: Option<String>,
    #[schema(nullable = false, max_length = 1024)]
    description: Option<String>,
    /// The Docker Compose file (YAML text, at most 256 KiB: 413 above).
    #[schema(required, nullable = false, example = "services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n")]
    compose: Option<String>,
    #[schema(nullable = false)]
    options: Option<ApplicationOptions>,
    /// Credentials per registry (Secrets Manager secrets named `greengrass-*`).
    #[schema(nullable = false)]
    registry_credentials: Option<Vec<RegistryCredential>>,
    /// Image tarballs (`docker save`) in the artifact store, loaded before `up`.
    #[schema(nullable = false)]
    images: Option<Vec<ImageTarball>>,
}

impl crate::body_schema::BodySchema for ApplicationBody {
    const SCHEMA: Option<&'static str> = Some("ApplicationBody");
}

impl ApplicationBody {
    fn into_input(self, problems: &mut Problems) -> Option<ApplicationInput> {
        let Some(compose) = self.compose else {
            problems.add("compose", "is required: the Docker Compose file as text");
            return None;
        };
        Some(ApplicationInput {
            description: self.description,
            compose,
            options: self.options.unwrap_or_default(),
            registry_credentials: self.registry_credentials.unwrap_or_default(),
            images: self.images.unwrap_or_default(),
        })
    }
}

/// An application version. Lists show the summary (no `compose`, `recipe`, `iamStatements`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationResource {
    #[schema(example = "shop")]
    name: String,
    #[schema(example = 1)]
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// `Published` (the component is in the catalogue: templates can name it) or `Pending`.
    #[schema(example = "Published")]
    state: String,
    #[schema(example = "ggprov.app.shop")]
    component_name: String,
    #[schema(example = "1.0.0")]
    component_version: String,
    #[schema(value_type = Object)]
    options: ResolvedOptions,
    #[schema(value_type = Vec<Object>)]
    registry_credentials: Vec<RegistryCredential>,
    #[schema(value_type = Vec<Object>)]
    images: Vec<ImageTarball>,
    /// The services, their parsed and classified images, container names and host ports.
    #[schema(value_type = Vec<Object>)]
    services: Vec<ComposeService>,
    /// What works but is not reproducible or is ignored (`:latest` images, `build:`, ...).
    warnings: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    artifacts: Vec<StoredArtifact>,
    #[schema(value_type = String, example = "2026-12-01T10:00:00.000Z")]
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    compose: Option<String>,
    /// The generated Greengrass recipe.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    recipe: Option<serde_json::Value>,
    /// IAM policy statements the core's token exchange role needs for this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    iam_statements: Option<Vec<serde_json::Value>>,
}

impl ApplicationResource {
    fn full(app: Application) -> Self {
        let compose = Some(app.compose.clone());
        let recipe = Some(app.recipe.clone());
        let iam = Some(app.iam_statements.clone());
        Self { compose, recipe, iam_statements: iam, ..Self::summary(app) }
    }

    fn summary(app: Application) -> Self {
        Self {
            name: app.name.as_str().to_owned(),
            version: app.version,
            description: app.description,
            state: match app.state {
                ApplicationState::Pending => "Pending".to_owned(),
                ApplicationState::Published => "Published".to_owned(),
            },
            component_name: app.component_name.as_str().to_owned(),
            component_version: app.component_version.as_str().to_owned(),
            options: app.options,
            registry_credentials: app.registry_credentials,
            images: app.images,
            services: app.services,
            warnings: app.warnings,
            artifacts: app.artifacts,
            created_at: app.created_at,
            compose: None,
            recipe: None,
            iam_statements: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApplicationList<K> {
    applications: Vec<ApplicationResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<K>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListApplicationsQuery {
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    exclusive_start_name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListApplicationVersionsQuery {
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    #[param(value_type = Option<u32>, minimum = 0, maximum = 4294967295_u64)]
    exclusive_start_version: Option<String>,
}

impl From<ApplicationError> for ApiError {
    fn from(err: ApplicationError) -> Self {
        let message = err.to_string();
        match err {
            ApplicationError::NotFound(_) | ApplicationError::VersionNotFound { .. } => {
                Self::not_found("APPLICATION_NOT_FOUND", message)
            }
            ApplicationError::AlreadyExists(_) => Self::new(StatusCode::CONFLICT, "APPLICATION_EXISTS", message),
            ApplicationError::TooLarge(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message),
            ApplicationError::Invalid(problems) => Self::validation(problems.into_vec()),
            ApplicationError::InUse { .. } => Self::new(StatusCode::CONFLICT, "APPLICATION_IN_USE", message),
            ApplicationError::Contended(_) => Self::new(StatusCode::CONFLICT, "APPLICATION_CONTENDED", message),
            ApplicationError::Refused { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "COMPONENT_REFUSED", message)
            }
            ApplicationError::NotPublished { source, .. } => Self::unavailable(message, source),
            ApplicationError::Cloud(source) => Self::unavailable(message, source),
            ApplicationError::Store(store) => store.into(),
        }
    }
}

fn existing_name(name: &str) -> Result<ApplicationName, ApiError> {
    ApplicationName::parse(name)
        .map_err(|_| ApiError::not_found("APPLICATION_NOT_FOUND", format!("application '{name}' does not exist")))
}

/// `Location`, `x-name`, `x-version`, and one `Warning` (RFC 9111 form, code 299) per warning.
fn application_headers(app: &Application) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let name = app.name.as_str();
    for (key, value) in [
        (header::LOCATION, format!("/applications/{name}")),
        (HeaderName::from_static("x-name"), name.to_owned()),
        (HeaderName::from_static("x-version"), app.version.to_string()),
    ] {
        headers.insert(key, HeaderValue::from_str(&value).expect("application names are header-safe"));
    }
    for warning in &app.warnings {
        let text: String = warning
            .chars()
            .map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c })
            .collect();
        if let Ok(value) = HeaderValue::from_str(&format!("299 ggprov \"{text}\"")) {
            headers.append(header::WARNING, value);
        }
    }
    headers
}

#[utoipa::path(
    post, path = "/applications", tag = TAG, operation_id = "createApplication",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]+$", min_length = 1, max_length = 255, description = "Optional. The same key with the same request within 24 h gets the first answer again; with another request, 422 IDEMPOTENCY_KEY_REUSED; while the first is still being answered, 409 IDEMPOTENT_REQUEST_IN_PROGRESS.")),
    request_body(content(
        (ApplicationBody = "application/vnd.aws-cdf-v1.0+json"),
        (ApplicationBody = "application/json"),
    )),
    responses(
        (status = 201, description = "Created and published as component version 1.0.0; the body is the version, with its warnings", body = ApplicationResource, content_type = "application/vnd.aws-cdf-v1.0+json", headers(
            ("location" = String, description = "`/applications/{name}`"),
            ("x-version" = String, description = "`1`"),
            ("warning" = String, description = "One per warning: `299 ggprov \"text\"`"),
        )),
        (status = 400, description = "`VALIDATION_FAILED`: every problem with its field (`compose` problems name the line): YAML that does not parse, no `services`, a service without `image` or with `build:` only, an image reference that does not parse, private ECR in another region, a container name or host port used twice, a secret ARN that is not `greengrass-*`, an image tarball that is not in the artifact store", body = ErrorBody),
        (status = 409, description = "`APPLICATION_EXISTS`; or IDEMPOTENT_REQUEST_IN_PROGRESS (Retry-After)", body = ErrorBody),
        (status = 413, description = "The Compose file is over 256 KiB, or the body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED; or `COMPONENT_REFUSED`: Greengrass refused the generated component", body = ErrorBody),
        (status = 503, description = "Stored but not published yet (Greengrass or the artifact store failed); retrying the same request finishes it", body = ErrorBody),
    )
)]
pub(crate) async fn create_application(
    State(state): State<AppState>,
    CdfJson(mut body): CdfJson<ApplicationBody>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let name = match body.name.take() {
        None => {
            problems.add("name", "is required");
            None
        }
        Some(text) => problems.check("name", ApplicationName::parse(&text)),
    };
    let input = body.into_input(&mut problems);
    let (Some(name), Some(input)) = (name, input) else {
        return Err(ApiError::validation(problems.into_vec()));
    };
    let app = state.applications.create(name, input).await?;
    Ok((StatusCode::CREATED, application_headers(&app), Cdf(ApplicationResource::full(app))).into_response())
}

#[utoipa::path(
    put, path = "/applications/{name}", tag = TAG, operation_id = "updateApplication",
    params(("name" = String, Path, description = "Application name")),
    request_body(content(
        (ApplicationBody = "application/vnd.aws-cdf-v1.0+json"),
        (ApplicationBody = "application/json"),
    )),
    responses(
        (status = 204, description = "The next version, published; no body", headers(
            ("location" = String, description = "`/applications/{name}`"),
            ("x-version" = String, description = "the new version number"),
            ("warning" = String, description = "One per warning: `299 ggprov \"text\"`"),
        )),
        (status = 400, description = "`VALIDATION_FAILED` (as for `POST`)", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 409, description = "`APPLICATION_CONTENDED`: other updates kept winning; retry", body = ErrorBody),
        (status = 413, description = "The Compose file is over 256 KiB, or the body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Unsupported media type", body = ErrorBody),
        (status = 503, description = "Stored but not published yet; retrying the same request finishes it", body = ErrorBody),
    )
)]
pub(crate) async fn update_application(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CdfJson(body): CdfJson<ApplicationBody>,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    if let Some(in_body) = body.name.as_deref() {
        match ApplicationName::parse(in_body) {
            Err(why) => problems.add("name", why),
            Ok(_) if in_body != name => problems
                .add("name", format!("is '{in_body}' but the path names '{name}'; leave it out or make them equal")),
            Ok(_) => {}
        }
    }
    let input = body.into_input(&mut problems);
    let name = existing_name(&name)?;
    let Some(input) = input.filter(|_| problems.is_empty()) else {
        return Err(ApiError::validation(problems.into_vec()));
    };
    let app = state.applications.update(name, input).await?;
    Ok((StatusCode::NO_CONTENT, application_headers(&app)).into_response())
}

#[utoipa::path(
    get, path = "/applications/{name}", tag = TAG, operation_id = "getApplication",
    params(("name" = String, Path, description = "Application name")),
    responses(
        (status = 200, description = "The latest version, with its Compose file, recipe and IAM statements", body = ApplicationResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn get_application(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Cdf<ApplicationResource>, ApiError> {
    Ok(Cdf(ApplicationResource::full(state.applications.get(&existing_name(&name)?).await?)))
}

#[utoipa::path(
    delete, path = "/applications/{name}", tag = TAG, operation_id = "deleteApplication",
    params(("name" = String, Path, description = "Application name")),
    responses(
        (status = 204, description = "Deleted: every version, its component versions and its artifacts"),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 409, description = "`APPLICATION_IN_USE`: template versions still name its component (listed in the message)", body = ErrorBody),
    )
)]
pub(crate) async fn delete_application(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.applications.delete(&existing_name(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn bad_query(field: &str, problem: String) -> ApiError {
    ApiError::validation(vec![FieldProblem { field: field.into(), problem }])
}

#[utoipa::path(
    get, path = "/applications", tag = TAG, operation_id = "listApplications",
    params(ListApplicationsQuery),
    responses(
        (status = 200, description = "Latest versions by name (summaries)", body = ApplicationList<LastEvaluatedName>, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid `count` or `exclusiveStartName`", body = ErrorBody),
    )
)]
pub(crate) async fn list_applications(
    State(state): State<AppState>,
    Query(query): Query<ListApplicationsQuery>,
) -> Result<Cdf<ApplicationList<LastEvaluatedName>>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let start = match query.exclusive_start_name.as_deref() {
        Some(name) => Some(ApplicationName::parse(name).map_err(|e| bad_query("exclusiveStartName", e))?),
        None => None,
    };
    let page = state.applications.list(count.page(start)).await?;
    Ok(Cdf(ApplicationList {
        applications: page.items.into_iter().map(ApplicationResource::summary).collect(),
        pagination: Pagination::form_a(
            &count,
            page.last_evaluated.map(|n| LastEvaluatedName { name: n.as_str().to_owned() }),
        ),
    }))
}

#[utoipa::path(
    get, path = "/applications/{name}/versions", tag = TAG, operation_id = "listApplicationVersions",
    params(("name" = String, Path, description = "Application name"), ListApplicationVersionsQuery),
    responses(
        (status = 200, description = "Every version, oldest first (summaries)", body = ApplicationList<LastEvaluatedVersion>, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid `count` or `exclusiveStartVersion`", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
    )
)]
pub(crate) async fn list_application_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ListApplicationVersionsQuery>,
) -> Result<Cdf<ApplicationList<LastEvaluatedVersion>>, ApiError> {
    let count = parse_count(query.count.as_deref())?;
    let name = existing_name(&name)?;
    let start = match query.exclusive_start_version.as_deref() {
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| bad_query("exclusiveStartVersion", format!("'{text}' is not a version number")))?,
        ),
        None => None,
    };
    let page = state.applications.list_versions(&name, count.page(start)).await?;
    Ok(Cdf(ApplicationList {
        applications: page.items.into_iter().map(ApplicationResource::summary).collect(),
        pagination: Pagination::form_a(&count, page.last_evaluated.map(|version| LastEvaluatedVersion { version })),
    }))
}

#[utoipa::path(
    get, path = "/applications/{name}/versions/{version}", tag = TAG, operation_id = "getApplicationVersion",
    params(
        ("name" = String, Path, description = "Application name"),
        ("version" = String, Path, description = "A version number, or `current`"),
    ),
    responses(
        (status = 200, description = "The version with its Compose file, the generated recipe and the IAM statements the core's token exchange role needs", body = ApplicationResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such application or version", body = ErrorBody),
    )
)]
pub(crate) async fn get_application_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Cdf<ApplicationResource>, ApiError> {
    let app = state.applications.get_version(&existing_name(&name)?, &version).await?;
    Ok(Cdf(ApplicationResource::full(app)))
}
