//! The dashboard under `/ui`: three static files compiled into the binary. They hold no data
//! (every figure comes from the API with the caller's credentials), so they are served without
//! authentication, with a content security policy that allows nothing but this origin.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn router() -> Router {
    Router::new()
        // Relative asset and API addresses need the trailing slash (also behind a base path).
        .route("/ui", get(|| async { Redirect::permanent("ui/") }))
        .route("/ui/", get(|headers: HeaderMap| async move { asset(&headers, INDEX, "text/html; charset=utf-8") }))
        .route(
            "/ui/index.html",
            get(|headers: HeaderMap| async move { asset(&headers, INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|headers: HeaderMap| async move { asset(&headers, SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|headers: HeaderMap| async move { asset(&headers, STYLE, "text/css; charset=utf-8") }),
        )
}

/// Whether a path is one of the dashboard's static files (served without credentials).
pub(crate) fn is_asset(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn etag(body: &str) -> String {
    // The files change only with the binary; any stable digest will do.
    let hash = ggprov_domain::hash::fnv1a(body.as_bytes());
    format!("\"{hash:016x}\"")
}

fn asset(headers: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let tag = etag(body);
    let mut response = if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}
