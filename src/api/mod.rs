//! `heal watch`'s HTTP API: the only module of the application that knows
//! HTTP (axum, status codes, the HTTP client of `heal silence` and `heal
//! approve`). Everything else speaks domain results; this module maps them
//! to statuses.
//!
//! - `/metrics` (heal's own, Prometheus text format) and `/healthz`;
//! - `control.rs`: silences, maintenance windows and approvals;
//! - `marks.rs`: learning from outcomes (`POST /api/incidents/ID/false-alarm`,
//!   `POST /api/missed`);
//! - `alerts.rs`: Alertmanager's webhook in (`POST /api/v1/alerts`), into
//!   the runbooks' `alertmanager:` signals;
//! - `remote_write.rs`: Prometheus remote write in (`POST /api/v1/write`),
//!   into the runbooks' `remote_write:` signals;
//! - `feed.rs`: the incident store read-only (`/api/incidents`,
//!   `/incidents/ID`, `/feed.atom`);
//! - `web.rs`: the pages for people (`/`, `/silences`, `/approvals`),
//!   with forms behind the token;
//! - `client.rs`: the command-line side (`heal silence`, `heal approve`).
//!
//! The decider owns the engine: changing endpoints send it a
//! [`Command`] and await the reply. Reading endpoints are open (heal binds
//! to loopback by default); changing ones need the bearer token, and
//! without one configured they are refused.

mod alerts;
mod client;
mod control;
mod feed;
mod marks;
#[cfg(test)]
mod properties;
mod remote_write;
mod web;

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
    /// The decider's queue; `None` under `heal serve` (no engine runs).
    pub(crate) commands: Option<mpsc::Sender<Command>>,
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
    /// The runbooks' Alertmanager signals (`POST /api/v1/alerts` fills
    /// them); `None` without any.
    pub(crate) alerts: Option<ingest::alerts::SharedAlerts>,
}

/// What `/healthz` reports on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `heal watch`: healthy while evaluations are processed.
    Watch,
    /// `heal ingest`: healthy while evaluations are produced.
    Ingest,
    /// `heal serve`: always healthy (no loop runs).
    Store,
}

/// `/metrics` and `/healthz`.
fn health_routes(state: &ApiState, role: Role) -> axum::Router {
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
        let done = if role == Role::Ingest {
            "produced"
        } else {
            "processed"
        };
        move || {
            let last = last_processed.load(Ordering::Relaxed);
            let age = clock.now_ms() - last;
            async move {
                if role == Role::Store {
                    return (
                        StatusCode::OK,
                        "ok: serving the incident store\n".to_owned(),
                    );
                }
                // Healthy once the loop has processed (or produced) an
                // evaluation recently (three intervals, at least 10 s).
                let limit = (3 * interval.as_millis() as i64).max(10_000);
                if last > 0 && age <= limit {
                    (
                        StatusCode::OK,
                        format!("ok: last evaluation {done} {age} ms ago\n"),
                    )
                } else if last == 0 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("starting: no evaluation {done} yet\n"),
                    )
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("stalled: last evaluation {done} {age} ms ago\n"),
                    )
                }
            }
        }
    };
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

/// Serves the API on `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    stop: CancellationToken,
) {
    let role = if state.commands.is_some() {
        Role::Watch
    } else {
        Role::Store
    };
    let app = health_routes(&state, role)
        .merge(control::routes(state.clone()))
        .merge(marks::routes(state.clone()))
        .merge(remote_write::routes(state.clone()))
        .merge(alerts::routes(state.clone()))
        .merge(web::routes(state.clone()))
        .merge(feed::routes(state.db.clone(), state.clock.clone()));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

/// What `heal ingest` serves: the signals pushed to it and its own health.
pub(crate) struct IngestApi {
    /// The bearer token pushes must carry; `None` refuses them.
    pub(crate) token: Option<String>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Wall time of the last evaluation produced to the topic.
    pub(crate) last_produced: Arc<AtomicI64>,
    pub(crate) interval: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) push: Option<ingest::remote_write::SharedPush>,
    pub(crate) alerts: Option<ingest::alerts::SharedAlerts>,
}

/// `heal ingest`'s API on `listener` until `stop` is cancelled: `/metrics`,
/// `/healthz`, remote write in (`POST /api/v1/write`) and Alertmanager's
/// webhook (`POST /api/v1/alerts`), the same handlers as under `heal watch`
/// (the same token, answers and limits). Nothing here reads or changes
/// incidents: no engine runs in this role.
pub(crate) async fn serve_ingest(
    listener: tokio::net::TcpListener,
    api: IngestApi,
    stop: CancellationToken,
) {
    let state = ApiState {
        commands: None,
        token: api.token,
        db: None,
        telemetry: api.telemetry,
        last_processed: api.last_produced,
        interval: api.interval,
        clock: api.clock,
        push: api.push,
        alerts: api.alerts,
    };
    let app = health_routes(&state, Role::Ingest)
        .merge(remote_write::routes(state.clone()))
        .merge(alerts::routes(state.clone()));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

/// `heal serve`: the incident store's feed, pages and JSON API with no
/// watch running, on `listener` until `stop` resolves. Reads only: a
/// change (approve, silence) answers that it needs the `heal watch` that
/// writes the store. `token` still guards those endpoints, so that a
/// refusal is the same with or without a watch.
pub async fn serve_store(
    listener: tokio::net::TcpListener,
    db: PathBuf,
    token: Option<String>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let cancel = CancellationToken::new();
    let on_stop = cancel.clone();
    tokio::spawn(async move {
        stop.await;
        on_stop.cancel();
    });
    serve(
        listener,
        ApiState {
            commands: None,
            token,
            db: Some(db),
            telemetry: Arc::new(Telemetry::default()),
            last_processed: Arc::new(AtomicI64::new(0)),
            interval: Duration::from_secs(1),
            clock: Arc::new(stdx::SystemClock),
            push: None,
            alerts: None,
        },
        cancel,
    )
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
            "changes through the API are disabled: start heal (watch or ingest) with --api-token-env VAR",
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

/// Why a change is refused under `heal serve`.
const NO_WATCH: &str = "This is heal serve: no heal watch runs here, so nothing is approved, silenced or expired from this page. Do it on the heal watch that writes this store.";

/// The gate of a push endpoint (remote write, Alertmanager): the token,
/// then the runbook signals it feeds (`missing` says which when there are
/// none). Every answer is counted in `counter` by status code, through the
/// returned `outcome`.
#[allow(clippy::result_large_err)]
fn push_gate<'a, T>(
    api: &'a ApiState,
    headers: &HeaderMap,
    held: &'a Option<T>,
    counter: &'static str,
    missing: &str,
) -> Result<(&'a T, impl Fn(&str) + 'a), Response> {
    let outcome = move |code: &str| api.telemetry.add(counter, &[("code", code)], 1.0);
    if let Err(r) = authorize(api, headers) {
        outcome(r.status().as_str());
        return Err(r);
    }
    match held {
        Some(h) => Ok((h, outcome)),
        None => {
            outcome("404");
            Err(error(StatusCode::NOT_FOUND, missing.to_owned()))
        }
    }
}

/// Sends a command and waits for the decider's answer.
#[allow(clippy::result_large_err)]
async fn ask<T>(
    api: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    let Some(commands) = &api.commands else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, NO_WATCH));
    };
    let (tx, rx) = oneshot::channel();
    commands
        .send(make(tx))
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "heal is shutting down"))?;
    rx.await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "heal is shutting down"))
}
