//! The executor compliance test: every action kind, through the one entry
//! the act stage uses ([`Executors::perform`]), against a real process or
//! server, passes the same three checks:
//!
//! 1. **dry-run performs nothing**: the result is ok and says what would
//!    have been done; the program did not run, the server received nothing,
//!    the state did not change;
//! 2. **the timeout is honoured**: against a program or server that hangs,
//!    `perform` returns within the step's timeout (plus, for webhooks, the
//!    retry policy's waits between attempts) with a retryable failure;
//! 3. **retryable and final failures are told apart**: what a second try
//!    could fix (nothing listening, a 5xx) is retryable; what it could not
//!    (the program said no, a 4xx refusal, a target no executor handles) is
//!    final.
//!
//! vector's `run_and_assert_source_compliance` (one shared harness every
//! source passes) is the model. The real parts: `touch`, `sleep` and
//! `false` as programs; `heal agent` and `heal supervise` (the daemons,
//! in-process on port 0); HAProxy (Debian package `haproxy`); for
//! webhooks a small HTTP server in this process (`src/test_server.rs`).

#[path = "../src/test_server.rs"]
#[allow(dead_code)]
mod test_server;

#[allow(dead_code)]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executors::supervisor::SupervisorClient;
use executors::webhook::Retry;
use executors::{ActionResult, EnvLookup, Executors, RenderedAction};
use remediate::runbook::{HttpMethod, ServerState};
use stdx::Backoff;
use test_server::{Reply, TestServer};

/// A step timeout short enough to keep the suite fast, long enough for a
/// loaded 2-core machine to start a program.
const SHORT: Duration = Duration::from_millis(800);
/// Slack on top of a timeout before `perform` counts as having ignored it.
const SLACK: Duration = Duration::from_secs(2);
const AGENT_KEY: &str = "5f1c0e7a9d2b4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e";
const TOKEN: &str = "compliance-token-0123456789";

fn env() -> EnvLookup {
    Arc::new(|name: &str| match name {
        "HEAL_TEST_AGENT_KEY" => Some(AGENT_KEY.to_owned()),
        "PATH" => std::env::var("PATH").ok(),
        _ => None,
    })
}

fn executors() -> Executors {
    Executors::new(env(), Arc::new(stdx::SystemClock))
}

/// A port nothing listens on right now.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Performs `action` and returns the result with how long it took.
async fn perform(
    ex: &Executors,
    action: &RenderedAction,
    timeout: Duration,
    dry_run: bool,
) -> (ActionResult, Duration) {
    let t0 = Instant::now();
    let r = ex.perform(action, timeout, dry_run).await;
    (r, t0.elapsed())
}

fn assert_dry_run(r: &ActionResult) {
    assert!(r.ok && !r.retryable, "{r:?}");
    assert!(r.summary.starts_with("dry run: would "), "{}", r.summary);
}

fn assert_timed_out(r: &ActionResult, took: Duration, bound: Duration) {
    assert!(!r.ok && r.retryable, "a timeout is retryable: {r:?}");
    assert!(
        took < bound + SLACK,
        "took {took:?}, bound {bound:?}: {r:?}"
    );
}

fn assert_final(r: &ActionResult) {
    assert!(!r.ok && !r.retryable, "expected a final failure: {r:?}");
}

fn assert_retryable(r: &ActionResult) {
    assert!(!r.ok && r.retryable, "expected a retryable failure: {r:?}");
}

#[tokio::test]
async fn exec_complies() {
    let ex = executors();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let touch = RenderedAction::Exec {
        argv: vec!["touch".into(), marker.display().to_string()],
    };
    let (r, _) = perform(&ex, &touch, SHORT, true).await;
    assert_dry_run(&r);
    assert!(!marker.exists(), "a dry run ran the program");
    // Performed for real, it runs.
    let (r, _) = perform(&ex, &touch, Duration::from_secs(10), false).await;
    assert!(r.ok, "{r:?}");
    assert!(marker.exists());

    let sleep = RenderedAction::Exec {
        argv: vec!["sleep".into(), "30".into()],
    };
    let (r, took) = perform(&ex, &sleep, SHORT, false).await;
    assert_timed_out(&r, took, SHORT);

    // The program said no, or cannot start: a retry cannot help.
    let (r, _) = perform(
        &ex,
        &RenderedAction::Exec {
            argv: vec!["false".into()],
        },
        SHORT * 5,
        false,
    )
    .await;
    assert_final(&r);
    let missing = RenderedAction::Exec {
        argv: vec![dir.path().join("no-such-program").display().to_string()],
    };
    let (r, _) = perform(&ex, &missing, SHORT, false).await;
    assert_final(&r);
}

