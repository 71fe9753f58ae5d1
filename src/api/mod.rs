//! `heal watch`'s HTTP API: the only module of the application that knows
//! HTTP (axum, status codes, the HTTP client of `heal silence` and `heal
//! approve`). Everything else speaks domain results; this module maps them
//! to statuses.
//!
//! - `/metrics` (heal's own, Prometheus text format) and `/healthz`;
//! - `control.rs`: silences, maintenance windows and approvals;
//! - `marks.rs`: learning from outcomes (`POST /api/incidents/ID/false-alarm`,
//!   `POST /api/missed`);
//! - `remote_write.rs`: Prometheus remote write in (`POST /api/v1/write`),
//!   into the runbooks' `remote_write:` signals;
//! - `feed.rs`: the incident store read-only (`/api/incidents`,
//!   `/incidents/ID`, `/feed.atom`);
//! - `client.rs`: the command-line side (`heal silence`, `heal approve`).
//!
//! The decider owns the engine: changing endpoints send it a
//! [`Command`] and await the reply. Reading endpoints are open (heal binds
//! to loopback by default); changing ones need the bearer token, and
//! without one configured they are refused.

mod client;
mod control;
mod feed;
mod marks;
#[cfg(test)]
mod properties;
mod remote_write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use stdx::Clock;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use client::{call, ApiCall};
pub use control::{check_new_silence, Approval, NewSilence};
pub use marks::{FalseAlarmBody, MissedBody};

use crate::live::Command;
use crate::telemetry::Telemetry;

/// What the API's handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    /// The decider's queue.
    pub(crate) commands: mpsc::Sender<Command>,
    /// The bearer token of changing requests; `None` disables them.
    pub(crate) token: Option<String>,
    /// The incident store, read per request.
    pub(crate) db: Option<PathBuf>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Wall time of the last evaluation processed.
    pub(crate) last_processed: Arc<AtomicI64>,
    /// The evaluation interval (`/healthz` allows three).
    pub(crate) interval: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// The runbooks' remote-write signals (`POST /api/v1/write` fills
    /// them); `None` without any.
    pub(crate) push: Option<ingest::remote_write::SharedPush>,
}

/// Serves the API on `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    stop: CancellationToken,
) {
    let metrics = {
        let t = state.telemetry.clone();
        move || {
            let body = t.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }
    };
    let healthz = {
        let (last_processed, interval, clock) = (
            state.last_processed.clone(),
            state.interval,
            state.clock.clone(),
        );
        move || {
            let last = last_processed.load(Ordering::Relaxed);
            let age = clock.now_ms() - last;
            async move {
                // Healthy once the loop has processed an evaluation
                // recently (three intervals, at least 10 s).
                let limit = (3 * interval.as_millis() as i64).max(10_000);
                if last > 0 && age <= limit {
                    (
                        StatusCode::OK,
                        format!("ok: last evaluation processed {age} ms ago\n"),
                    )
                } else if last == 0 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "starting: no evaluation processed yet\n".to_owned(),
                    )
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("stalled: last evaluation processed {age} ms ago\n"),
                    )
                }
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(control::routes(state.clone()))
        .merge(marks::routes(state.clone()))
        .merge(remote_write::routes(state.clone()))
        .merge(feed::routes(state.db.clone(), state.clock.clone()));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Checks the bearer token of a changing request.
#[allow(clippy::result_large_err)] // an axum Response, returned at once
fn authorize(api: &ApiState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &api.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "changes through the API are disabled: start heal watch with --api-token-env VAR",
        ));
    };
    if daemons::bearer_matches(headers, expected) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// Sends a command and waits for the decider's answer.
#[allow(clippy::result_large_err)]
async fn ask<T>(
    api: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    api.commands
        .send(make(tx))
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "heal is shutting down"))?;
    rx.await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "heal is shutting down"))
}
