//! Live views: `GET /events/stream` (Server-Sent Events over the outbox, resumable with
//! `Last-Event-ID`) and `GET /whoami` (what the caller may do, for the dashboard's buttons).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cores::EventResource;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::records::problem;
use crate::state::AppState;

/// How often a stream looks for new events (one indexed read per open stream).
const POLL: Duration = Duration::from_millis(400);
/// Events read per look; a stream far behind catches up a page at a time.
const PAGE: u32 = 200;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(event_stream)).routes(routes!(whoami))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Start after this sequence (like `Last-Event-ID`, for clients that cannot set headers);
    /// `0` replays every stored event. Without either, the stream starts with the next event.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_u64)]
    after: Option<String>,
    /// Only events of these detail-types (comma-separated), e.g. `Core Created Event`.
    #[param(value_type = Option<String>)]
    detail_type: Option<String>,
}

fn parse_sequence(field: &str, text: &str) -> Result<u64, ApiError> {
    text.trim().parse::<u64>().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| {
        problem(
            field,
            format!("'{text}' is not an event sequence (0 to 2^63-1); send the `id` of the last event received"),
        )
    })
}

/// Lifecycle events as they are written, as Server-Sent Events: each event's `id` is its
/// sequence and its `data` the JSON of `GET /events`. Reconnect with `Last-Event-ID` (browsers'
/// `EventSource` does so itself) to receive every event after it exactly once. Comments keep
/// the connection alive every 15 s.
#[utoipa::path(
    get, path = "/events/stream", tag = "Events", operation_id = "streamEvents",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "Sequence of the last event received")),
    responses(
        (status = 200, description = "`text/event-stream`; each event's data is an event as in `GET /events`", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody)
    )
)]
pub(crate) async fn event_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => {
            let text = value.to_str().map_err(|_| problem("Last-Event-ID", "is not text".into()))?;
            Some(parse_sequence("Last-Event-ID", text)?)
        }
        None => None,
    };
    let after = match (resume, query.after.as_deref()) {
        (Some(seq), _) => seq,
        (None, Some(text)) => parse_sequence("after", text)?,
        // From now on: after the newest event stored.
        (None, None) => {
            let page = state.cores.events(ggprov_domain::PageRequest { limit: 1, exclusive_start: None }).await?;
            page.items.first().map_or(0, |e| e.sequence)
        }
    };
    let types: Option<Vec<String>> = query
        .detail_type
        .as_deref()
        .map(|t| t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
    if types.as_ref().is_some_and(Vec::is_empty) {
        return Err(problem("detailType", "names no detail-type; give one or more, comma-separated".into()));
    }
    let stopping = state.stopping.subscribe();
    let poll = POLL.max(state.cores.stream_settle() / 4);
    // Each step reads the events after the last one seen (waiting `poll` while there are
    // none) and hands them on as one batch; the stream ends when the server stops.
    let batches = futures::stream::unfold((state, after, stopping), move |(state, mut after, mut stopping)| {
        let types = types.clone();
        async move {
            loop {
                if *stopping.borrow() {
                    return None;
                }
                match state.cores.events_after(after, PAGE).await {
                    Ok(events) if !events.is_empty() => {
                        after = events.last().map_or(after, |e| e.sequence);
                        let batch: Vec<SseEvent> = events
                            .into_iter()
                            .filter(|e| types.as_ref().is_none_or(|t| t.contains(&e.event.detail_type)))
                            .map(|event| {
                                let id = event.sequence.to_string();
                                let resource = EventResource::new(event, state.event_source.clone());
                                SseEvent::default().id(id).data(serde_json::to_string(&resource).unwrap_or_default())
                            })
                            .collect();
                        return Some((batch, (state, after, stopping)));
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "event stream: cannot read the outbox; trying again"),
                }
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    _ = stopping.changed() => {}
                }
            }
        }
    });
    // First, how soon a browser should reconnect after a drop.
    let hint = SseEvent::default().retry(Duration::from_secs(2)).comment("ggprov events");
    let stream = futures::stream::once(async move { vec![hint] })
        .chain(batches)
        .flat_map(futures::stream::iter)
        .map(Ok::<_, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What the caller may do.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WhoAmI {
    /// Whether the server checks credentials at all.
    authentication: bool,
    /// Whether the caller may change state (`false` for a read-only API key).
    can_write: bool,
}

/// What the caller's credentials allow: the dashboard disables actions for read-only callers.
#[utoipa::path(
    get, path = "/whoami", tag = "Operations", operation_id = "whoami",
    responses((status = 200, body = WhoAmI, content_type = "application/vnd.aws-cdf-v1.0+json"), (status = 401, body = ErrorBody))
)]
pub(crate) async fn whoami(access: Option<axum::Extension<crate::ops::Access>>) -> crate::media::Cdf<WhoAmI> {
    crate::media::Cdf(match access {
        Some(axum::Extension(access)) => WhoAmI { authentication: true, can_write: access.can_write },
        None => WhoAmI { authentication: false, can_write: true },
    })
}
