//! `heal watch`'s HTTP API and persisted guard state, in-process: the live
//! loop (`heal::live::run`) on a listener bound to port 0, stopped through
//! the shutdown future it was given, and talked to with the library's own
//! client (`heal::api::call`, what `heal silence` and `heal approve` send).
//!
//! Prometheus is deliberately absent: evaluations fail ("no data") while
//! the loop, the API and the guard state keep working.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use executors::Executors;
use heal::api::ApiCall;
use heal::live::LiveConfig;
use ingest::PrometheusConfig;
use remediate::RunbookSet;
use tokio::sync::oneshot;

const TOKEN: &str = "s3cret-token-for-tests";

fn config(dir: &Path) -> LiveConfig {
    let runbooks =
        RunbookSet::from_sources(&[("r.yaml".into(), common::APPROVAL_RUNBOOK.into())]).unwrap();
    // Port 9 (discard): nothing answers there.
    let mut prometheus = PrometheusConfig::new("http://127.0.0.1:9");
    prometheus.timeout_ms = 200;
    let clock = Arc::new(stdx::SystemClock);
    LiveConfig {
        runbooks,
        prometheus,
        interval: Duration::from_secs(1),
        backfill: Duration::ZERO,
        execute: false,
        state: Some(dir.join("guards.json")),
        db: None,
        log_state: None,
        params: None,
        api_token: Some(TOKEN.into()),
        executors: Executors::new(Arc::new(|_: &str| None), clock.clone()),
        series: Default::default(),
        remote_write: None,
        clock,
    }
}

/// A live loop running in this process.
struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<heal::Result<()>>,
}

async fn start(config: LiveConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(heal::live::run(config, listener, async {
        let _ = stopped.await;
    }));
    Running { base, stop, task }
}

impl Running {
    async fn call(
        &self,
        token: Option<&str>,
        method: &'static str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> heal::Result<serde_json::Value> {
        let text = heal::api::call(ApiCall {
            base: self.base.clone(),
            token: token.map(str::to_owned),
            method,
            path: path.to_owned(),
            body,
        })
        .await?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn silence(by: &str, comment: &str) -> serde_json::Value {
    serde_json::json!({
        "matchers": ["service=web", "instance=~web-.*"],
        "duration": "2h",
        "created_by": by,
        "comment": comment,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_persist_across_restarts_and_changes_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let heal = start(config(dir.path())).await;
    let body = silence("alice", "deploying web");

    // No token, a wrong token: refused (a usage error: exit 64 at the
    // command line), nothing added.
    let e = heal
        .call(None, "POST", "/api/silences", Some(body.clone()))
        .await
        .unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("401"), "{e}");
    let e = heal
        .call(Some("wrong"), "POST", "/api/silences", Some(body.clone()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("missing or wrong bearer token"),
        "{e}"
    );
    // A bad matcher is refused with every problem named.
    let e = heal
        .call(
            Some(TOKEN),
            "POST",
            "/api/silences",
            Some(serde_json::json!({"matchers": ["service"], "duration": "0s", "created_by": "a", "comment": "x"})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expected NAME=VALUE"), "{e}");
    assert!(e.to_string().contains("must be longer than 0s"), "{e}");

    let added = heal
        .call(Some(TOKEN), "POST", "/api/silences", Some(body.clone()))
        .await
        .unwrap();
    assert_eq!(added["id"], "sil-000001");
    assert_eq!(added["created_by"], "alice");
    assert_eq!(added["matchers"][1]["op"], "=~");

    // Approving an incident that has nothing parked is a clear error.
    let e = heal
        .call(
            Some(TOKEN),
            "POST",
            "/api/incidents/inc-000042/approve",
            Some(serde_json::json!({"by": "bob"})),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("incident inc-000042 has no step waiting for approval"),
        "{e}"
    );
    // Marks need an incident store.
    let e = heal
        .call(
            Some(TOKEN),
            "POST",
            "/api/missed",
            Some(serde_json::json!({"signal": "lat", "at": "-1h"})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
    // Not healthy yet: no evaluation has succeeded (no Prometheus).
    let e = heal.call(None, "GET", "/healthz", None).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");

    // heal restarts: the silence is still there (read back from --state).
    heal.shutdown().await;
    let state = std::fs::read_to_string(dir.path().join("guards.json")).unwrap();
    assert!(state.contains("deploying web"), "{state}");
    let heal = start(config(dir.path())).await;
    let list = heal.call(None, "GET", "/api/silences", None).await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["comment"], "deploying web");

    // Expired: gone from the list, and the next silence gets a new id.
    heal.call(Some(TOKEN), "DELETE", "/api/silences/sil-000001", None)
        .await
        .unwrap();
    let list = heal.call(None, "GET", "/api/silences", None).await.unwrap();
    assert_eq!(list, serde_json::json!([]));
    let added = heal
        .call(Some(TOKEN), "POST", "/api/silences", Some(body))
        .await
        .unwrap();
    assert_eq!(added["id"], "sil-000002");
    heal.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_guard_state_stops_heal_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("guards.json");
    std::fs::write(&state, "{\"attempts\": [ not json").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = heal::live::run(config(dir.path()), listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("guards.json"), "{e}");
    assert!(e.to_string().contains("corrupt guard state"), "{e}");
    // Nothing was overwritten.
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{\"attempts\": [ not json"
    );
}

/// "Answered only once persisted": when the guard state cannot be written
/// (its `--state` directory is gone), a new silence is not answered as
/// created: the client gets a server error saying it was not persisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_persisted_is_not_answered_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let mut cfg = config(dir.path());
    cfg.state = Some(state_dir.join("guards.json"));
    let heal = start(cfg).await;
    // Works while the directory is there.
    heal.call(
        Some(TOKEN),
        "POST",
        "/api/silences",
        Some(silence("alice", "first")),
    )
    .await
    .unwrap();
    assert!(state_dir.join("guards.json").exists());
    std::fs::remove_dir_all(&state_dir).unwrap();
    let e = heal
        .call(
            Some(TOKEN),
            "POST",
            "/api/silences",
            Some(silence("bob", "second")),
        )
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("500"), "{text}");
    assert!(text.contains("not persisted"), "{text}");
    assert!(text.contains("guards.json"), "{text}");
    // Expiring is a change too.
    let e = heal
        .call(Some(TOKEN), "DELETE", "/api/silences/sil-000001", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not persisted"), "{e}");
    heal.shutdown().await;
}
