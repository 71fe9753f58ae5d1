//! `heal watch --execute --db` killed with SIGKILL while an action runs,
//! then started again on the same store: the action is reported as
//! interrupted and not run again, and the incident is intact (the real
//! binary: a process to kill). The other tests here run the live loop
//! in-process (`heal::live::run`) against the same real Prometheus.
//!
//! Real components: a Prometheus (`/usr/bin/prometheus` or
//! `PROMETHEUS_BIN`) scraping a target nobody listens on, so `up` is 0 from
//! the first scrape; a runbook whose rule acts on that at once with an exec
//! action that takes 20 s (`sleep 20`); heal itself, killed by the test
//! once the store shows the action begun.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::http::client;
use store::{ExecutionState, IncidentFilter, IncidentStatus, Store};

/// Whether process `pid` runs (a zombie, dead but not yet reaped by its
/// new parent, does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s[s.rfind(')')? + 1..].split_whitespace().next()?.to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// A child process killed when the guard drops.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn prometheus_bin() -> PathBuf {
    let p = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or("/usr/bin/prometheus".into());
    assert!(
        p.exists(),
        "this test needs Prometheus at {}: `apt-get install prometheus` (CI does), or set PROMETHEUS_BIN",
        p.display()
    );
    p
}

fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

fn start_prometheus(dir: &Path, port: u16, dead: u16) -> Guard {
    start_prometheus_with(
        dir,
        port,
        &format!(
            "  - job_name: dead\n    static_configs:\n      - targets: ['127.0.0.1:{dead}']\n"
        ),
    )
}

