//! The API's error type and its JSON body.
//!
//! Policy: every error response carries `{"error": CODE, "message": text}` (+ `details` for
//! validation). `error` is a stable machine-readable code; `message` tells a person what to
//! fix. 4xx errors are the client's and are not logged above debug; 5xx are logged once, here,
//! with their source, and their body reveals nothing internal.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ggprov_domain::FieldProblem;
use ggprov_domain::core_task_service::CoreTaskError;
use ggprov_domain::device_service::DeviceError;
use ggprov_domain::ports::{BoxError, StoreError};
use ggprov_domain::template_service::TemplateError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::CDF_MEDIA_TYPE;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable machine-readable code, e.g. `TEMPLATE_NOT_FOUND`.
    #[schema(example = "TEMPLATE_NOT_FOUND")]
    error: &'static str,
    /// What went wrong, in words a person can act on.
    #[schema(example = "template 'edge_cameras' does not exist")]
    message: String,
    /// For validation errors: one entry per problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<ErrorDetail>,
}

/// One validation problem.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Path of the offending field in the request, e.g. `components[0].version`.
    #[schema(example = "components[0].version")]
    field: String,
    /// What is wrong with it.
    problem: String,
}

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<FieldProblem>,
    /// The internal cause of a 5xx, logged once and never sent.
    source: Option<BoxError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new(), source: None }
    }

    /// 400 `VALIDATION_FAILED` listing every problem.
    pub fn validation(problems: Vec<FieldProblem>) -> Self {
        let message = match problems.as_slice() {
            [one] => format!("invalid request: {one}"),
            many => format!(
                "invalid request: {} problems: {}",
                many.len(),
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
        };
        Self { details: problems, ..Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", message) }
    }

    /// 422 `VALIDATION_FAILED`: the request satisfies the published schema but breaks a rule
    /// the schema cannot state (it names a provisioning template, CA or component that does
    /// not exist, lists a name twice, ...). 400 stays for what the schema says.
    pub fn unprocessable(problems: Vec<FieldProblem>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, ..Self::validation(problems) }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 500 with a generic message; `source` is logged, not sent.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "the server failed to handle the request; it has been logged with the request id",
            )
        }
    }

    /// 503: a dependency (store, cloud) failed; the client may retry.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", message)
        }
    }

    pub fn with_details(mut self, details: Vec<FieldProblem>) -> Self {
        self.details = details;
        self
    }

    /// Replaces the code.
    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// Replaces the code of a 404 (the same not-found error names different resources).
    pub(crate) fn with_code_on_404(mut self, code: &'static str) -> Self {
        if self.status == StatusCode::NOT_FOUND {
            self.code = code;
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(status = self.status.as_u16(), error.code = self.code, error.source = %source, "request failed")
                }
                None => tracing::error!(status = self.status.as_u16(), error.code = self.code, "request failed"),
            }
        } else {
            tracing::debug!(status = self.status.as_u16(), error.code = self.code, error.message = %self.message, "request rejected");
        }
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            details: self.details.into_iter().map(|p| ErrorDetail { field: p.field, problem: p.problem }).collect(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CDF_MEDIA_TYPE));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(source) => {
                Self::unavailable("the data store is unavailable; retry shortly", source)
            }
            StoreError::TooLarge(limit) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request is too large to store: {limit}; split it"),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(err: TemplateError) -> Self {
        let message = err.to_string();
        match err {
            TemplateError::NotFound(_) | TemplateError::VersionNotFound { .. } => {
                Self::not_found("TEMPLATE_NOT_FOUND", message)
            }
            TemplateError::AlreadyExists(_) => Self::new(StatusCode::CONFLICT, "TEMPLATE_EXISTS", message),
            TemplateError::InvalidComponents(problems) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_COMPONENT", message).with_details(problems)
            }
            TemplateError::Contended(_) => Self::new(StatusCode::CONFLICT, "TEMPLATE_CONTENDED", message),
            TemplateError::CatalogueUnavailable(source) => Self::unavailable(message, source),
            TemplateError::Store(store) => store.into(),
        }
    }
}

impl From<CoreTaskError> for ApiError {
    fn from(err: CoreTaskError) -> Self {
        let message = err.to_string();
        match err {
            // A device task against a core ggprov does not have, or one not yet registered
            // with Greengrass, is 400 as in the original: CDF clients rely on it.
            CoreTaskError::Invalid(problems) if problems.iter().any(|p| p.field == "coreName") => {
                Self::validation(problems)
            }
            CoreTaskError::Invalid(problems) => Self::unprocessable(problems),
            CoreTaskError::NotFound(_) => Self::not_found("CORE_TASK_NOT_FOUND", message),
            CoreTaskError::Cloud(source) => Self::unavailable(message, source),
            CoreTaskError::Busy { task, field, .. } => Self::new(StatusCode::CONFLICT, "THING_BUSY", message)
                .with_details(vec![FieldProblem { field, problem: format!("is being worked on by task {task}") }]),
            CoreTaskError::Conflict { code, .. } => Self::new(StatusCode::CONFLICT, code, message),
            CoreTaskError::Store(store) => store.into(),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(err: DeviceError) -> Self {
        let message = err.to_string();
        match err {
            DeviceError::NotFound(_) => Self::not_found("DEVICE_NOT_FOUND", message),
            DeviceError::Cloud { source, .. } if source.is_transient() => Self::unavailable(message, source),
            DeviceError::Cloud { .. } => Self::new(StatusCode::CONFLICT, "DEVICE_REMOVAL_REFUSED", message),
            DeviceError::Busy { .. } => Self::new(StatusCode::CONFLICT, "THING_BUSY", message),
            DeviceError::Store(store) => store.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ggprov_domain::TemplateName;
    use ggprov_domain::ports::CloudError;

    fn name() -> TemplateName {
        TemplateName::parse("t").unwrap()
    }

    #[test]
    fn template_errors_map_to_documented_statuses() {
        let cases: Vec<(TemplateError, u16, &str)> = vec![
            (TemplateError::NotFound(name()), 404, "TEMPLATE_NOT_FOUND"),
            (TemplateError::VersionNotFound { name: name(), version: "3".into() }, 404, "TEMPLATE_NOT_FOUND"),
            (TemplateError::AlreadyExists(name()), 409, "TEMPLATE_EXISTS"),
            (TemplateError::InvalidComponents(vec![]), 422, "INVALID_COMPONENT"),
            (TemplateError::Contended(name()), 409, "TEMPLATE_CONTENDED"),
            (
                TemplateError::CatalogueUnavailable(CloudError::Throttled { api: "GetComponentVersion" }),
                503,
                "SERVICE_UNAVAILABLE",
            ),
            (TemplateError::Store(StoreError::unavailable("disk full")), 503, "SERVICE_UNAVAILABLE"),
            (TemplateError::Store(StoreError::Conflict), 500, "INTERNAL_ERROR"),
        ];
        for (err, status, code) in cases {
            let described = format!("{err:?}");
            let api = ApiError::from(err);
            assert_eq!((api.status().as_u16(), api.code()), (status, code), "{described}");
        }
    }

    #[test]
    fn internal_errors_do_not_reveal_their_source() {
        let api = ApiError::internal("secret table name");
        assert!(!api.message.contains("secret"));
    }
}
