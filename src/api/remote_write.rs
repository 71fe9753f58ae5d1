//! Prometheus remote write in: `POST /api/v1/write` (remote-write 1.0,
//! protobuf in snappy's block format), behind the bearer token like every
//! request that changes what heal acts on. The body is decoded by
//! `ingest::remote_write` and its samples go to the runbooks'
//! `remote_write:` signals, read at the next slot.
//!
//! Answers as a sender expects: 204 when taken; 400 for a body that will
//! never decode and 413 for one too large (a sender drops those instead of
//! retrying); 401/403 without the token; 404 when no runbook signal is fed
//! by remote write.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ingest::remote_write::{self, RemoteWriteError, MAX_BODY_BYTES};

use super::{error, push_gate, ApiState};

/// The remote-write route.
pub(crate) fn routes(api: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/write", post(write))
        // One byte more than taken, so that a larger body reaches the
        // decoder and is refused with its size in the answer.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .with_state(api)
}

async fn write(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (push, outcome) = match push_gate(
        &api,
        &headers,
        &api.push,
        "heal_remote_write_requests_total",
        "no runbook signal is fed by remote write (`remote_write:`)",
    ) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let request = match remote_write::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                RemoteWriteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                RemoteWriteError::Snappy(_) | RemoteWriteError::Protobuf(_) => {
                    StatusCode::BAD_REQUEST
                }
            };
            outcome(status.as_str());
            tracing::warn!(stage = "ingest", error = %e, "remote write refused");
            return error(status, e.to_string());
        }
    };
    let taken = push
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accept(&request);
    let t = &api.telemetry;
    t.add(
        "heal_remote_write_samples_total",
        &[("outcome", "matched")],
        taken.matched as f64,
    );
    t.add(
        "heal_remote_write_samples_total",
        &[("outcome", "unmatched")],
        taken.samples.saturating_sub(taken.matched) as f64,
    );
    t.add(
        "heal_remote_write_series_refused_total",
        &[],
        taken.refused_series as f64,
    );
    outcome("204");
    StatusCode::NO_CONTENT.into_response()
}
