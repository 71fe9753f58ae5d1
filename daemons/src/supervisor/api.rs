//! The control API of `heal supervise`, which the runbook actions
//! `restart`, `scale` and `rollback` call on targets `supervisor/NAME`.
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

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{Release, ServiceStatus, Supervisor, SupervisorError};

#[derive(Debug)]
struct Api {
    supervisor: Supervisor,
    token: Option<String>,
}

/// Serves the control API of `supervisor` on `listener` until `shutdown`
/// resolves, then stops every service. Without a `token` the mutating
/// endpoints answer 403.
///
/// # Errors
///
/// The listener failing.
pub async fn serve(
    supervisor: Supervisor,
    token: Option<String>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
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
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    eprintln!("heal supervise: stopping every service");
    supervisor.shutdown().await;
    served
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
    (!crate::auth::bearer_matches(headers, expected))
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

fn respond(r: Result<ServiceStatus, SupervisorError>) -> Response {
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

/// Reads `bytes` as every body the control API takes (for the property
/// tests: none may panic).
#[cfg(test)]
pub(crate) fn fuzz_bodies(bytes: &Bytes) {
    let _ = body::<ScaleBody>(bytes);
    let _ = body::<RollbackBody>(bytes);
    if let Ok(release) = body::<Release>(bytes) {
        let _ = format!("{release:?}");
    }
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
