//! The agent's HTTP server: for every request decide, audit, run, audit
//! again, answer.
//!
//! Every request is audited, the refused ones included, before the answer
//! is sent; an accepted request is audited before its program starts, and
//! if that line cannot be written the program does not run (an action that
//! leaves no trace is worse than one that does not happen).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use executors::agent::{
    self as protocol, ActionResponse, Refusal, ACTIONS_PATH, MAX_BODY_BYTES, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
use executors::exec;
use stdx::Clock;
use tokio::sync::Semaphore;

use super::AgentError;
use super::{admit, AgentConfig, AuditEvent, AuditRecord, Verifier};

/// Programs run at once; further accepted requests wait their turn.
const MAX_CONCURRENT: usize = 4;

/// An agent ready to serve: its configuration, key, audit log and clock.
pub struct AgentServer {
    config: AgentConfig,
    verifier: Mutex<Verifier>,
    audit: Mutex<File>,
    running: Semaphore,
    /// The agent's `PATH`, passed to programs whose action sets none.
    path: Option<String>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AgentServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentServer")
            .field("actions", &self.config.actions.len())
            .field("audit_log", &self.config.audit_log)
            .finish_non_exhaustive()
    }
}

impl AgentServer {
    /// Reads the configuration at `config_path` (paths in it are relative
    /// to its file), the shared key and opens the audit log for appending.
    /// `env` looks up environment variables (`key_env`, and `PATH` for the
    /// programs): only the binary reads the environment.
    ///
    /// # Errors
    ///
    /// Every problem of the configuration, a missing or exposed key, an
    /// audit log that cannot be opened.
    pub fn open(
        config_path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<AgentServer, AgentError> {
        let mut config = AgentConfig::load(config_path)?;
        let base = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        config.audit_log = base.join(&config.audit_log);
        let key = load_key(&config, &base, env)?;
        let audit = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.audit_log)
            .map_err(|e| {
                AgentError::Setup(format!(
                    "opening audit log {}: {e}",
                    config.audit_log.display()
                ))
            })?;
        Ok(AgentServer {
            verifier: Mutex::new(Verifier::new(key, config.replay_window)),
            config,
            audit: Mutex::new(audit),
            running: Semaphore::new(MAX_CONCURRENT),
            path: env("PATH"),
            clock,
        })
    }

    /// The configuration (audit log path made absolute to its file).
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }
}

/// The shared key, from the file or the environment variable the
/// configuration names. A key file readable by group or others is refused,
/// as ssh refuses such a private key.
///
/// # Errors
///
/// A missing, unreadable, exposed or short key.
pub fn load_key(
    config: &AgentConfig,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, AgentError> {
    let fail = AgentError::Setup;
    let text = match (&config.key_file, &config.key_env) {
        (Some(file), _) => {
            let path: PathBuf = base.join(file);
            let meta = std::fs::metadata(&path)
                .map_err(|e| fail(format!("key_file {}: {e}", path.display())))?;
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(fail(format!(
                        "key_file {}: readable by group or others (mode {mode:03o}); run chmod 600 on it",
                        path.display()
                    )));
                }
            }
            std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("key_file {}: {e}", path.display())))?
        }
        (None, Some(var)) => env(var)
            .ok_or_else(|| fail(format!("key_env: environment variable {var} is not set")))?,
        // Validation guarantees exactly one.
        (None, None) => unreachable!("a validated agent configuration names a key"),
    };
    protocol::key_from_text(&text).map_err(fail)
}

/// Serves `server` on `listener` until `shutdown` resolves (in-flight
/// requests finish first).
///
/// # Errors
///
/// The listener failing.
pub async fn serve(
    server: Arc<AgentServer>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "heal agent listens on a non-loopback address: requests are authenticated but not encrypted");
    }
    let n = server.config.actions.len();
    eprintln!(
        "heal agent listening on http://{addr}{ACTIONS_PATH} ({n} action{} allowed, replay window {}, audit log {})",
        if n == 1 { "" } else { "s" },
        server.config.replay_window,
        server.config.audit_log.display()
    );
    let app = axum::Router::new().fallback(handle).with_state(server);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    eprintln!("heal agent: shutting down");
    Ok(())
}

