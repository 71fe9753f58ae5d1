//! `heal watch` as an operator meets it: a step silenced during a crash runs
//! once the silence ends; SIGTERM (and SIGINT) end it
//! gracefully even with `--run-for`, and its log at the default level says
//! what a person needs to know (a step awaiting approval and until when, why
//! an action failed).
//!
//! Real components: a Prometheus (`/usr/bin/prometheus` or
//! `PROMETHEUS_BIN`) scraping a target nobody listens on, so `up` is 0 from
//! the first scrape; heal itself (the binary: a process to signal); real
//! programs as exec actions.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::http::client;
use store::{ExecutionState, IncidentFilter, Store};

mod common;

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

/// A Prometheus scraping, every second, a target nobody listens on.
fn start_prometheus(dir: &Path) -> (Guard, u16) {
    start_prometheus_on(dir, free_port())
}

/// A Prometheus scraping, every second, `127.0.0.1:target` as job `dead`.
fn start_prometheus_on(dir: &Path, target: u16) -> (Guard, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: dead\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
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
    (guard, port)
}

/// A runbook directory with one signal (the dead target's `up`) and
/// `rules`.
fn runbooks(dir: &Path, rules: &str) -> PathBuf {
    let runbooks = dir.join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("dead.yaml"),
        format!(
            "signals:
  - name: target_up
    query: max by (instance) (up{{job=\"dead\"}})
    detector:
      direction: down
      limit_below: 0.5
rules:
{rules}"
        ),
    )
    .unwrap();
    runbooks
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
        "--execute",
    ])
    .args(extra)
    .env_remove("HEAL_LOG");
    cmd
}

/// Sends `signal` (`TERM`, `INT`) with kill(1): the workspace forbids
/// `unsafe`, so no libc call.
fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal}");
}

#[test]
fn sigterm_and_sigint_with_run_for_settle_the_action_checkpoint_and_exit_0() {
    for sig in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (_prom, prometheus) = start_prometheus(dir.path());
        let runbooks = runbooks(
            dir.path(),
            "  - name: target-down
    when: { signal: target_up, direction: down, for: 0s }
    then:
      - action: exec
        argv: ['sleep', '2']
    verify: { wait: 30s }
",
        );
        let db = dir.path().join("heal.db");
        let heal = watch(prometheus, &runbooks, &db, &["--run-for", "10m"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut heal = Guard(heal);
        wait_until("heal to begin the action", Duration::from_secs(120), || {
            let store = Store::open_read_only(&db).ok()?;
            let page = store.list(&IncidentFilter::default()).ok()?;
            let id = page.incidents.last()?.id.clone();
            let record = store.incident(&id).ok()??;
            (record.executions.first()?.state == ExecutionState::Started).then_some(())
        });
        let t0 = Instant::now();
        signal(&heal.0, sig);
        let status = wait_until("heal to stop", Duration::from_secs(30), || {
            heal.0.try_wait().unwrap()
        });
        let mut stderr = String::new();
        std::io::Read::read_to_string(heal.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(0), "SIG{sig}: {status:?}\n{stderr}");
        assert!(t0.elapsed() < Duration::from_secs(15), "SIG{sig}: bounded");
        assert!(stderr.contains("heal: stopped"), "{stderr}");
        // The action in flight was settled, not cut off: finished, ok.
        let store = Store::open_read_only(&db).unwrap();
        let record = store.incident("inc-000001").unwrap().unwrap();
        assert_eq!(record.executions.len(), 1, "{:?}", record.executions);
        assert_eq!(record.executions[0].state, ExecutionState::Finished);
        assert!(record.executions[0].result.as_ref().is_some_and(|r| r.ok));
        drop(store);
        // Checkpointed: nothing left in the WAL.
        let wal = dir.path().join("heal.db-wal");
        let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert_eq!(wal_len, 0, "SIG{sig}: {} bytes left in the WAL", wal_len);
    }
}

#[test]
fn the_watch_log_says_a_step_awaits_approval_and_why_an_action_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (_prom, prometheus) = start_prometheus(dir.path());
    let missing = dir.path().join("no-such-file");
    let runbooks = runbooks(
        dir.path(),
        &format!(
            "  - name: needs-a-human
    when: {{ signal: target_up, direction: down, for: 0s }}
    then:
      - action: exec
        argv: ['true']
    guards: {{ require_approval: true, approval_timeout: 10m }}
    verify: {{ wait: 30s }}
  - name: fails
    when: {{ signal: target_up, direction: down, for: 0s }}
    then:
      - action: exec
        argv: ['ls', '{}']
    verify: {{ wait: 30s }}
",
            missing.display()
        ),
    );
    let db = dir.path().join("heal.db");
    let heal = watch(prometheus, &runbooks, &db, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut heal = Guard(heal);
    let stderr = heal.0.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            l.lock().unwrap().push(line);
        }
    });
    let log = wait_until("both log lines", Duration::from_secs(120), || {
        let lines = lines.lock().unwrap();
        let approval = lines
            .iter()
            .any(|l| l.contains("awaiting approval of step 1"));
        let failed = lines.iter().any(|l| l.contains("action failed"));
        (approval && failed).then(|| lines.join("\n"))
    });
    // The API says it too.
    let port: u16 = log
        .split("metrics on http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("heal printed its address");
    let parked_id = {
        let store = Store::open_read_only(&db).unwrap();
        let page = store.list(&IncidentFilter::default()).unwrap();
        page.incidents
            .iter()
            .find(|i| i.rule == "needs-a-human")
            .expect("the approval rule's incident")
            .id
            .clone()
    };
    let answer = client::get(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &format!("/api/incidents/{parked_id}"),
        Duration::from_secs(5),
    )
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let waiting = body["incident"]["waiting"].as_str().unwrap_or_default();
    assert!(
        waiting.starts_with("awaiting approval of step 1 of 1 (exec true), expires at 20"),
        "{body}"
    );
    signal(&heal.0, "TERM");
    let approval = log
        .lines()
        .find(|l| l.contains("awaiting approval of step 1"))
        .unwrap();
    assert!(approval.contains("(exec true)"), "{approval}");
    assert!(approval.contains("`heal approve inc-"), "{approval}");
    assert!(approval.contains("before 20"), "{approval}");
    let failed = log.lines().find(|l| l.contains("action failed")).unwrap();
    assert!(
        failed.contains("No such file or directory"),
        "the reason is in the line: {failed}"
    );
    // And `incidents show` says the incident awaits approval, with expiry.
    let store = Store::open_read_only(&db).unwrap();
    let page = store.list(&IncidentFilter::default()).unwrap();
    let parked = page
        .incidents
        .iter()
        .find(|i| i.rule == "needs-a-human")
        .expect("the approval rule's incident");
    let o = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "incidents",
            "show",
            &parked.id,
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&o.stdout);
    assert!(
        show.contains("awaiting approval of step 1 of 1 (exec true), expires at 20"),
        "{show}"
    );
    assert!(!show.contains("a human must take over"), "{show}");
}

