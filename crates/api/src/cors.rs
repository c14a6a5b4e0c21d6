//! CORS, as the original answers it and a little better: `OPTIONS` on any route gets a 204
//! answer whose `Allow` (and, for a configured origin, `Access-Control-Allow-Methods`) lists
//! exactly that route's methods (the original crashed without `Accept` and advertised every
//! method everywhere), and the task/template headers are exposed so browser code can read them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const EXPOSE_HEADERS: &str = "content-type,location,x-taskid,x-name,x-version,x-request-id";
/// The request headers a browser may send: what the API reads, never whatever was asked for.
const ALLOW_HEADERS: &str =
    "accept,authorization,content-type,idempotency-key,x-amz-date,x-amz-security-token,x-api-key,x-request-id";

/// Which origins may call the API from a browser (`GGPROV_CORS_ORIGIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all.
    Disabled,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these origins, echoed back when they match.
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses the setting: empty disables CORS, `*` allows any origin, otherwise a
    /// comma-separated list of origins such as `https://console.example.com`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Self::Disabled);
        }
        if value == "*" {
            return Ok(Self::Any);
        }
        let origins: Vec<String> = value.split(',').map(|o| o.trim().trim_end_matches('/').to_owned()).collect();
        for origin in &origins {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && origin.split("://").nth(1).is_some_and(|host| !host.is_empty() && !host.contains('/'))
                && HeaderValue::from_str(origin).is_ok();
            if !valid {
                return Err(format!(
                    "'{origin}' is not an origin; use scheme://host[:port] such as https://console.example.com, '*' for any, or an empty value to disable CORS"
                ));
            }
        }
        Ok(Self::List(origins))
    }

    fn allow_origin(&self, request_origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Self::Disabled => None,
            Self::Any => Some(HeaderValue::from_static("*")),
            Self::List(origins) => {
                let origin = request_origin?;
                let text = origin.to_str().ok()?;
                origins.iter().any(|o| o == text).then(|| origin.clone())
            }
        }
    }
}

fn add_cors_headers(origins: &CorsOrigins, request_origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    if let Some(allow) = origins.allow_origin(request_origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
        if matches!(origins, CorsOrigins::List(_)) {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

/// Answers `OPTIONS` itself (preflight or not) and adds CORS headers to every other response.
///
/// The router is the one source of the methods a path takes: no route has an `OPTIONS`
/// handler, so routing the `OPTIONS` request gives a 405 whose `Allow` lists the route's
/// methods (a path without a route stays 404).
pub(crate) async fn cors(State(origins): State<Arc<CorsOrigins>>, request: Request, next: Next) -> Response {
    let request_origin = request.headers().get(header::ORIGIN).cloned();
    let options = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if options && response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let methods = response.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let methods = if methods.is_empty() { "OPTIONS".to_owned() } else { format!("{methods},OPTIONS") };
        let methods = HeaderValue::from_str(&methods).expect("method names are header text");
        let request_id = response.headers().get("x-request-id").cloned();
        response = StatusCode::NO_CONTENT.into_response();
        if let Some(id) = request_id {
            response.headers_mut().insert("x-request-id", id);
        }
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, methods.clone());
        if origins.allow_origin(request_origin.as_ref()).is_some() {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
        }
    }
    add_cors_headers(&origins, request_origin.as_ref(), response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setting() {
        assert_eq!(CorsOrigins::parse("").unwrap(), CorsOrigins::Disabled);
        assert_eq!(CorsOrigins::parse("*").unwrap(), CorsOrigins::Any);
        assert_eq!(
            CorsOrigins::parse("https://a.example.com, http://localhost:3000/").unwrap(),
            CorsOrigins::List(vec!["https://a.example.com".into(), "http://localhost:3000".into()])
        );
        assert!(CorsOrigins::parse("a.example.com").unwrap_err().contains("scheme://host"));
    }

    #[test]
    fn a_listed_origin_is_echoed_and_others_get_nothing() {
        let origins = CorsOrigins::List(vec!["https://a.example.com".into()]);
        let listed = HeaderValue::from_static("https://a.example.com");
        assert_eq!(origins.allow_origin(Some(&listed)), Some(listed));
        assert_eq!(origins.allow_origin(Some(&HeaderValue::from_static("https://evil.example.com"))), None);
        assert_eq!(origins.allow_origin(None), None);
    }
}
