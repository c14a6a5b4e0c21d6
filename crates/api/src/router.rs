//! Assembles the router and the HTTP conventions around it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use tower::{Layer, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::cors::{CorsOrigins, cors};
use crate::error::ApiError;
use crate::media::{MAX_BODY_BYTES, require_acceptable};
use crate::paths::normalize_request;
use crate::state::AppState;
use crate::{
    applications, certificates, core_tasks, cores, deployment_tasks, devices, health, openapi, provisioning_templates,
    rotation_tasks, software, templates,
};

/// HTTP settings of the API.
#[derive(Clone)]
pub struct HttpConfig {
    pub cors: CorsOrigins,
    /// A path prefix to remove before routing (API Gateway custom-domain base path).
    pub base_path: Option<String>,
    /// `None`: every request is let through (`GGPROV_AUTH=none`).
    pub auth: Option<Arc<dyn crate::ops::Authenticator>>,
    /// Serve only `/health`, `/ready` and `/metrics` (a worker-role process).
    pub operations_only: bool,
    /// The longest a request may take, body included (503 `REQUEST_TIMEOUT` after).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("cors", &self.cors)
            .field("base_path", &self.base_path)
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cors: CorsOrigins::Disabled,
            base_path: None,
            auth: None,
            operations_only: false,
            request_timeout: Duration::from_secs(60),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every documented route with its handler: the CDF routes under the media-type rule, the
/// operational ones outside it.
pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    let cdf = templates::routes()
        .merge(applications::routes())
        .merge(core_tasks::routes())
        .merge(cores::routes())
        .merge(devices::routes())
        .merge(deployment_tasks::routes())
        .merge(provisioning_templates::routes())
        .merge(software::routes())
        .merge(certificates::routes())
        .merge(rotation_tasks::routes())
        .route_layer(middleware::from_fn(require_acceptable));
    OpenApiRouter::with_openapi(openapi::base()).merge(cdf).merge(health::routes()).merge(crate::live::routes())
}

/// The complete HTTP application, ready for `axum::serve`.
/// `extra` holds routes outside the API document (the local cloud's control surface); they get
/// the same HTTP conventions (request ids, CORS, body limit, JSON errors).
pub fn app(
    state: AppState,
    config: &HttpConfig,
    extra: Router,
) -> axum::routing::IntoMakeService<
    impl Clone
    + tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send>
    + Send
    + 'static,
> {
    let (router, api) = api_router().split_for_parts();
    let api = openapi::finish(&api);
    let metrics = state.metrics.clone();
    let state_for_idempotency = state.clone();
    let router: Router = router
        .route("/metrics", axum::routing::get(crate::ops::metrics))
        .with_state(state)
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", api))
        .merge(crate::ui::router())
        .merge(extra)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state_for_idempotency, crate::idempotency::idempotent))
        .layer(middleware::from_fn_with_state(config.auth.clone(), crate::ops::authenticate))
        .layer(middleware::from_fn_with_state(config.operations_only, crate::ops::operations_only))
        .layer(middleware::from_fn_with_state(config.request_timeout, request_timeout))
        .layer(middleware::from_fn_with_state(metrics, crate::ops::record))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
                        })
                        .on_response(|response: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                            tracing::info!(status = response.status().as_u16(), latency_ms = latency.as_millis() as u64, "served");
                        }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        );
    // Around the whole router, not each route: the router adds `Allow` to a 405 only outside
    // the route's own layers, and the `OPTIONS` answer is made from that header.
    let router = middleware::from_fn_with_state(Arc::new(config.cors.clone()), cors).layer(router);
    let base_path: Option<Arc<str>> =
        config.base_path.as_deref().filter(|b| !b.trim_matches('/').is_empty()).map(Arc::from);
    let service = tower::util::MapRequestLayer::new(normalize_request(base_path)).layer(router);
    axum::ServiceExt::<Request>::into_make_service(service)
}

/// Bounds a request's whole time, reading its body included, so a client that trickles a body
/// cannot hold a connection and a worker of the server. (No route streams its answer yet; one
/// that does will be exempted here.)
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REQUEST_TIMEOUT",
            format!(
                "the request took longer than {} s and was stopped; what it changed is as the last step left it: read the resource, or retry with the same Idempotency-Key",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::not_found(
        "ROUTE_NOT_FOUND",
        format!("there is no route {} {}; see /docs for the API", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not allowed on {}; see /docs for the methods it takes", request.method(), request.uri().path()),
    )
}