/// A scrape target that answers until `down` is set, then closes every
/// connection unanswered (Prometheus' `up` drops to 0: a crash).
fn switchable_target(down: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "# TYPE x gauge\nx 1\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The scenario, live: a service crashes during a silence; when the
/// silence ends and it is still down, heal acts (the silenced step kept its
/// place in the chain instead of being used up).
#[test]
fn a_step_silenced_during_a_crash_runs_once_the_silence_ends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let (_prom, prometheus) = start_prometheus_on(dir.path(), switchable_target(down.clone()));
    let marker = dir.path().join("restarted");
    let runbooks = runbooks(
        dir.path(),
        &format!(
            "  - name: target-down
    when: {{ signal: target_up, direction: down, for: 0s }}
    then:
      - action: exec
        argv: ['touch', '{}']
      - action: exec
        argv: ['true']
    verify: {{ wait: 30s }}
",
            marker.display()
        ),
    );
    let db = dir.path().join("heal.db");
    let heal = watch(
        prometheus,
        &runbooks,
        &db,
        &["--api-token-env", "WATCH_TOKEN"],
    )
    .env("WATCH_TOKEN", "t0ken")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut heal = Guard(heal);
    let stderr = heal.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let port: u16 = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("heal started");
        if let Some(rest) = line.split("metrics on http://127.0.0.1:").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    // A silence of 8 s on everything heal watches, then the crash.
    let o = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "silence",
            "add",
            "--matcher",
            "job=~.*",
            "--matcher",
            "instance=~.+",
        ])
        .args([
            "--duration",
            "8s",
            "--comment",
            "maintenance",
            "--by",
            "test",
        ])
        .args(["--api", &format!("http://127.0.0.1:{port}")])
        .env("HEAL_API_TOKEN", "t0ken")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let silenced_at = Instant::now();
    down.store(true, Ordering::SeqCst);
    // The incident opens and its step is held back while the silence lasts.
    let held = wait_until(
        "the step held back as silenced",
        Duration::from_secs(60),
        || {
            let store = Store::open_read_only(&db).ok()?;
            let page = store.list(&IncidentFilter::default()).ok()?;
            let id = page.incidents.first()?.id.clone();
            let record = store.incident(&id).ok()??;
            let first = record.incident.actions.first()?;
            (first.decision.label() == "silenced").then_some(id)
        },
    );
    if silenced_at.elapsed() < Duration::from_secs(7) {
        assert!(!marker.exists(), "acted during the silence");
    }
    // Then it runs, as step 1, once the silence is over.
    wait_until(
        "the held step to run after the silence",
        Duration::from_secs(60),
        || marker.exists().then_some(()),
    );
    assert!(
        silenced_at.elapsed() >= Duration::from_secs(8),
        "not before the silence ended"
    );
    let store = Store::open_read_only(&db).unwrap();
    let record = wait_until(
        "the step recorded as allowed",
        Duration::from_secs(10),
        || {
            let r = store.incident(&held).ok()??;
            r.incident
                .actions
                .iter()
                .any(|a| a.step == 1 && a.decision.allowed)
                .then_some(r)
        },
    );
    assert_eq!(
        record.incident.actions.len(),
        1,
        "{:?}",
        record.incident.actions
    );
    signal(&heal.0, "TERM");
}

/// `heal supervise --run-for` too: SIGTERM stops its children and exits 0
/// (it used to die at once, leaving its children behind).
#[test]
fn sigterm_stops_heal_supervise_with_run_for_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("services.yaml");
    std::fs::write(
        &config,
        "services:\n  - name: sleeper\n    release: {version: v1, argv: [sleep, '300']}\n    stop_timeout: 2s\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "supervise",
            "--listen",
            "127.0.0.1:0",
            "--run-for",
            "10m",
            "--config",
        ])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("HEAL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut sup = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let api: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("heal supervise started");
        if let Some(rest) = line.split("control API on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let pid = wait_until("the child to run", Duration::from_secs(30), || {
        let r = client::get(api, "/v1/services", Duration::from_secs(2)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        v.to_string()
            .split("\"pid\":")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<u32>()
            .ok()
    });
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    signal(&sup.0, "TERM");
    let status = wait_until("heal supervise to stop", Duration::from_secs(30), || {
        sup.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "{status:?}");
    wait_until("its child to be gone", Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !stat.is_empty() && !stat.split(") ").nth(1).unwrap_or("").starts_with('Z');
        (!alive).then_some(())
    });
}
