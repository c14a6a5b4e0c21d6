//! `Idempotency-Key` on POST: the same key with the same request (method, path, body) gets the
//! same answer (status, headers, body; the same task id) for 24 hours; the same key with another
//! request gets 422; while the first is still being answered, 409 with `Retry-After`. A 5xx is
//! not recorded, so a retry after an outage runs again.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ggprov_domain::Timestamp;
use ggprov_domain::ports::{IdempotencyClaim, RecordedResponse};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::media::MAX_BODY_BYTES;
use crate::state::AppState;

/// The request header.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// How long an answer is given again.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// A request still unanswered after this is taken for dead (its process stopped).
const PENDING_FOR: Duration = Duration::from_secs(60);
/// Answers larger than this are passed on but not recorded (this bounds the store; a DynamoDB
/// record holds 400 KB).
const MAX_RECORDED_BODY: usize = 64 * 1024;
/// The headers given again with a recorded answer.
const REPEATED_HEADERS: [&str; 5] = ["content-type", "location", "x-taskid", "x-name", "x-version"];

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

pub(crate) async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(store) = state.idempotency.clone() else { return next.run(request).await };
    let Some(raw) = request.headers().get(IDEMPOTENCY_KEY) else { return next.run(request).await };
    let Some(key) = raw.to_str().ok().filter(|k| valid_key(k)).map(str::to_owned) else {
        return ApiError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            "Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID",
        )
        .into_response();
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes; split the request"),
        )
        .into_response();
    };
    let fingerprint = {
        let mut hash = Sha256::new();
        hash.update(parts.method.as_str().as_bytes());
        hash.update(b" ");
        hash.update(parts.uri.path().as_bytes());
        hash.update(b"\n");
        hash.update(&bytes);
        hex::encode(hash.finalize())
    };
    match store.begin_idempotent(&key, &fingerprint, Timestamp::now(), PENDING_FOR, KEEP_FOR).await {
        Err(err) => ApiError::from(err).into_response(),
        Ok(IdempotencyClaim::Replay(recorded)) => replay(recorded),
        Ok(IdempotencyClaim::InProgress) => {
            let mut response = ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENT_REQUEST_IN_PROGRESS",
                "a request with this Idempotency-Key is still being answered; retry shortly for its answer",
            )
            .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Ok(IdempotencyClaim::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for a different request (method, path or body) in the last 24 hours; use a new key for a new request",
        )
        .into_response(),
        Ok(IdempotencyClaim::Started) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            record(store.as_ref(), &key, &fingerprint, response).await
        }
    }
}

/// Records the answer (or forgets the key after a 5xx) and passes it on.
async fn record(
    store: &dyn ggprov_domain::ports::IdempotencyRecords,
    key: &str,
    fingerprint: &str,
    response: Response,
) -> Response {
    let (parts, body) = response.into_parts();
    // Answers are bounded by the request they answer (a template is echoed back): read them
    // whole, and record only those small enough to keep.
    let Ok(bytes) = axum::body::to_bytes(body, 2 * MAX_BODY_BYTES).await else {
        if let Err(err) = store.abandon_idempotent(key, fingerprint).await {
            tracing::warn!(error = %err, "could not release an idempotency key");
        }
        return ApiError::internal("the answer could not be read to record it for its Idempotency-Key").into_response();
    };
    let outcome = if parts.status.is_server_error() || bytes.len() > MAX_RECORDED_BODY {
        // Not worth answering again (a 5xx), or too large to keep: the key is forgotten, so a
        // retry runs the request again.
        store.abandon_idempotent(key, fingerprint).await
    } else {
        let headers = REPEATED_HEADERS
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), parts.headers.get(*name)?.to_str().ok()?.to_owned())))
            .collect();
        let recorded = RecordedResponse { status: parts.status.as_u16(), headers, body: bytes.to_vec() };
        store.complete_idempotent(key, fingerprint, &recorded).await
    };
    if let Err(err) = outcome {
        tracing::warn!(error = %err, "could not record the answer of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(recorded: RecordedResponse) -> Response {
    let mut response = Response::new(Body::from(Bytes::from(recorded.body)));
    *response.status_mut() = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    for (name, value) in recorded.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
    response
}
