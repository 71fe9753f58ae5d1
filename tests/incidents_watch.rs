//! `heal watch --execute --db` killed with SIGKILL while an action runs,
//! then started again with `--execute` on the same store: the action ran
//! once and is not run again, counted by its side effect (the real binary:
//! a process to kill). The other tests here run the live loop
//! in-process (`heal::live::run`) against the same real Prometheus.
//!
//! Real components: a Prometheus (`/usr/bin/prometheus` or
//! `PROMETHEUS_BIN`) scraping a target nobody listens on, so `up` is 0 from
//! the first scrape; a runbook whose rule acts on that at once with an exec
//! action that takes 20 s (`sleep 20`); heal itself, killed by the test
//! once the store shows the action begun.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::http::client;
use store::{ExecutionState, IncidentFilter, IncidentStatus, Store};

mod common;

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
    let child = Command::new(common::prometheus_bin())
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

/// A scrape target the test switches off: while `up` it answers with a
/// metrics text, afterwards it drops every connection (so Prometheus'
/// `up` for it turns 0). Served on a thread for the rest of the process.
fn switchable_target() -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = std::sync::Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if !flag.load(Ordering::SeqCst) {
                continue; // dropped unanswered: a failed scrape
            }
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "# TYPE lab_ok gauge\nlab_ok 1\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, up)
}

/// The lines of the side-effect file every real execution appends to.
fn runs(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// At most once, end to end: `heal watch --execute --db` is killed with
/// SIGKILL while an action runs, then started again **with `--execute`**
/// on the same store. Every real execution appends a line to a file (the
/// action is a real program, not heal's bookkeeping), so the count of
/// executions is read from the world, not from heal's own wording:
///
/// - the interrupted action ran exactly once, and its one execution record
///   is settled (no longer `started`) by the restart;
/// - the restarted run acts (a second target goes down while it runs: it
///   opens an incident and performs its step), numbers that incident after
///   the old ones, and every line of the file has its execution record:
///   nothing ran that the store does not know of, and nothing twice.
#[test]
fn sigkill_of_heal_mid_action_then_restart_with_execute_runs_it_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    at_most_once_across_a_sigkill(&dir, &dir.path().join("heal.db"));
}

/// The same on a PostgreSQL store (`--db postgres://...`, a server of the
/// test's own): the journal that keeps the action from running twice is
/// PostgreSQL's.
#[test]
fn sigkill_mid_action_then_restart_runs_it_at_most_once_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg =
        lab::postgres::PgServer::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
    at_most_once_across_a_sigkill(&dir, Path::new(&pg.url()));
}