/// Every request, whatever its path: only `POST /v1/actions` can succeed,
/// and every one is audited.
async fn handle(
    State(state): State<Arc<AgentServer>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_ms = state.clock.now_ms();
    let remote = remote.to_string();
    // Answers to requests whose signature verified are signed in turn.
    let sign_answer = |request_signature: Option<&str>, json: Vec<u8>, status: StatusCode| {
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json.clone(),
        )
            .into_response();
        if let Some(request_signature) = request_signature {
            let sig = state
                .verifier
                .lock()
                .expect("verifier lock not poisoned")
                .sign_response(request_signature, &json);
            if let Ok(value) = axum::http::HeaderValue::from_str(&sig) {
                response.headers_mut().insert(SIGNATURE_HEADER, value);
            }
        }
        response
    };
    let refuse =
        |refusal: Refusal, req: Option<&protocol::ActionRequest>, authentic: Option<&str>| {
            let mut record = AuditRecord::new(
                received_ms,
                remote.clone(),
                AuditEvent::Refused,
                refusal.status(),
            )
            .with_request(req);
            record.reason = Some(refusal.code().to_owned());
            record.message = Some(refusal.to_string());
            if let Err(e) = audit(&state, &record) {
                tracing::error!(error = %e, "writing the audit log");
            }
            tracing::warn!(%remote, reason = refusal.code(), message = %refusal, "request refused");
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let json = serde_json::to_vec(&refusal.body()).expect("a refusal serializes");
            sign_answer(authentic, json, status)
        };
    if method != Method::POST || uri.path() != ACTIONS_PATH {
        return refuse(
            Refusal::NotFound(format!("{method} {}", uri.path())),
            None,
            None,
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                Refusal::BadBody(format!(
                    "reading the body (at most {MAX_BODY_BYTES} bytes): {e}"
                )),
                None,
                None,
            )
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let admitted = {
        let mut verifier = state.verifier.lock().expect("verifier lock not poisoned");
        admit(
            &mut verifier,
            &state.config,
            received_ms.div_euclid(1000),
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &bytes,
        )
    };
    // The signature verified when admission got past authentication.
    let request_signature = header(SIGNATURE_HEADER);
    let (req, mut exec_req) = match admitted {
        Ok(ok) => ok,
        Err((refusal, req)) => {
            let authentic = match refusal {
                Refusal::Unauthenticated(_)
                | Refusal::Stale { .. }
                | Refusal::BadSignature
                | Refusal::Replayed
                | Refusal::ReplayCacheFull => None,
                _ => request_signature,
            };
            return refuse(refusal, req.as_ref(), authentic);
        }
    };
    if !exec_req.env.contains_key("PATH") {
        if let Some(path) = &state.path {
            exec_req.env.insert("PATH".to_owned(), path.clone());
        }
    }
    let mut accepted = AuditRecord::new(received_ms, remote.clone(), AuditEvent::Accepted, 200)
        .with_request(Some(&req));
    accepted.argv = Some(exec_req.argv.clone());
    if let Err(e) = audit(&state, &accepted) {
        tracing::error!(error = %e, "writing the audit log; not running the action");
        let body = protocol::RefusalBody {
            refused: "audit_failed".into(),
            message: "the agent cannot write its audit log".into(),
        };
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    tracing::info!(%remote, action = %req.action, request_id = %req.request_id, argv = ?exec_req.argv, "request accepted");
    let result = {
        let _permit = state
            .running
            .acquire()
            .await
            .expect("semaphore never closed");
        exec::run(&exec_req).await
    };
    let mut completed =
        AuditRecord::new(received_ms, remote, AuditEvent::Completed, 200).with_request(Some(&req));
    completed.params = None;
    completed.ok = Some(result.ok);
    completed.summary = Some(result.summary.clone());
    completed.duration_ms = Some(result.duration.as_millis() as u64);
    if let Err(e) = audit(&state, &completed) {
        tracing::error!(error = %e, "writing the audit log");
    }
    let answer = ActionResponse {
        ok: result.ok,
        retryable: result.retryable,
        summary: result.summary,
        output: result.output,
        duration_ms: result.duration.as_millis() as u64,
    };
    let json = serde_json::to_vec(&answer).expect("an answer serializes");
    sign_answer(request_signature, json, StatusCode::OK)
}

/// Appends one JSON line. One `write_all` of a whole line to a file opened
/// in append mode: lines of concurrent requests do not interleave.
fn audit(state: &AgentServer, record: &AuditRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = state.audit.lock().expect("audit lock not poisoned");
    file.write_all(&line)?;
    file.flush()
}
