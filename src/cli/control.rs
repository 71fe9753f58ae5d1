//! Talking to a running `heal watch`: silences, maintenance windows and
//! approvals, over its HTTP API and from the command line.
//!
//! The decide loop owns the engine; nothing else touches it. The API sends
//! it a [`Command`] over a channel and awaits the reply (the way mini-redis
//! hands requests to the task that owns the state), so a silence or an
//! approval takes effect between two evaluations, never in the middle of
//! one. Reading endpoints are open (heal binds to loopback by default);
//! changing ones need the bearer token from `--api-token-env`, and without
//! one configured they are refused.

use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use remediate::engine::{EngineEvent, Matcher, Silence};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::UsageError;

/// A request to the decide loop, with where to send the answer.
#[derive(Debug)]
pub enum Command {
    /// Add a silence (a maintenance window when it starts later).
    AddSilence {
        /// What it mutes.
        matchers: Vec<Matcher>,
        /// From (ms).
        starts_ms: i64,
        /// Until (ms).
        ends_ms: i64,
        /// Who.
        by: String,
        /// Why.
        comment: String,
        /// The silence, or why not.
        reply: oneshot::Sender<Result<Silence, String>>,
    },
    /// End a silence now.
    ExpireSilence {
        /// Its id.
        id: String,
        /// The silence as ended, or why not.
        reply: oneshot::Sender<Result<Silence, String>>,
    },
    /// Silences active or scheduled.
    ListSilences {
        /// The list.
        reply: oneshot::Sender<Vec<Silence>>,
    },
    /// Incidents with a step waiting for approval.
    ListApprovals {
        /// Their ids.
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Approve an incident's parked step.
    Approve {
        /// Incident id.
        incident: String,
        /// Who approves.
        by: String,
        /// What the engine did (the decision on the step), or why not.
        reply: oneshot::Sender<Result<Vec<EngineEvent>, String>>,
    },
    /// Learning from outcomes: record a sensitivity mark in the incident
    /// store and apply the signal's new threshold offset at once.
    Mark {
        /// The mark.
        mark: store::Mark,
        /// What it did, or an HTTP status and why not.
        reply: oneshot::Sender<Result<store::Marked, (StatusCode, String)>>,
    },
    /// Does the incident's symptom still hold? (Asked by the act stage just
    /// before acting.)
    Recheck {
        /// Incident id.
        incident: String,
        /// `None` for an unknown or resolved incident.
        reply: oneshot::Sender<Option<bool>>,
    },
}

#[derive(Clone)]
struct Api {
    commands: mpsc::Sender<Command>,
    token: Option<String>,
}

/// Body of `POST /api/silences`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// `name=value`, `name!=value`, `name=~re`, `name!~re`; all must match.
    pub matchers: Vec<String>,
    /// Start, RFC 3339; now when left out.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// How long (`30m`, `2h`).
    pub duration: String,
    /// Who sets it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Body of `POST /api/incidents/ID/approve`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Who approves.
    pub by: String,
}

/// The routes of the control API, to be merged into heal's HTTP server.
pub fn routes(commands: mpsc::Sender<Command>, token: Option<String>) -> axum::Router {
    axum::Router::new()
        .route("/api/silences", get(list_silences).post(add_silence))
        .route("/api/silences/{id}", axum::routing::delete(expire_silence))
        .route("/api/approvals", get(list_approvals))
        .route("/api/incidents/{id}/approve", post(approve))
        .with_state(Api { commands, token })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Checks the bearer token of a changing request.
#[allow(clippy::result_large_err)] // an axum Response, returned at once
fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &api.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "changes through the API are disabled: start heal watch with --api-token-env VAR",
        ));
    };
    let ok = daemons::bearer_matches(headers, expected);
    if ok {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// Sends a command and waits for the decide loop's answer.
#[allow(clippy::result_large_err)]
async fn ask<T>(
    api: &Api,
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

async fn list_silences(State(api): State<Api>) -> Response {
    match ask(&api, |reply| Command::ListSilences { reply }).await {
        Ok(list) => Json(list).into_response(),
        Err(r) => r,
    }
}

fn parse_new_silence(body: &NewSilence, now_ms: i64) -> Result<(Vec<Matcher>, i64, i64), String> {
    let mut problems = Vec::new();
    let mut matchers = Vec::new();
    for m in &body.matchers {
        match Matcher::parse(m) {
            Ok(m) => matchers.push(m),
            Err(e) => problems.push(e),
        }
    }
    if body.matchers.is_empty() {
        problems.push("matchers: at least one is needed".to_owned());
    }
    let starts = match &body.starts_at {
        None => Some(now_ms),
        Some(t) => match super::record::parse_time("starts_at", t, now_ms) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(e.0);
                None
            }
        },
    };
    let duration = match body.duration.parse::<remediate::Duration>() {
        Ok(d) if !d.is_zero() => Some(d.as_millis_i64()),
        Ok(_) => {
            problems.push("duration: must be longer than 0s".to_owned());
            None
        }
        Err(e) => {
            problems.push(format!("duration {:?}: {e}", body.duration));
            None
        }
    };
    if body.created_by.trim().is_empty() {
        problems.push("created_by: say who sets the silence".to_owned());
    }
    match (problems.is_empty(), starts, duration) {
        (true, Some(s), Some(d)) => Ok((matchers, s, s.saturating_add(d))),
        _ => Err(problems.join("; ")),
    }
}