#[tokio::test]
async fn webhook_complies() {
    // Two attempts 100 ms apart: the step's timeout is split between the
    // attempts, the wait between them comes on top.
    let retry = Retry {
        attempts: 2,
        backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)),
    };
    let ex = executors().with_webhook_retry(retry);
    let hook = |url: String| RenderedAction::Webhook {
        url,
        method: HttpMethod::Post,
        headers: Default::default(),
        body: Some(serde_json::json!({"text": "compliance"})),
    };

    let server = TestServer::start(vec![Reply::now(200, "ok")]);
    let (r, _) = perform(&ex, &hook(server.url("/hook")), SHORT, true).await;
    assert_dry_run(&r);
    assert!(server.received().is_empty(), "a dry run sent a request");
    let (r, _) = perform(&ex, &hook(server.url("/hook")), SHORT * 5, false).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(server.received().len(), 1);

    let hung = TestServer::start(vec![Reply {
        delay: Duration::from_secs(30),
        ..Reply::now(200, "late")
    }]);
    let (r, took) = perform(&ex, &hook(hung.url("/hook")), SHORT, false).await;
    assert_timed_out(&r, took, SHORT + Duration::from_millis(100));

    let unavailable = TestServer::start(vec![Reply::now(503, "busy")]);
    let (r, _) = perform(&ex, &hook(unavailable.url("/hook")), SHORT * 5, false).await;
    assert_retryable(&r);
    assert_eq!(unavailable.received().len(), 2, "retried once");
    let refused = TestServer::start(vec![Reply::now(400, "bad request")]);
    let (r, _) = perform(&ex, &hook(refused.url("/hook")), SHORT * 5, false).await;
    assert_final(&r);
    assert_eq!(refused.received().len(), 1, "a 4xx is never retried");
    let (r, _) = perform(
        &ex,
        &hook(format!("http://127.0.0.1:{}/hook", dead_port())),
        SHORT * 5,
        false,
    )
    .await;
    assert_retryable(&r);
}