/// A Prometheus scraping every second with the given `scrape_configs` entries.
fn start_prometheus_with(dir: &Path, port: u16, scrape_configs: &str) -> Guard {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
        ),
    )
    .unwrap();
    let child = Command::new(prometheus_bin())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    let guard = Guard(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("prometheus to be ready", Duration::from_secs(60), || {
        client::get(addr, "/-/ready", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });
    guard
}

fn watch(prometheus: u16, runbooks: &Path, db: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_heal"));
    cmd.args([
        "watch",
        "--prometheus",
        &format!("http://127.0.0.1:{prometheus}"),
        "--runbooks",
        runbooks.to_str().unwrap(),
        "--interval",
        "1s",
        "--backfill",
        "0s",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ])
    .args(extra)
    .env("HEAL_LOG", "warn");
    cmd
}

#[test]
fn sigkill_of_heal_mid_action_then_restart_reports_it_interrupted_and_does_not_rerun_it() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = free_port();
    let _prom = start_prometheus(dir.path(), prometheus, free_port());
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("dead.yaml"),
        "signals:
  - name: target_up
    query: max by (instance) (up{job=\"dead\"})
    detector:
      direction: down
      limit_below: 0.5
rules:
  - name: target-down
    when: { signal: target_up, direction: down, for: 0s }
    then:
      - action: exec
        argv: ['sleep', '20']
    verify: { wait: 30s }
",
    )
    .unwrap();
    let db = dir.path().join("heal.db");

    // Run 1: acts, and is killed while `sleep 20` runs.
    let heal = watch(prometheus, &runbooks, &db, &["--execute"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut heal = Guard(heal);
    let incident = wait_until("heal to begin the action", Duration::from_secs(120), || {
        let store = Store::open_read_only(&db).ok()?;
        let page = store.list(&IncidentFilter::default()).ok()?;
        let id = page.incidents.last()?.id.clone();
        let record = store.incident(&id).ok()??;
        (record.executions.first()?.state == ExecutionState::Started).then_some(record)
    });
    // The child's pid is recorded right after its spawn; it is the leader
    // of its own process group.
    let process = wait_until(
        "the child's pid in the store",
        Duration::from_secs(30),
        || {
            let store = Store::open_read_only(&db).ok()?;
            store
                .incident("inc-000001")
                .ok()??
                .executions
                .first()?
                .process
        },
    );
    heal.0.kill().unwrap(); // SIGKILL
    heal.0.wait().unwrap();
    // heal is dead, its child is not: `sleep 20` still runs.
    assert!(running(process.pid), "the exec child died with heal");
    assert_eq!(incident.incident.id, "inc-000001");
    assert_eq!(incident.incident.actions.len(), 1);
    assert!(incident.incident.actions[0].decision.allowed);

    // Run 2, same store (in dry-run: it must not matter what it would do).
    let out: Output = watch(prometheus, &runbooks, &db, &["--run-for", "3s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("heal: action inc-000001/step-1/attempt-1 (exec sleep 20) was begun by an earlier run that stopped before it finished: marked interrupted, not run again"),
        "{stderr}"
    );

    // The interrupted action's child was settled: its group killed, and
    // that recorded.
    let settled = format!(
        "process group {} was still running at restart: killed (SIGKILL); its outcome is unknown",
        process.pid
    );
    assert!(
        stderr.contains(&format!(
            "heal: action inc-000001/step-1/attempt-1 settled: {settled}"
        )),
        "{stderr}"
    );
    assert!(!running(process.pid), "the exec child outlived the restart");
    // The incident the killed run left open was closed, with its reason.
    assert!(
        stderr.contains(
            "heal: incident inc-000001 (target-down on target_up{instance=\\\"127.0.0.1:"
        ),
        "{stderr}"
    );

    let store = Store::open_read_only(&db).unwrap();
    let after = store.incident("inc-000001").unwrap().unwrap();
    // The incident is as it was when heal died, now closed, with its one
    // execution marked interrupted and settled: begun once, never again.
    assert_eq!(after.incident, incident.incident);
    assert_eq!(after.status, IncidentStatus::Closed);
    assert_eq!(
        after.closed_reason.as_deref(),
        Some(store::CLOSED_AT_RESTART)
    );
    assert_eq!(after.executions.len(), 1, "{:?}", after.executions);
    assert_eq!(after.executions[0].state, ExecutionState::Interrupted);
    assert_eq!(after.executions[0].key, incident.executions[0].key);
    assert_eq!(
        after.executions[0].settled.as_deref(),
        Some(settled.as_str())
    );
    // Never two open incidents of one series and rule: run 2 opened a new
    // one (the target is still down) beside the closed one.
    let all = store.list(&IncidentFilter::default()).unwrap().incidents;
    let open: Vec<_> = all
        .iter()
        .filter(|s| s.status == IncidentStatus::Open && s.rule == "target-down")
        .collect();
    assert!(open.len() <= 1, "{all:?}");
    // Run 2 numbered its incidents after run 1's.
    let ids: Vec<String> = store
        .list(&IncidentFilter::default())
        .unwrap()
        .incidents
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids.iter().filter(|id| *id == "inc-000001").count(), 1);
    assert!(ids.iter().all(|id| id.as_str() >= "inc-000001"), "{ids:?}");
}

/// Learning from outcomes, live: a performed step verified as not having
/// helped (the target stays down) is recorded in the store as a
/// `not_helped` adjustment of its signal, and applied.
/// The live loop in this process (`heal::live::run` on a runtime of its
/// own), stopped through its shutdown future when dropped.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<heal::Result<()>>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self.runtime.block_on(task);
        }
    }
}

