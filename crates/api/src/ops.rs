//! Operations around the API: request metrics and `GET /metrics`, and authentication.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ggprov_domain::metrics::Metrics;

use crate::error::ApiError;
use crate::state::AppState;

/// A method as a metric label: the standard ones by name, anything a client made up `other`,
/// so that requests cannot grow the label sets without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts every request by route template (unmatched paths share one label), method and
/// status, and its latency.
pub(crate) async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics.inc("ggprov_http_requests_total", &[("route", &route), ("method", method), ("status", &status)], 1.0);
    metrics.observe(
        "ggprov_http_request_duration_seconds",
        &[("route", &route), ("method", method)],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(gauges) = &state.gauges {
        gauges.refresh(&state.metrics).await;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

/// Why a request may not proceed.
#[derive(Debug)]
pub enum AuthError {
    /// No or invalid credentials: 401.
    Unauthenticated(String),
    /// Valid credentials that may not do this: 403.
    Forbidden(String),
}

/// Decides whether a request may proceed. `write` is true for methods that change state.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// Checks the request's credentials for a read (`write` false) or a change of state.
    async fn authenticate(&self, headers: &HeaderMap, write: bool) -> Result<Access, AuthError>;
}

/// What an authenticated caller may do, for handlers that show more to writers (presigned
/// links to certs bundles, which hold private keys). Without authentication anyone may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub can_write: bool,
}

/// Paths that stay open whatever the authentication: liveness, readiness, metrics.
fn is_open(path: &str) -> bool {
    let path = path.trim_end_matches('/').to_ascii_lowercase();
    matches!(path.as_str(), "/health" | "/ready" | "/metrics")
}

/// In a worker-role process, everything but the operations endpoints is absent.
pub(crate) async fn operations_only(State(only): State<bool>, request: Request, next: Next) -> Response {
    if only && !is_open(request.uri().path()) {
        return ApiError::not_found(
            "ROUTE_NOT_FOUND",
            "this process runs the worker role: it serves /health, /ready and /metrics only; call the API processes",
        )
        .into_response();
    }
    next.run(request).await
}

pub(crate) async fn authenticate(
    State(auth): State<Option<Arc<dyn Authenticator>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else { return next.run(request).await };
    // CORS preflights carry no credentials by design.
    // The dashboard's static files hold no data; its API calls carry the credentials.
    if request.method() == Method::OPTIONS || is_open(request.uri().path()) || crate::ui::is_asset(request.uri().path())
    {
        return next.run(request).await;
    }
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    match auth.authenticate(request.headers(), write).await {
        Ok(access) => {
            let mut request = request;
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err(AuthError::Unauthenticated(message)) => {
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            response
        }
        Err(AuthError::Forbidden(message)) => {
            ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message).into_response()
        }
    }
}