/// `heal agent`, in-process on port 0, allowing `touch-marker` and `nap`.
async fn start_agent(dir: &Path) -> String {
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"key_env: HEAL_TEST_AGENT_KEY
audit_log: audit.jsonl
actions:
  touch-marker:
    argv: [touch, "{}/marker-{{{{name}}}}"]
    params:
      name: {{type: label}}
  nap:
    argv: [sleep, "30"]
    timeout: 60s
"#,
            dir.display()
        ),
    )
    .unwrap();
    let lookup = env();
    let server = daemons::agent::AgentServer::open(&config, &*lookup, Arc::new(stdx::SystemClock))
        .expect("agent configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(daemons::agent::serve(
        Arc::new(server),
        listener,
        std::future::pending(),
    ));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_complies() {
    let ex = executors();
    let dir = tempfile::tempdir().unwrap();
    let url = start_agent(dir.path()).await;
    let call = |url: &str, name: &str, params: &[(&str, &str)]| RenderedAction::Agent {
        url: url.to_owned(),
        name: name.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        key_env: "HEAL_TEST_AGENT_KEY".into(),
    };
    let touch = call(&url, "touch-marker", &[("name", "a")]);
    let (r, _) = perform(&ex, &touch, SHORT, true).await;
    assert_dry_run(&r);
    assert!(
        !dir.path().join("marker-a").exists(),
        "a dry run ran the action"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(audit.is_empty(), "a dry run reached the agent: {audit}");
    let (r, _) = perform(&ex, &touch, Duration::from_secs(10), false).await;
    assert!(r.ok, "{r:?}");
    assert!(dir.path().join("marker-a").exists());

    let (r, took) = perform(&ex, &call(&url, "nap", &[]), SHORT, false).await;
    assert_timed_out(&r, took, SHORT);

    // Refused by the agent (not in its allowlist): final.
    let (r, _) = perform(&ex, &call(&url, "rm-rf", &[]), SHORT * 5, false).await;
    assert_final(&r);
    assert!(r.summary.contains("unknown_action"), "{}", r.summary);
    // No key in the environment: final, and nothing is sent.
    let no_key = RenderedAction::Agent {
        url: url.clone(),
        name: "touch-marker".into(),
        params: [("name".to_owned(), "b".to_owned())].into(),
        key_env: "HEAL_TEST_NO_SUCH_KEY".into(),
    };
    let (r, _) = perform(&ex, &no_key, SHORT, false).await;
    assert_final(&r);
    // Nothing listening: retryable (nothing ran).
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let (r, _) = perform(
        &ex,
        &call(&dead, "touch-marker", &[("name", "c")]),
        SHORT * 5,
        false,
    )
    .await;
    assert_retryable(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_complies() {
    use daemons::supervisor::{Phase, Supervisor, SupervisorConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = SupervisorConfig::from_text(
        Path::new("supervise.yaml"),
        "services:\n  - name: s\n    release: {version: v1, argv: [sleep, \"300\"], env: {PATH: /usr/bin:/bin}}\n",
    )
    .unwrap();
    let supervisor = Supervisor::start(config, dir.path(), Arc::new(stdx::SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(daemons::supervisor::serve(
        supervisor.clone(),
        Some(TOKEN.to_owned()),
        listener,
        std::future::pending(),
    ));
    let starts = || supervisor.service("s").unwrap().instances[0].starts;
    let t0 = Instant::now();
    while supervisor.service("s").unwrap().instances[0].phase != Phase::Healthy {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the service never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ex = executors().with_supervisor(SupervisorClient::new(&base, Some(TOKEN.into())).unwrap());
    let restart = RenderedAction::Restart {
        target: "supervisor/s".into(),
    };
    let (r, _) = perform(&ex, &restart, SHORT, true).await;
    assert_dry_run(&r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(starts(), 1, "a dry run restarted the service");
    let (r, _) = perform(&ex, &restart, Duration::from_secs(10), false).await;
    assert!(r.ok, "{r:?}");
    let t0 = Instant::now();
    while starts() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the restart never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A control API that accepts the connection and never answers.
    let hung = TestServer::start(vec![Reply {
        delay: Duration::from_secs(30),
        ..Reply::now(200, "{}")
    }]);
    let hung_ex = executors().with_supervisor(SupervisorClient::new(&hung.url(""), None).unwrap());
    let (r, took) = perform(&hung_ex, &restart, SHORT, false).await;
    assert_timed_out(&r, took, SHORT);

    // Unknown service (404), a target no executor handles, or no
    // supervisor at all: final. Nothing listening: retryable.
    let unknown = RenderedAction::Scale {
        target: "supervisor/nope".into(),
        replicas: 2,
    };
    let (r, _) = perform(&ex, &unknown, SHORT * 5, false).await;
    assert_final(&r);
    let (r, _) = perform(
        &ex,
        &RenderedAction::Rollback {
            target: "deployment/web".into(),
            to: None,
        },
        SHORT,
        false,
    )
    .await;
    assert_final(&r);
    let (r, _) = perform(&executors(), &restart, SHORT, false).await;
    assert_final(&r);
    assert!(r.summary.contains("without --supervisor"), "{}", r.summary);
    let dead = executors().with_supervisor(
        SupervisorClient::new(&format!("http://127.0.0.1:{}", dead_port()), None).unwrap(),
    );
    let (r, _) = perform(&dead, &restart, SHORT * 5, false).await;
    assert_retryable(&r);
    supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_reroute_complies() {
    let a = support::name_server("a");
    let lab = support::Lab::start(&[("a", a)]).await;
    let ex = executors();
    let drain = |api| RenderedAction::Reroute {
        target: "a".into(),
        backend: "be".into(),
        state: ServerState::Maint,
        api,
        weight: None,
    };
    let state_of_a = || async {
        lab.table()
            .await
            .into_iter()
            .find(|s| s.name == "a")
            .expect("server a")
    };
    let before = state_of_a().await;
    let (r, _) = perform(&ex, &drain(lab.unix_api.clone()), SHORT, true).await;
    assert_dry_run(&r);
    assert_eq!(state_of_a().await, before, "a dry run changed HAProxy");
    let (r, _) = perform(
        &ex,
        &drain(lab.tcp_api.clone()),
        Duration::from_secs(10),
        false,
    )
    .await;
    assert!(r.ok, "{r:?}");
    assert_ne!(state_of_a().await, before);

    // A runtime API address that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_api = format!("{}", silent.local_addr().unwrap()).parse().unwrap();
    let (r, took) = perform(&ex, &drain(silent_api), SHORT, false).await;
    assert_timed_out(&r, took, SHORT);
    drop(silent);

    // An unknown server: HAProxy's answer is final. Nothing listening:
    // retryable (HAProxy may be reloading).
    let unknown = RenderedAction::Reroute {
        target: "zz".into(),
        backend: "be".into(),
        state: ServerState::Ready,
        api: lab.unix_api.clone(),
        weight: None,
    };
    let (r, _) = perform(&ex, &unknown, SHORT * 5, false).await;
    assert_final(&r);
    let dead = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
    let (r, _) = perform(&ex, &drain(dead), SHORT * 5, false).await;
    assert_retryable(&r);
}

/// `docker`: the real engine for dry-run and a final refusal; a UNIX
/// socket that accepts and never answers (an engine that hangs) for the
/// timeout; a socket nobody listens on for the retryable case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_complies() {
    use executors::docker::{DockerClient, DEFAULT_SOCKET};
    use remediate::runbook::DockerOp;
    let engine = DockerClient::connect(DEFAULT_SOCKET)
        .unwrap_or_else(|e| panic!("Docker Engine is not reachable ({e}): this test never skips"));
    let before = engine
        .ping()
        .await
        .unwrap_or_else(|e| panic!("Docker Engine is not reachable ({e}): this test never skips"));
    assert!(!before.is_empty());
    let ex = executors().with_docker(engine.clone());
    let name = format!("heal-compliance-none-{}", std::process::id());
    let restart = RenderedAction::Docker {
        op: DockerOp::Restart,
        target: format!("container/{name}"),
        signal: None,
        replicas: None,
        image: None,
        rollout: None,
    };
    // Dry-run: ok, and the engine was not asked (a real run would be a
    // 404 for this container, which does not exist).
    let (r, _) = perform(&ex, &restart, SHORT, true).await;
    assert_dry_run(&r);
    // Performed: the engine's 404 is final; so is a hostile target.
    let (r, _) = perform(&ex, &restart, Duration::from_secs(10), false).await;
    assert_final(&r);
    assert!(r.summary.contains("404"), "{r:?}");
    let hostile = RenderedAction::Docker {
        op: DockerOp::Stop,
        target: "container/a/../../b".into(),
        signal: None,
        replicas: None,
        image: None,
        rollout: None,
    };
    let (r, _) = perform(&ex, &hostile, SHORT, false).await;
    assert_final(&r);
    // The old kinds on docker/ targets go to the same executor.
    let (r, _) = perform(
        &ex,
        &RenderedAction::Restart {
            target: format!("docker/container/{name}"),
        },
        Duration::from_secs(10),
        false,
    )
    .await;
    assert_final(&r);
    assert!(r.summary.contains("404"), "{r:?}");
    // Without an engine configured: final, and says so.
    let (r, _) = perform(&executors(), &restart, SHORT, false).await;
    assert_final(&r);
    assert!(r.summary.contains("without --docker"), "{r:?}");

    // An engine that hangs: the step's timeout holds, retryable.
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang.sock");
    let listener = tokio::net::UnixListener::bind(&hang).unwrap();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            kept.push(s);
        }
    });
    let ex = executors().with_docker(DockerClient::connect(hang.to_str().unwrap()).unwrap());
    let (r, took) = perform(&ex, &restart, SHORT, false).await;
    assert_timed_out(&r, took, SHORT);
    held.abort();
    // Nobody listening on the socket: retryable.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let ex = executors().with_docker(DockerClient::connect(dead.to_str().unwrap()).unwrap());
    let (r, _) = perform(&ex, &restart, SHORT, false).await;
    assert_retryable(&r);
}