/// `heal watch --interval 1s --backfill 0s --db DB [--execute]`, in-process.
fn watch_in_process(prometheus: u16, runbooks: &Path, db: &Path, execute: bool) -> InProcess {
    use std::sync::Arc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = Arc::new(stdx::SystemClock);
    let path = std::env::var("PATH").ok();
    let config = heal::live::LiveConfig {
        runbooks: remediate::RunbookSet::load_dir(runbooks).unwrap(),
        prometheus: ingest::PrometheusConfig::new(format!("http://127.0.0.1:{prometheus}")),
        interval: Duration::from_secs(1),
        backfill: Duration::ZERO,
        execute,
        state: None,
        db: Some(db.to_path_buf()),
        params: None,
        api_token: None,
        executors: executors::Executors::new(
            Arc::new(move |name: &str| (name == "PATH").then(|| path.clone()).flatten()),
            clock.clone(),
        ),
        series: Default::default(),
        clock,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        heal::live::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    InProcess {
        runtime,
        stop: Some(stop),
        task: Some(task),
    }
}

#[test]
fn a_performed_step_that_did_not_help_makes_its_signal_less_sensitive() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = free_port();
    let _prom = start_prometheus(dir.path(), prometheus, free_port());
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("dead.yaml"),
        "signals:
  - name: target_up
    query: max by (instance) (up{job=\"dead\"})
    detector:
      direction: down
      limit_below: 0.5
rules:
  - name: target-down
    when: { signal: target_up, direction: down, for: 0s }
    then:
      - action: exec
        argv: ['true']
    verify: { wait: 2s }
",
    )
    .unwrap();
    let db = dir.path().join("heal.db");
    let _heal = watch_in_process(prometheus, &runbooks, &db, true);
    // `true` runs, the target stays down: not recovered, so not helped.
    let history = wait_until(
        "a not_helped adjustment in the store",
        Duration::from_secs(120),
        || {
            let store = Store::open_read_only(&db).ok()?;
            let history = store.sensitivity_history().ok()?;
            (!history.is_empty()).then_some(history)
        },
    );
    let a = &history[0];
    assert_eq!(a.signal, "target_up");
    assert_eq!(a.reason, store::SensitivityReason::NotHelped);
    assert_eq!(a.incident.as_deref(), Some("inc-000001"));
    assert_eq!((a.old, a.new), (0.0, 0.01));
    let store = Store::open_read_only(&db).unwrap();
    assert_eq!(store.sensitivity_offsets().unwrap()["target_up"], 0.01);
}

/// A target that answers every request with the same metrics text (one
/// gauge), on a thread of its own for the rest of the test process.
fn constant_target(value: f64) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = format!("# TYPE svc_latency_seconds gauge\nsvc_latency_seconds {value}\n");
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Peer outliers, live: four replicas of one service behind a real
/// Prometheus, each steady (its own history never looks anomalous), one of
/// them far from its siblings. With `peer:` on the signal, `heal watch`
/// compares each evaluation's series and opens an incident for that replica
/// only, recording the robust z that says why.
#[test]
fn a_replica_apart_from_its_siblings_opens_an_incident_through_watch() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0.10, 0.11, 0.09, 0.50];
    let mut targets = String::new();
    for (k, v) in values.iter().enumerate() {
        let port = constant_target(*v);
        targets.push_str(&format!(
            "      - targets: ['127.0.0.1:{port}']\n        labels: {{service: api, instance: api-{k}}}\n"
        ));
    }
    let prometheus = free_port();
    let _prom = start_prometheus_with(
        dir.path(),
        prometheus,
        &format!("  - job_name: api\n    static_configs:\n{targets}"),
    );
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("peers.yaml"),
        "signals:
  - name: api_latency
    query: max by (service, instance) (svc_latency_seconds{job=\"api\"})
    detector: { direction: up }
    peer: { threshold: 3.5, consecutive: 3, min_spread: 0.01 }
rules:
  - name: replica-slow
    when: { signal: api_latency, direction: up, for: 0s }
    then:
      - action: exec
        argv: ['true']
",
    )
    .unwrap();
    let db = dir.path().join("heal.db");
    let heal = watch_in_process(prometheus, &runbooks, &db, false);
    let record = wait_until(
        "an incident from the peers",
        Duration::from_secs(120),
        || {
            let store = Store::open_read_only(&db).ok()?;
            let page = store.list(&IncidentFilter::default()).ok()?;
            let id = page.incidents.first()?.id.clone();
            store.incident(&id).ok()?
        },
    );
    // A few more evaluations: the siblings must stay quiet.
    std::thread::sleep(Duration::from_secs(3));
    drop(heal);

    let inc = &record.incident;
    assert_eq!(
        inc.series.get("instance").map(String::as_str),
        Some("api-3"),
        "{inc:?}"
    );
    assert!(inc.above);
    let z = inc.peer_z.expect("the peers fired it");
    assert!(z > 3.5, "robust z {z}");
    let store = Store::open_read_only(&db).unwrap();
    let all = store.list(&IncidentFilter::default()).unwrap().incidents;
    assert!(
        all.iter().all(|s| s.selector.contains("api-3")),
        "only the replica apart has incidents: {:?}",
        all.iter().map(|s| &s.selector).collect::<Vec<_>>()
    );
}
