//! `heal supervise --config FILE`: heal runs and watches the services of a
//! configuration itself (see `remediate::actions::supervisor`), and serves
//! a control API that the runbook actions `restart`, `scale` and `rollback`
//! call on targets `supervisor/NAME`.
//!
//! Control API (JSON, loopback by default):
//!
//! - `GET /v1/services`, `GET /v1/services/NAME`: status of every replica
//!   (pid, port, phase, release, start and health times, last exit);
//! - `POST /v1/services/NAME/restart`;
//! - `POST /v1/services/NAME/scale` `{"replicas": N}`;
//! - `POST /v1/services/NAME/rollback` `{"to": "v1"}` (or no body: the
//!   previous release);
//! - `POST /v1/services/NAME/deploy` `{"version": .., "argv": [..], "env": {..}}`.
//!
//! Every `POST` needs `Authorization: Bearer TOKEN`, the token being the
//! value of the environment variable named by `--token-env`; without
//! `--token-env` the mutating endpoints are off (403). Why no unauthenticated
//! mode even on loopback: any local user could otherwise restart or deploy
//! arbitrary argv as heal's user.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use remediate::actions::supervisor::{Release, Supervisor, SupervisorConfig, SupervisorError};
use serde::Deserialize;

use super::UsageError;

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// The services to run (YAML; see `remediate::actions::supervisor`).
    #[arg(long)]
    config: PathBuf,
    /// Address of the control API. Anything but loopback needs `--token-env`.
    #[arg(long, default_value = "127.0.0.1:9465")]
    listen: SocketAddr,
    /// Directory of the release state file and the children's logs.
    #[arg(long, default_value = "supervisor-state")]
    state_dir: PathBuf,
    /// Name of an environment variable holding the bearer token that the
    /// control API's mutating endpoints require (off without it).
    #[arg(long)]
    token_env: Option<String>,
    /// Stop after this long (for tests); runs until SIGINT or SIGTERM otherwise.
    #[arg(long)]
    run_for: Option<String>,
}

pub fn run(args: SuperviseArgs) -> anyhow::Result<()> {
    let config = SupervisorConfig::load(&args.config).map_err(|e| UsageError(e.to_string()))?;
    let token = match &args.token_env {
        Some(var) => {
            let t = std::env::var(var)
                .map_err(|_| UsageError(format!("--token-env: {var} is not set")))?;
            if t.len() < 16 {
                return Err(UsageError(format!(
                    "--token-env: the token in {var} is shorter than 16 characters"
                ))
                .into());
            }
            Some(t)
        }
        None => None,
    };
    if !args.listen.ip().is_loopback() && token.is_none() {
        return Err(UsageError(format!(
            "--listen {}: a control API off loopback needs --token-env",
            args.listen
        ))
        .into());
    }
    let run_for = args
        .run_for
        .as_deref()
        .map(|v| {
            remediate::Duration::from_str(v)
                .map(|d| Duration::from_millis(d.as_millis()))
                .map_err(|e| UsageError(format!("--run-for {v:?}: {e}")))
        })
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(supervise(args, config, token, run_for))
}

#[derive(Debug)]
struct Api {
    supervisor: Supervisor,
    token: Option<String>,
}

async fn supervise(
    args: SuperviseArgs,
    config: SupervisorConfig,
    token: Option<String>,
    run_for: Option<Duration>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| UsageError(format!("listening on {}: {e}", args.listen)))?;
    let services = config.services.len();
    let supervisor = Supervisor::start(config, &args.state_dir)
        .await
        .map_err(|e| UsageError(e.to_string()))?;
    eprintln!(
        "heal supervise: {services} services; state in {}; control API on http://{}{}",
        supervisor.state_file().display(),
        listener.local_addr()?,
        if token.is_some() {
            ""
        } else {
            " (read-only: no --token-env)"
        }
    );
    let api = Arc::new(Api {
        supervisor: supervisor.clone(),
        token,
    });
    let app = Router::new()
        .route("/v1/services", get(list))
        .route("/v1/services/{name}", get(one))
        .route("/v1/services/{name}/restart", post(restart))
        .route("/v1/services/{name}/scale", post(scale))
        .route("/v1/services/{name}/rollback", post(rollback))
        .route("/v1/services/{name}/deploy", post(deploy))
        .with_state(api);
    let stop = async move {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => shutdown_signal().await,
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .context("serving the control API")?;
    eprintln!("heal supervise: stopping every service");
    supervisor.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

type Shared = State<Arc<Api>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

fn supervisor_error(e: SupervisorError) -> Response {
    let status = match &e {
        SupervisorError::UnknownService { .. } => StatusCode::NOT_FOUND,
        SupervisorError::VersionConflict { .. } => StatusCode::CONFLICT,
        e if e.is_request_error() => StatusCode::BAD_REQUEST,
        SupervisorError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// Checks the bearer token; `Some` is the refusal to send.
fn refuse(api: &Api, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &api.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "mutating endpoints are off: start heal supervise with --token-env",
        ));
    };
    (!super::control::bearer_matches(headers, expected))
        .then(|| error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

/// Parses a JSON body; an empty body is `{}`.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| format!("reading the body: {e}"))
}

fn respond(r: Result<remediate::actions::supervisor::ServiceStatus, SupervisorError>) -> Response {
    match r {
        Ok(s) => Json(s).into_response(),
        Err(e) => supervisor_error(e),
    }
}

async fn list(State(api): Shared) -> Response {
    Json(api.supervisor.status()).into_response()
}

async fn one(State(api): Shared, Path(name): Path<String>) -> Response {
    respond(api.supervisor.service(&name))
}

async fn restart(State(api): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&api, &headers) {
        return r;
    }
    tracing::warn!(stage = "supervisor", service = %name, "restart requested");
    respond(api.supervisor.restart(&name))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: u32,
}

async fn scale(
    State(api): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Some(r) = refuse(&api, &headers) {
        return r;
    }
    let b: ScaleBody = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    tracing::warn!(stage = "supervisor", service = %name, replicas = b.replicas, "scale requested");
    respond(api.supervisor.scale(&name, b.replicas).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    to: Option<String>,
}

async fn rollback(
    State(api): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Some(r) = refuse(&api, &headers) {
        return r;
    }
    let b: RollbackBody = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    tracing::warn!(stage = "supervisor", service = %name, to = ?b.to, "rollback requested");
    respond(api.supervisor.rollback(&name, b.to.as_deref()))
}

async fn deploy(
    State(api): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Some(r) = refuse(&api, &headers) {
        return r;
    }
    let release: Release = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    tracing::warn!(stage = "supervisor", service = %name, version = %release.version, "deploy requested");
    respond(api.supervisor.deploy(&name, release))
}