async fn add_silence(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<NewSilence>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (matchers, starts_ms, ends_ms) = match parse_new_silence(&body, now_ms()) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let result = ask(&api, |reply| Command::AddSilence {
        matchers,
        starts_ms,
        ends_ms,
        by: body.created_by.clone(),
        comment: body.comment.clone(),
        reply,
    })
    .await;
    match result {
        Ok(Ok(s)) => (StatusCode::CREATED, Json(s)).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(r) => r,
    }
}

async fn expire_silence(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    match ask(&api, |reply| Command::ExpireSilence { id, reply }).await {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(r) => r,
    }
}

async fn list_approvals(State(api): State<Api>) -> Response {
    match ask(&api, |reply| Command::ListApprovals { reply }).await {
        Ok(ids) => Json(ids).into_response(),
        Err(r) => r,
    }
}

async fn approve(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(incident): Path<String>,
    body: Result<Json<Approval>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let result = ask(&api, |reply| Command::Approve {
        incident,
        by: body.by,
        reply,
    })
    .await;
    match result {
        Ok(Ok(events)) => {
            let decisions: Vec<serde_json::Value> = events
                .iter()
                .filter_map(|e| match e {
                    EngineEvent::Planned { incident, action } => Some(serde_json::json!({
                        "incident": incident,
                        "step": action.step,
                        "action": action.summary,
                        "decision": action.decision.label(),
                        "detail": action.decision.detail,
                    })),
                    _ => None,
                })
                .collect();
            Json(decisions).into_response()
        }
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(r) => r,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The command line side: `heal silence ...` and `heal approve ID`.

/// Where the running heal is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Base URL of the running `heal watch` (its `--listen` address).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    api: String,
    /// Name of the environment variable holding the API's bearer token.
    #[arg(long, default_value = "HEAL_API_TOKEN")]
    token_env: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum SilenceCmd {
    /// Mute every action on series matching all matchers, now or later (a
    /// maintenance window).
    Add {
        #[command(flatten)]
        api: ApiArgs,
        /// `name=value`, `name!=value`, `name=~regex` or `name!~regex`;
        /// repeat for more (all must match).
        #[arg(long = "matcher", required = true)]
        matchers: Vec<String>,
        /// How long (`30m`, `2h`).
        #[arg(long)]
        duration: String,
        /// Start (RFC 3339); now when left out.
        #[arg(long)]
        starts_at: Option<String>,
        /// Who sets it; `$USER` when left out.
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// List silences, active and scheduled.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        api: ApiArgs,
        /// Silence id (`sil-000001`).
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Incident id (`inc-000042`).
    incident: String,
    /// Who approves; `$USER` when left out.
    #[arg(long)]
    by: Option<String>,
}

fn user(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Sends one request to the API and prints the JSON answer.
fn call(
    api: &ApiArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        let url = format!("{}{path}", api.api.trim_end_matches('/'));
        let mut req = client.request(method, &url);
        if let Ok(token) = std::env::var(&api.token_env) {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {url} (is heal watch running there?)"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            println!("{text}");
            Ok(())
        } else {
            Err(UsageError(format!("{url}: {status}: {text}")).into())
        }
    })
}

pub fn run_silence(cmd: SilenceCmd) -> anyhow::Result<()> {
    match cmd {
        SilenceCmd::Add {
            api,
            matchers,
            duration,
            starts_at,
            by,
            comment,
        } => {
            let body = NewSilence {
                matchers,
                starts_at,
                duration,
                created_by: user(by),
                comment,
            };
            // Checked here first: a typo is reported without a round trip.
            parse_new_silence(&body, now_ms()).map_err(UsageError)?;
            call(
                &api,
                reqwest::Method::POST,
                "/api/silences",
                Some(serde_json::to_value(&body)?),
            )
        }
        SilenceCmd::List { api } => call(&api, reqwest::Method::GET, "/api/silences", None),
        SilenceCmd::Expire { api, id } => call(
            &api,
            reqwest::Method::DELETE,
            &format!("/api/silences/{id}"),
            None,
        ),
    }
}

pub fn run_approve(args: ApproveArgs) -> anyhow::Result<()> {
    let body = serde_json::to_value(Approval { by: user(args.by) })?;
    call(
        &args.api,
        reqwest::Method::POST,
        &format!("/api/incidents/{}/approve", args.incident),
        Some(body),
    )
}

// ---- Learning from outcomes: marks through the API, applied by decide ----

/// Body of `POST /api/incidents/ID/false-alarm` (may be empty).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalseAlarmBody {
    /// Why, for the sensitivity history.
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `POST /api/missed`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissedBody {
    /// The signal that should have fired.
    pub signal: String,
    /// When the missed anomaly happened: RFC 3339, `now` or `-1h`.
    pub at: String,
    /// What was missed.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Clone)]
struct Marks {
    api: Api,
    db: Option<std::path::PathBuf>,
}

/// The routes that mark incidents (`POST /api/incidents/ID/false-alarm`,
/// `POST /api/missed`), behind the same bearer token as the other changes.
/// The decide loop records the mark through the store's writer and applies
/// the new offset before it answers.
pub fn mark_routes(
    commands: mpsc::Sender<Command>,
    token: Option<String>,
    db: Option<std::path::PathBuf>,
) -> axum::Router {
    axum::Router::new()
        .route("/api/incidents/{id}/false-alarm", post(false_alarm))
        .route("/api/missed", post(missed))
        .with_state(Marks {
            api: Api { commands, token },
            db,
        })
}

const NEEDS_DB: &str = "marks are recorded in the incident store: start heal watch with --db FILE";

/// A JSON body, or the default for an empty one.
#[allow(clippy::result_large_err)]
fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn false_alarm(
    State(marks): State<Marks>,
    headers: HeaderMap,
    Path(incident): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&marks.api, &headers) {
        return r;
    }
    let body: FalseAlarmBody = match body_or_default(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(db) = marks.db.clone() else {
        return error(StatusCode::CONFLICT, NEEDS_DB);
    };
    // The incident's signal, from the store (the engine forgets resolved
    // incidents after an hour; the store keeps them).
    let id = incident.clone();
    let found = tokio::task::spawn_blocking(move || {
        let store = store::Store::open_read_only(&db).map_err(|e| e.to_string())?;
        store
            .incident(&id)
            .map(|r| r.map(|r| r.incident.signal))
            .map_err(|e| e.to_string())
    })
    .await;
    let signal = match found {
        Ok(Ok(Some(signal))) => signal,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no incident {incident:?} in the store"),
            )
        }
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mark = store::Mark {
        signal,
        reason: store::SensitivityReason::FalseAlarm,
        incident: Some(incident),
        missed_at_ms: None,
        note: body.note,
        at_ms: now_ms(),
    };
    send_mark(&marks.api, mark).await
}

async fn missed(
    State(marks): State<Marks>,
    headers: HeaderMap,
    body: Result<Json<MissedBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&marks.api, &headers) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if marks.db.is_none() {
        return error(StatusCode::CONFLICT, NEEDS_DB);
    }
    let now = now_ms();
    let at = match super::record::parse_time("at", &body.at, now) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let mark = store::Mark {
        signal: body.signal,
        reason: store::SensitivityReason::Missed,
        incident: None,
        missed_at_ms: Some(at),
        note: body.note,
        at_ms: now,
    };
    send_mark(&marks.api, mark).await
}

async fn send_mark(api: &Api, mark: store::Mark) -> Response {
    match ask(api, |reply| Command::Mark { mark, reply }).await {
        Ok(Ok(marked)) => {
            let (adjustment, already) = match marked {
                store::Marked::Adjusted(a) => (a, false),
                store::Marked::AlreadyMarked(a) => (a, true),
            };
            Json(serde_json::json!({
                "adjustment": adjustment,
                "already_marked": already,
            }))
            .into_response()
        }
        Ok(Err((status, message))) => error(status, message),
        Err(r) => r,
    }
}

/// The decide loop's side of [`Command::Mark`]: checks the signal is one
/// of the runbooks', records the mark through the store's writer (committed
/// before the answer), and applies the new offset to the signal's detectors.
pub(crate) async fn record_mark(
    pipeline: &mut crate::pipeline::Pipeline,
    store: Option<&store::StoreWriter>,
    telemetry: &crate::telemetry::Telemetry,
    mark: store::Mark,
) -> Result<store::Marked, (StatusCode, String)> {
    let Some(store) = store else {
        return Err((StatusCode::CONFLICT, NEEDS_DB.to_owned()));
    };
    if !pipeline.watches_signal(&mark.signal) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("no signal {:?} in the runbooks", mark.signal),
        ));
    }
    let marked = store
        .mark(mark)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let store::Marked::Adjusted(a) = &marked {
        apply_offset(pipeline, telemetry, &a.signal, a.new);
        tracing::info!(stage = "detect", signal = %a.signal, old = a.old, new = a.new, reason = a.reason.as_str(), incident = ?a.incident, "threshold offset adjusted");
    }
    Ok(marked)
}