fn at_most_once_across_a_sigkill(dir: &tempfile::TempDir, db: &Path) {
    let prometheus = free_port();
    let (late, late_up) = switchable_target();
    let _prom = start_prometheus_with(
        dir.path(),
        prometheus,
        &format!(
            "  - job_name: dead\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n  - job_name: late\n    static_configs:\n      - targets: ['127.0.0.1:{late}']\n",
            free_port()
        ),
    );
    let runs_file = dir.path().join("runs");
    let release = dir.path().join("release");
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    // The action, a real program: one line per run (the series' job),
    // then 20 s of work unless the release file exists.
    let action = dir.path().join("action.sh");
    std::fs::write(
        &action,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\n[ -e '{}' ] || exec sleep 20\n",
            runs_file.display(),
            release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&action, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        runbooks.join("dead.yaml"),
        format!(
            "signals:
  - name: target_up
    query: max by (job) (up{{job=~\"dead|late\"}})
    detector:
      direction: down
      limit_below: 0.5
rules:
  - name: target-down
    when: {{ signal: target_up, direction: down, for: 0s }}
    then:
      - action: exec
        argv: ['{action}', '{{{{label.job}}}}']
    verify: {{ wait: 30s }}
",
            action = action.display()
        ),
    )
    .unwrap();

    // Run 1: acts on `dead`, and is killed while its action runs.
    let heal = watch(prometheus, &runbooks, db, &["--execute"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut heal = Guard(heal);
    let incident = wait_until("heal to begin the action", Duration::from_secs(120), || {
        let store = Store::open_read_only(db).ok()?;
        let page = store.list(&IncidentFilter::default()).ok()?;
        let id = page.incidents.last()?.id.clone();
        let record = store.incident(&id).ok()??;
        (record.executions.first()?.state == ExecutionState::Started).then_some(record)
    });
    // The action really runs (its line is written before its sleep).
    wait_until("the action's side effect", Duration::from_secs(30), || {
        (!runs(&runs_file).is_empty()).then_some(())
    });
    heal.0.kill().unwrap(); // SIGKILL
    heal.0.wait().unwrap();
    assert_eq!(incident.incident.id, "inc-000001");
    assert_eq!(incident.incident.series["job"], "dead");
    assert_eq!(incident.incident.actions.len(), 1);
    assert!(incident.incident.actions[0].decision.allowed);
    assert_eq!(runs(&runs_file), ["dead"]);
    let old_ids: Vec<String> = Store::open_read_only(db)
        .unwrap()
        .list(&IncidentFilter::default())
        .unwrap()
        .incidents
        .into_iter()
        .map(|s| s.id)
        .collect();

    // Run 2, same store, performing actions. From now on actions return at
    // once, and `late` goes down: run 2 has something new to act on.
    std::fs::write(&release, "").unwrap();
    late_up.store(false, std::sync::atomic::Ordering::SeqCst);
    let heal = watch(prometheus, &runbooks, db, &["--execute"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut heal = Guard(heal);
    let late_id = wait_until(
        "run 2 to act on the target that went down",
        Duration::from_secs(120),
        || {
            let store = Store::open_read_only(db).ok()?;
            let page = store.list(&IncidentFilter::default()).ok()?;
            page.incidents.iter().find_map(|s| {
                let r = store.incident(&s.id).ok()??;
                (r.incident.series.get("job").map(String::as_str) == Some("late")
                    && r.executions
                        .iter()
                        .any(|e| e.state == ExecutionState::Finished))
                .then(|| s.id.clone())
            })
        },
    );
    // A few more evaluations of the still-down `dead` target, then stop.
    std::thread::sleep(Duration::from_secs(3));
    assert!(Command::new("kill")
        .args(["-TERM", &heal.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("run 2 to stop", Duration::from_secs(60), || {
        heal.0.try_wait().unwrap()
    });

    let store = Store::open_read_only(db).unwrap();
    let after = store.incident("inc-000001").unwrap().unwrap();
    // The interrupted action: one execution record, settled by the
    // restart, same key, and it did not run again.
    assert_eq!(after.executions.len(), 1, "{:?}", after.executions);
    assert_eq!(after.executions[0].key, incident.executions[0].key);
    assert_ne!(after.executions[0].state, ExecutionState::Started);
    // Still run 1's incident: no later one took its id.
    assert_eq!(after.incident.opened_ms, incident.incident.opened_ms);
    assert_eq!(after.incident.actions, incident.incident.actions);
    // Every real run has its record, and no record lacks its run: the
    // side-effect file and the store's journal agree, series by series.
    let all = store.list(&IncidentFilter::default()).unwrap().incidents;
    let mut journaled: Vec<String> = Vec::new();
    for s in &all {
        let r = store.incident(&s.id).unwrap().unwrap();
        for e in &r.executions {
            if e.state != ExecutionState::Abandoned {
                journaled.push(r.incident.series["job"].clone());
            }
        }
    }
    journaled.sort();
    let mut ran = runs(&runs_file);
    ran.sort();
    assert_eq!(ran, journaled, "real runs vs the store's executions");
    assert_eq!(ran.iter().filter(|j| *j == "late").count(), 1, "{ran:?}");
    // Run 2 numbered its incidents after run 1's.
    let new_ids: Vec<&String> = all
        .iter()
        .map(|s| &s.id)
        .filter(|id| !old_ids.contains(id))
        .collect();
    assert!(new_ids.contains(&&late_id), "{new_ids:?}");
    let last_old = old_ids.iter().max().unwrap();
    assert!(
        new_ids.iter().all(|id| id.as_str() > last_old.as_str()),
        "new {new_ids:?} not after old {old_ids:?}"
    );
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
        log_state: None,
        params: None,
        api_token: None,
        series: Default::default(),
        remote_write: None,
        executors: executors::Executors::new(
            Arc::new(move |name: &str| (name == "PATH").then(|| path.clone()).flatten()),
            clock.clone(),
        ),
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
