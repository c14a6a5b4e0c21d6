//! Media types: the CDF versioned JSON type, the `Accept` rule (415) and the JSON body
//! extractor (415 for other content types, 413 above the limit, 400 with the field path for
//! bad JSON).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ggprov_domain::FieldProblem;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::body_schema::BodySchema;
use crate::error::ApiError;

use crate::CDF_MEDIA_TYPE;

/// Largest request body accepted (413 above).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The media type of a header value, without parameters, lower-cased.
fn essence(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn acceptable(accept: &str) -> bool {
    accept
        .split(',')
        .map(essence)
        .any(|t| matches!(t.as_str(), CDF_MEDIA_TYPE | "application/json" | "*/*" | "application/*"))
}

/// Middleware for the CDF routes: answers 415 when `Accept` names only types this API cannot
/// produce (another CDF version, `text/html`, ...). Absent, `*/*`, `application/json` and the
/// CDF type are served.
pub(crate) async fn require_acceptable(request: Request, next: Next) -> Response {
    if let Some(accept) = request.headers().get(header::ACCEPT) {
        let text = accept.to_str().unwrap_or("");
        if !acceptable(text) {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("cannot answer with Accept: {text}; this API produces {CDF_MEDIA_TYPE} (application/json and */* are accepted too)"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// A JSON response body sent as the CDF media type.
pub(crate) struct Cdf<T>(pub(crate) T);

impl<T: Serialize> IntoResponse for Cdf<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static(CDF_MEDIA_TYPE))], body).into_response(),
            Err(err) => ApiError::internal(err).into_response(),
        }
    }
}

/// A JSON request body: `application/vnd.aws-cdf-v1.0+json` or `application/json`. An empty
/// body reads as `{}` (as in the original). Errors name the offending field.
pub(crate) struct CdfJson<T>(pub(crate) T);

impl<T: DeserializeOwned + BodySchema, S: Send + Sync> FromRequest<S> for CdfJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = content_type(request.headers());
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes; split the request"),
                )
            } else {
                ApiError::bad_request("INVALID_BODY", format!("could not read the request body: {rejection}"))
            }
        })?;
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if !empty {
            match content_type.as_deref() {
                Some(CDF_MEDIA_TYPE | "application/json") => {}
                other => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UNSUPPORTED_MEDIA_TYPE",
                        format!(
                            "request bodies must be JSON sent as Content-Type: {CDF_MEDIA_TYPE} or application/json, not {}",
                            other.map_or_else(|| "no Content-Type".to_owned(), |t| format!("'{t}'"))
                        ),
                    ));
                }
            }
        }
        parse_json_checked(if empty { b"{}" } else { &bytes }).map(CdfJson)
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(essence)
}

/// `parse_json`, then the body's schema for the types serde let through (`body_schema`), on
/// the same parsed JSON.
fn parse_json_checked<T: DeserializeOwned + BodySchema>(bytes: &[u8]) -> Result<T, ApiError> {
    let json = parse_value(bytes)?;
    let value = deserialize::<T>(&json)?;
    if let Some(schema) = T::SCHEMA {
        let problems = crate::body_schema::type_problems(schema, &json);
        if !problems.is_empty() {
            return Err(ApiError::validation(problems));
        }
    }
    Ok(value)
}

/// Parses a JSON object, reporting syntax errors as `INVALID_JSON` and type errors with their path.
#[cfg(test)]
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    deserialize(&parse_value(bytes)?)
}

/// The body as JSON: an object, numbers without a fractional part as integers.
fn parse_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    // serde maps a JSON array onto a struct's fields in order; a body must be an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')) {
        return Err(ApiError::validation(vec![FieldProblem {
            field: "body".into(),
            problem: "must be a JSON object, e.g. {\"name\": ...}".into(),
        }]));
    }
    let mut json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request("INVALID_JSON", format!("the request body is not valid JSON: {err}")))?;
    integral_numbers(&mut json);
    Ok(json)
}

/// `T` from the parsed body; a type error names its field.
fn deserialize<T: DeserializeOwned>(json: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(json).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::validation(vec![FieldProblem { field, problem: strip_position(&err.into_inner().to_string()) }])
    })
}

/// Writes numbers with no fractional part (`5.0`, `1e3`) as integers: JSON (and the schema's
/// `integer`) does not tell them apart, but a `u32` field would refuse the float form.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
            {
                *n = if f < 0.0 { (f as i64).into() } else { (f as u64).into() };
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// `serde_json` appends " at line L column C" to data errors; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_rules() {
        for ok in [
            CDF_MEDIA_TYPE,
            "application/json",
            "*/*",
            "text/html, */*;q=0.8",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(acceptable(ok), "{ok}");
        }
        for bad in ["text/html", "application/vnd.aws-cdf-v2.0+json", "application/xml", ""] {
            assert!(!acceptable(bad), "{bad}");
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            items: Vec<Item>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Item {
            version: String,
        }
        let err = parse_json::<Body>(br#"{"items":[{"version":"1"},{"version":2}]}"#).unwrap_err();
        assert_eq!(err.code(), "VALIDATION_FAILED");
        assert!(format!("{err:?}").contains("items[1].version"), "{err:?}");
        assert_eq!(parse_json::<Body>(b"{").unwrap_err().code(), "INVALID_JSON");
        assert!(format!("{:?}", parse_json::<Body>(br#"[["1"]]"#).unwrap_err()).contains("must be a JSON object"));
        assert_eq!(parse_json::<Body>(br#"{"items":[]} x"#).unwrap_err().code(), "INVALID_JSON");
    }
}