/// Records the performed steps that did not help (see
/// `Pipeline::take_not_helped`) as marks and applies them. Without a store
/// nothing is learnt: an adjustment that is not recorded is not made.
pub(crate) async fn learn_from_not_helped(
    pipeline: &mut crate::pipeline::Pipeline,
    store: Option<&store::StoreWriter>,
    telemetry: &crate::telemetry::Telemetry,
) {
    for nh in pipeline.take_not_helped() {
        let mark = store::Mark {
            signal: nh.signal,
            reason: store::SensitivityReason::NotHelped,
            incident: Some(nh.incident),
            missed_at_ms: None,
            note: Some(format!("step {} verified as not having helped", nh.step)),
            at_ms: now_ms(),
        };
        if store.is_none() {
            tracing::debug!(signal = %mark.signal, "step did not help; no --db, nothing learnt");
            continue;
        }
        if let Err((_, e)) = record_mark(pipeline, store, telemetry, mark).await {
            tracing::error!(stage = "detect", error = %e, "recording a step that did not help failed");
        }
    }
}

/// Sets a signal's threshold offset in the pipeline and in `/metrics`.
pub(crate) fn apply_offset(
    pipeline: &mut crate::pipeline::Pipeline,
    telemetry: &crate::telemetry::Telemetry,
    signal: &str,
    offset: f64,
) {
    pipeline.set_threshold_offset(signal, offset);
    telemetry.set(
        "heal_signal_threshold_offset",
        &[("signal", signal)],
        offset,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(matchers: &[&str], duration: &str, starts_at: Option<&str>) -> NewSilence {
        NewSilence {
            matchers: matchers.iter().map(|m| (*m).to_owned()).collect(),
            starts_at: starts_at.map(str::to_owned),
            duration: duration.to_owned(),
            created_by: "alice".into(),
            comment: "deploy".into(),
        }
    }

    #[test]
    fn new_silences_are_checked_with_every_problem_reported() {
        let (m, s, e) = parse_new_silence(&body(&["service=web"], "1h", None), 1000).unwrap();
        assert_eq!((m.len(), s, e), (1, 1000, 3_601_000));
        let (_, s, _) = parse_new_silence(
            &body(&["service=web"], "1h", Some("2026-03-01T00:00:00Z")),
            0,
        )
        .unwrap();
        assert_eq!(s, 1_772_323_200_000);
        let e = parse_new_silence(&body(&["service"], "0s", Some("yesterday")), 0).unwrap_err();
        assert!(e.contains("expected NAME=VALUE"), "{e}");
        assert!(e.contains("starts_at \"yesterday\""), "{e}");
        assert!(e.contains("duration: must be longer than 0s"), "{e}");
        assert!(parse_new_silence(&body(&[], "1h", None), 0)
            .unwrap_err()
            .contains("at least one"));
    }
}
