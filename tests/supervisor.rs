//! `heal supervise` end to end with real processes: the lab's services
//! (`heal-lab service`) as children, checked over HTTP, driven through the
//! real control API and through the runbook executor's client.
//!
//! One scenario, in order, on one supervisor of three services where `c`
//! depends on `b` depends on `a`:
//!
//! - start order: `b` starts only after `a` passes its HTTP check, `c` only
//!   after `b` (from the API's start and health timestamps);
//! - `kill -9` of `a`'s child: restarted (new pid) after its backoff;
//! - `scale c 3`: three ports answer; back to 1: the others stop; 4 is
//!   refused (the range holds 3);
//! - `deploy` v2 (another `--name`), then `rollback`: `c` answers as v1
//!   again;
//! - a bad or missing token is refused (401) and changes nothing;
//! - a power cut (every child killed at once): everything comes back, in
//!   dependency order;
//! - the executor client restarts `b`; a target that is not
//!   `supervisor/NAME` gets a clear failed result;
//! - SIGTERM stops the supervisor and every child with it.
//!
//! Also: the liveness checks themselves (a hung `http` replica and a `tcp`
//! replica whose port closed restarted after `failures` failed checks, one
//! that never passes killed after `start_timeout`), HAProxy registration on scale (real HAProxy, real traffic), the
//! read-only API without a token, configuration errors, and `heal watch
//! --supervisor` restarting a supervised service from a runbook (real
//! Prometheus).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use executors::supervisor::{Operation, SupervisorClient};
use lab::http::client;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A child process killed when the guard drops.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: `heal supervise` stops its children on it, where a
        // SIGKILL would leave them running after the test.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tests that run real services with timing checks (health checks,
/// start timeouts, load, restarts within a deadline) take turns: side by
/// side on a 2-core machine they starve each other's processes, and a
/// check that would pass alone misses its deadline.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_heal"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn lab_bin() -> PathBuf {
    let p = bin_dir().join("heal-lab");
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p lab`)",
        p.display()
    );
    p
}

/// `n` consecutive free ports on loopback (free when checked; the
/// supervisor binds them moments later).
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > 65535 - n {
            continue;
        }
        let held: Vec<_> = (base..base + n)
            .map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// One HTTP/1.1 request with an optional bearer token; (status, body).
fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5))
        .expect("connecting to the control API");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // axum answers small bodies with Content-Length (no chunking).
    (status, body.to_owned())
}

fn service(api: SocketAddr, name: &str) -> Value {
    let (status, body) = http(api, "GET", &format!("/v1/services/{name}"), None, "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn post(api: SocketAddr, path: &str, body: &str) -> Value {
    let (status, text) = http(api, "POST", path, Some(TOKEN), body);
    assert_eq!(status, 200, "POST {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The service's replicas once every one is healthy.
fn healthy(api: SocketAddr, name: &str, replicas: usize, what: &str) -> Vec<Value> {
    wait_until(what, Duration::from_secs(30), || {
        let s = service(api, name);
        let inst = s["instances"].as_array().unwrap().clone();
        (inst.len() == replicas && inst.iter().all(|r| r["phase"] == "healthy")).then_some(inst)
    })
}

fn ms(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

fn pid(v: &Value) -> u32 {
    v["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {v}")) as u32
}

fn answer(port: u16) -> Option<String> {
    client::get(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "/",
        Duration::from_secs(2),
    )
    .ok()
    .filter(|r| r.status == 200)
    .map(|r| r.body_text().trim_end().to_owned())
}

/// A running `heal supervise`: killed when dropped.
struct Supervise {
    guard: Guard,
    pid: u32,
    api: SocketAddr,
    /// Its stderr so far (drained by a thread for the whole run: a full or
    /// closed pipe would block or break heal's logging).
    log: Arc<Mutex<String>>,
}

/// Starts `heal supervise` on an ephemeral port, with the bearer token in
/// `SUP_TOKEN` when `token`, and waits for its control API address.
fn start_supervise(config: &Path, state_dir: &Path, token: bool) -> Supervise {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_heal"));
    cmd.args(["supervise", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .env("HEAL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if token {
        cmd.args(["--token-env", "SUP_TOKEN"])
            .env("SUP_TOKEN", TOKEN);
    }
    let mut child = cmd.spawn().expect("starting heal supervise");
    let stderr = child.stderr.take().unwrap();
    let pid = child.id();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let api = wait_until("the control API address", Duration::from_secs(30), || {
        let l = log.lock().unwrap();
        let rest = l.split("control API on http://").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    });
    Supervise {
        guard: Guard(child),
        pid,
        api,
        log,
    }
}

impl Supervise {
    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        assert!(Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap()
            .success());
        wait_until("heal supervise to exit", Duration::from_secs(30), || {
            self.guard.0.try_wait().unwrap()
        })
    }
}

fn kill9(pids: &[u32]) {
    let mut cmd = Command::new("kill");
    cmd.arg("-9");
    for p in pids {
        cmd.arg(p.to_string());
    }
    assert!(cmd.status().unwrap().success());
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie has state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

/// Asserts the start order of a fresh start of a, b, c: each started only
/// after its dependency passed its check.
fn assert_dependency_order(a: &Value, b: &Value, c: &Value) {
    assert!(
        ms(b, "started_ms") >= ms(a, "healthy_ms"),
        "b started before a was healthy: a={a} b={b}"
    );
    assert!(
        ms(c, "started_ms") >= ms(b, "healthy_ms"),
        "c started before b was healthy: b={b} c={c}"
    );
}

#[test]
fn supervise_runs_restarts_scales_deploys_and_rolls_back_real_services() {
    let _one_at_a_time = one_at_a_time();
    let lab = lab_bin();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_ports(1), free_ports(1), free_ports(3));
    let svc = |name: &str, version: &str, label: &str, ports: String, deps: &str| {
        format!(
            "  - name: {name}
    release: {{version: {version}, argv: [{lab}, service, --name, {label}, --port, \"{{port}}\"]}}
    ports: {ports}
    depends_on: [{deps}]
    check: {{type: http, path: /healthz, interval: 200ms, timeout: 2s, failures: 3, start_timeout: 20s}}
    restart: {{initial: 500ms, max: 2s, reset_after: 1m}}
",
            lab = lab.display()
        )
    };
    let config = format!(
        "services:\n{}{}{}",
        svc("c", "v1", "c-v1", format!("{pc}-{}", pc + 2), "b"),
        svc("b", "v1", "b", pb.to_string(), "a"),
        svc("a", "v1", "a", pa.to_string(), ""),
    );
    let config_path = dir.path().join("supervise.yaml");
    std::fs::write(&config_path, config).unwrap();
    let state_dir = dir.path().join("state");

    let mut heal = start_supervise(&config_path, &state_dir, true);
    let api = heal.api;

    // Start order from the API's timestamps.
    let a = healthy(api, "a", 1, "a healthy").remove(0);
    let b = healthy(api, "b", 1, "b healthy").remove(0);
    let c = healthy(api, "c", 1, "c healthy").remove(0);
    assert_dependency_order(&a, &b, &c);
    assert_eq!(answer(pc).as_deref(), Some("hello from c-v1"));
    let list: Value = serde_json::from_str(&http(api, "GET", "/v1/services", None, "").1).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);

    // kill -9 of a's child: reaped and restarted, after the backoff.
    kill9(&[pid(&a)]);
    let a2 = wait_until("a restarted", Duration::from_secs(30), || {
        let r = service(api, "a")["instances"][0].clone();
        (r["starts"] == 2 && r["phase"] == "healthy").then_some(r)
    });
    assert_ne!(pid(&a2), pid(&a));
    assert_eq!(a2["last_exit"], "killed by signal 9");
    let gap = ms(&a2, "started_ms") - ms(&a2, "last_exit_ms");
    assert!(
        gap >= 500,
        "restarted {gap} ms after the kill, backoff is 500ms"
    );

    // Scale c to 3: three ports answer; back to 1: the others are closed.
    let s = post(api, "/v1/services/c/scale", r#"{"replicas":3}"#);
    assert_eq!(s["replicas"], 3);
    let three = healthy(api, "c", 3, "three replicas of c");
    for port in pc..pc + 3 {
        assert_eq!(
            answer(port).as_deref(),
            Some("hello from c-v1"),
            "port {port}"
        );
    }
    let (status, body) = http(
        api,
        "POST",
        "/v1/services/c/scale",
        Some(TOKEN),
        r#"{"replicas":4}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("port range"), "{body}");
    let (status, body) = http(
        api,
        "POST",
        "/v1/services/c/scale",
        Some(TOKEN),
        r#"{"replicas":"x"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reading the body: invalid type"), "{body}");
    post(api, "/v1/services/c/scale", r#"{"replicas":1}"#);
    assert_eq!(service(api, "c")["instances"].as_array().unwrap().len(), 1);
    for r in &three[1..] {
        assert!(!alive(pid(r)), "scaled-away replica {r} still runs");
    }
    assert_eq!(answer(pc + 1), None);
    assert_eq!(answer(pc + 2), None);
    assert_eq!(answer(pc).as_deref(), Some("hello from c-v1"));

    // Deploy v2 (another --name), then roll back: v1 answers again.
    let v2 = serde_json::json!({
        "version": "v2",
        "argv": [lab.display().to_string(), "service", "--name", "c-v2", "--port", "{port}"],
        "env": {},
    });
    let s = post(api, "/v1/services/c/deploy", &v2.to_string());
    assert_eq!(s["release"]["version"], "v2");
    wait_until("c answering as v2", Duration::from_secs(30), || {
        (answer(pc).as_deref() == Some("hello from c-v2")).then_some(())
    });
    let s = post(api, "/v1/services/c/rollback", "");
    assert_eq!(s["release"]["version"], "v1");
    wait_until("c answering as v1 again", Duration::from_secs(30), || {
        (answer(pc).as_deref() == Some("hello from c-v1")).then_some(())
    });
    let c_now = healthy(api, "c", 1, "c after the rollback").remove(0);
    assert_eq!(c_now["version"], "v1");
    assert_eq!(
        service(api, "c")["versions"],
        serde_json::json!(["v1", "v2"])
    );
    let (status, body) = http(
        api,
        "POST",
        "/v1/services/c/rollback",
        Some(TOKEN),
        r#"{"to":"v9"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("unknown release version \\\"v9\\\""),
        "{body}"
    );

    // A bad or missing token is refused and changes nothing.
    let starts = c_now["starts"].clone();
    for token in [Some("wrong-token-0123456789abcdef"), None] {
        let (status, body) = http(api, "POST", "/v1/services/c/restart", token, "");
        assert_eq!(status, 401, "{body}");
    }
    let (status, _) = http(api, "POST", "/v1/services/nosuch/restart", Some(TOKEN), "");
    assert_eq!(status, 404);
    let c_after = service(api, "c")["instances"][0].clone();
    assert_eq!(c_after["starts"], starts);
    assert_eq!(c_after["pid"], c_now["pid"]);

    // Power cut: every child killed at once; all come back in order.
    let before: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|n| service(api, n)["instances"][0].clone())
        .collect();
    kill9(&before.iter().map(pid).collect::<Vec<_>>());
    let after: Vec<Value> = ["a", "b", "c"]
        .iter()
        .zip(&before)
        .map(|(n, old)| {
            wait_until(
                &format!("{n} back after the power cut"),
                Duration::from_secs(30),
                || {
                    let r = service(api, n)["instances"][0].clone();
                    let again = r["starts"].as_u64() > old["starts"].as_u64();
                    (again && r["phase"] == "healthy").then_some(r)
                },
            )
        })
        .collect();
    assert_dependency_order(&after[0], &after[1], &after[2]);
    for (old, new) in before.iter().zip(&after) {
        assert!(ms(new, "started_ms") > ms(old, "started_ms"));
        assert_eq!(new["last_exit"], "killed by signal 9");
    }

    // The runbook executor's client against the real API.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = SupervisorClient::new(&format!("http://{api}"), Some(TOKEN.to_owned())).unwrap();
    let b_before = service(api, "b")["instances"][0].clone();
    let r = rt.block_on(executor.run(
        "supervisor/b",
        &Operation::Restart,
        Duration::from_secs(10),
        false,
    ));
    assert!(r.ok, "{r:?}");
    assert_eq!(r.summary, "restart b: accepted");
    let b_after = wait_until(
        "b restarted by the executor",
        Duration::from_secs(30),
        || {
            let r = service(api, "b")["instances"][0].clone();
            (r["starts"].as_u64() > b_before["starts"].as_u64() && r["phase"] == "healthy")
                .then_some(r)
        },
    );
    assert_ne!(pid(&b_after), pid(&b_before));
    // Stopped gracefully: SIGTERM was enough.
    assert_eq!(
        b_after["last_exit"],
        "restart requested; killed by signal 15"
    );
    let r = rt.block_on(executor.run(
        "supervisor/c",
        &Operation::Scale { replicas: 9 },
        Duration::from_secs(10),
        false,
    ));
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert!(
        r.summary
            .starts_with("scale c to 9: supervisor answered 400: cannot scale c to 9 replicas"),
        "{}",
        r.summary
    );
    let r = rt.block_on(executor.run(
        "deployment/b",
        &Operation::Restart,
        Duration::from_secs(10),
        false,
    ));
    assert!(!r.ok && !r.retryable);
    assert!(
        r.summary
            .starts_with("no executor for target \"deployment/b\""),
        "{}",
        r.summary
    );
    let wrong = SupervisorClient::new(&format!("http://{api}"), Some("nope".into())).unwrap();
    let r = rt.block_on(wrong.run(
        "supervisor/b",
        &Operation::Rollback { to: None },
        Duration::from_secs(10),
        false,
    ));
    assert!(!r.ok && !r.retryable);
    assert!(r.summary.contains("answered 401"), "{}", r.summary);

    // Every start was recorded with its release.
    let state: Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("supervisor-state.json")).unwrap())
            .unwrap();
    let c_state = &state["services"]["c"];
    assert_eq!(c_state["current"], "v1");
    let releases = c_state["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[1]["release"]["argv"][3], "c-v2");
    assert!(releases[1]["starts"].as_u64().unwrap() >= 1);
    assert_eq!(
        c_state["activations"],
        serde_json::json!(["v1", "v2", "v1"])
    );

    // SIGTERM: heal stops every child and exits 0.
    let pids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|n| pid(&service(api, n)["instances"][0]))
        .collect();
    let status = heal.terminate();
    assert!(status.success(), "{status:?}\n{}", heal.log.lock().unwrap());
    for p in pids {
        assert!(!alive(p), "child {p} outlived heal supervise");
    }
}

/// The supervisor's own liveness checks, against real lab services:
///
/// - `h` (an `http` check) is hung through its fault endpoint: its process
///   lives and accepts connections, `/healthz` never answers; after
///   `failures: 3` failed checks in a row it is killed and restarted;
/// - `t` (a `tcp` check) is a script whose lab service stops listening
///   while the script lives on; after `failures: 2` it is restarted;
/// - `n` (an `http` check on a port nobody listens on, `sleep` as the
///   program) never passes: killed `start_timeout: 1s` after its start.
#[test]
fn failing_http_and_tcp_checks_and_start_timeout_restart_real_replicas() {
    let _one_at_a_time = one_at_a_time();
    let lab = lab_bin();
    let dir = tempfile::tempdir().unwrap();
    let (ph, pt, pn) = (free_ports(1), free_ports(1), free_ports(1));
    let stop = dir.path().join("stop-listening");
    let wrapper = dir.path().join("listen-then-stop.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\"$1\" service --name t --port \"$2\" &\nlab=$!\nwhile [ ! -e '{}' ]; do sleep 0.1; done\nkill $lab\nexec sleep 300\n",
            stop.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = format!(
        "services:
  - name: h
    release: {{version: v1, argv: [{lab}, service, --name, h, --port, \"{{port}}\"]}}
    ports: {ph}
    check: {{type: http, path: /healthz, interval: 200ms, timeout: 300ms, failures: 3, start_timeout: 20s}}
    restart: {{initial: 300ms, max: 1s}}
  - name: t
    release: {{version: v1, argv: [{wrapper}, {lab}, \"{{port}}\"], env: {{PATH: /usr/bin:/bin}}}}
    ports: {pt}
    check: {{type: tcp, interval: 200ms, timeout: 300ms, failures: 2, start_timeout: 20s}}
    restart: {{initial: 300ms, max: 1s}}
  - name: n
    release: {{version: v1, argv: [sleep, \"300\"], env: {{PATH: /usr/bin:/bin}}}}
    ports: {pn}
    check: {{type: http, path: /healthz, interval: 200ms, timeout: 300ms, failures: 3, start_timeout: 1s}}
    restart: {{initial: 3s, max: 3s}}
",
        lab = lab.display(),
        wrapper = wrapper.display(),
    );
    let config_path = dir.path().join("supervise.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut heal = start_supervise(&config_path, &dir.path().join("state"), true);
    let api = heal.api;

    // `n` never passes: down once start_timeout has passed since its start.
    let n = wait_until("n to time out starting", Duration::from_secs(30), || {
        let r = service(api, "n")["instances"][0].clone();
        (r["phase"] == "backoff" && r["last_exit"].is_string()).then_some(r)
    });
    let last = n["last_exit"].as_str().unwrap();
    assert!(
        last.starts_with("no passing check within start_timeout 1s, last: "),
        "{n}"
    );
    assert!(ms(&n, "last_exit_ms") - ms(&n, "started_ms") >= 1000, "{n}");
    assert_eq!(n["healthy_ms"], Value::Null, "{n}");

    // `h`: healthy, then hung (alive, accepting, not answering).
    let h = healthy(api, "h", 1, "h healthy").remove(0);
    let r = client::post(
        SocketAddr::from(([127, 0, 0, 1], ph)),
        "/fault/hang",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let h2 = wait_until("h restarted", Duration::from_secs(30), || {
        let r = service(api, "h")["instances"][0].clone();
        (r["starts"] == 2 && r["phase"] == "healthy").then_some(r)
    });
    assert_ne!(pid(&h2), pid(&h));
    assert!(!alive(pid(&h)), "the hung replica still runs");
    let last = h2["last_exit"].as_str().unwrap();
    assert!(last.starts_with("3 failed checks in a row, last: "), "{h2}");
    // The new replica serves (the fault was the old process').
    assert_eq!(answer(ph).as_deref(), Some("hello from h"));

    // `t`: healthy, then its port closes while its process lives on.
    let t = healthy(api, "t", 1, "t healthy").remove(0);
    std::fs::write(&stop, "").unwrap();
    let t2 = wait_until("t restarted", Duration::from_secs(30), || {
        let r = service(api, "t")["instances"][0].clone();
        (r["starts"].as_u64() >= Some(2)).then_some(r)
    });
    assert!(
        !alive(pid(&t)),
        "the replica with the closed port still runs"
    );
    let last = t2["last_exit"].as_str().unwrap();
    assert!(last.starts_with("2 failed checks in a row, last: "), "{t2}");

    assert!(heal.terminate().success());
}

#[test]
fn a_bad_configuration_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "services:\n  - name: a\n    release: {version: v1, argv: [x]}\n    depends_on: [b]\n  - name: b\n    release: {version: v1, argv: [x]}\n    depends_on: [a]\n    replicas: 2\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["supervise", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert_eq!(
        err,
        format!("error: {p}:4:5: services[0].depends_on: dependency cycle: a -> b -> a\n{p}:8:5: services[1].replicas: more than one replica needs `ports` (one port per replica)\n")
    );
}

#[test]
fn without_a_token_the_api_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.yaml");
    let port = free_ports(1);
    std::fs::write(
        &path,
        format!(
            "services:\n  - name: a\n    release: {{version: v1, argv: [{}, service, --name, a, --port, \"{{port}}\"]}}\n    ports: {port}\n    check: {{type: tcp}}\n",
            lab_bin().display()
        ),
    )
    .unwrap();
    let heal = start_supervise(&path, &dir.path().join("state"), false);
    let api = heal.api;
    assert!(
        heal.log
            .lock()
            .unwrap()
            .contains("(read-only: no --token-env)\n"),
        "{}",
        heal.log.lock().unwrap()
    );
    healthy(api, "a", 1, "a healthy");
    let (status, body) = http(api, "POST", "/v1/services/a/restart", Some(TOKEN), "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--token-env"), "{body}");
}

/// The `haproxy` program: `PATH` first, then the sbin directories Debian
/// installs it to.
fn haproxy_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .expect(
            "this test needs a real HAProxy 2.5 or later: `apt-get install -y haproxy` \
             (.ci/run installs it when missing)",
        )
}

/// Sends `n` requests through HAProxy's frontend and counts the answers
/// per replica name (`w0`, `w1`, ...).
fn traffic(frontend: u16, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let body = answer(frontend).expect("the frontend answers 200");
        let name = body.trim_start_matches("hello from ").to_owned();
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[test]
fn scaling_registers_and_removes_replicas_in_haproxy() {
    let _one_at_a_time = one_at_a_time();
    let lab = lab_bin();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let frontend = free_ports(1);
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  stats socket {} level admin\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:{frontend}\n  default_backend be\nbackend be\n  balance roundrobin\n",
            socket.display()
        ),
    )
    .unwrap();
    let haproxy_log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
    let _haproxy = Guard(
        Command::new(haproxy_program())
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(haproxy_log.try_clone().unwrap())
            .stderr(haproxy_log)
            .spawn()
            .expect("starting haproxy"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api =
        executors::haproxy::RuntimeApi::new(format!("unix:{}", socket.display()).parse().unwrap());
    let be = remediate::action::Name::new("backend name", "be").unwrap();
    let servers = || -> Option<Vec<String>> {
        let table = rt.block_on(api.servers_state(&be)).ok()?;
        let mut names: Vec<String> = table.into_iter().map(|s| s.name).collect();
        names.sort();
        Some(names)
    };
    wait_until("haproxy's runtime API", Duration::from_secs(30), &servers);

    let pw = free_ports(3);
    let config = format!(
        "services:
  - name: w
    release: {{version: v1, argv: [{lab}, service, --name, \"w{{replica}}\", --port, \"{{port}}\"]}}
    ports: {pw}-{}
    check: {{type: http, path: /healthz, interval: 200ms, timeout: 2s}}
    haproxy: {{api: \"unix:{sock}\", backend: be}}
",
        pw + 2,
        lab = lab.display(),
        sock = socket.display()
    );
    let config_path = dir.path().join("supervise.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut heal = start_supervise(&config_path, &dir.path().join("state"), true);
    let sup = heal.api;
    let registered = |n: usize| {
        wait_until(
            &format!("{n} replicas registered"),
            Duration::from_secs(30),
            || {
                let s = service(sup, "w");
                let inst = s["instances"].as_array().unwrap().clone();
                let all = inst.len() == n
                    && inst.iter().all(|r| {
                        r["haproxy"]
                            .as_str()
                            .is_some_and(|h| h.starts_with("registered server be/w-"))
                    });
                all.then_some(())
            },
        )
    };

    registered(1);
    assert_eq!(servers().unwrap(), ["w-0"]);
    assert_eq!(traffic(frontend, 6).get("w0"), Some(&6));

    post(sup, "/v1/services/w/scale", r#"{"replicas":3}"#);
    registered(3);
    assert_eq!(servers().unwrap(), ["w-0", "w-1", "w-2"]);
    let three = traffic(frontend, 30);
    for name in ["w0", "w1", "w2"] {
        assert!(three.get(name).copied().unwrap_or(0) >= 5, "{three:?}");
    }

    // Scaling down removes the replicas from the backend before stopping
    // them: no request fails meanwhile and the rest go to w0 only.
    post(sup, "/v1/services/w/scale", r#"{"replicas":1}"#);
    assert_eq!(servers().unwrap(), ["w-0"]);
    assert_eq!(traffic(frontend, 6).get("w0"), Some(&6));

    // Stopping the supervisor removes the last one too.
    let status = heal.terminate();
    assert!(status.success(), "{status:?}\n{}", heal.log.lock().unwrap());
    assert_eq!(servers().unwrap(), Vec::<String>::new());
}

/// `heal-lab load` on `http://127.0.0.1:PORT/` at `rps` for five minutes,
/// each request given `timeout_ms`.
fn start_load(port: u16, rps: u32, timeout_ms: u32) -> Guard {
    Guard(
        Command::new(lab_bin())
            .args(["load", "--target"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .args(["--rps", &rps.to_string(), "--duration-s", "300"])
            .args(["--timeout-ms", &timeout_ms.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A real Prometheus scraping `targets` (name, port on 127.0.0.1) every
/// second (configured by `heal-lab prometheus-config`, data in `dir`),
/// once it is ready: its guard and its address.
fn start_prometheus(dir: &Path, targets: &[(&str, u16)]) -> (Guard, SocketAddr) {
    let conf = dir.join("prometheus.yml");
    let mut cmd = Command::new(lab_bin());
    cmd.arg("prometheus-config");
    for (name, port) in targets {
        cmd.args(["--target", &format!("{name}=127.0.0.1:{port}")]);
    }
    assert!(cmd
        .args(["--scrape-interval", "1s", "-o"])
        .arg(&conf)
        .status()
        .unwrap()
        .success());
    let port = free_ports(1);
    let guard = Guard(
        Command::new(common::prometheus_bin())
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("prometheus ready", Duration::from_secs(30), || {
        client::get(addr, "/-/ready", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });
    (guard, addr)
}

/// The runbook actions end to end: a real Prometheus scrapes a service run
/// by `heal supervise`; `heal watch --supervisor` sees its error ratio
/// climb past the hard limit and restarts it with `restart
/// supervisor/{{service}}`, which clears the fault. The supervisor's own
/// check is `tcp`, which a service answering 500s passes: the restart can
/// only have come from heal's runbook.
#[test]
fn heal_watch_restarts_a_supervised_service_from_a_runbook() {
    let _one_at_a_time = one_at_a_time();
    let lab = lab_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let config_path = dir.path().join("supervise.yaml");
    std::fs::write(
        &config_path,
        format!(
            "services:\n  - name: web\n    release: {{version: v1, argv: [{}, service, --name, web, --port, \"{{port}}\"]}}\n    ports: {port}\n    check: {{type: tcp, interval: 500ms}}\n",
            lab.display()
        ),
    )
    .unwrap();
    let sup = start_supervise(&config_path, &dir.path().join("state"), true);
    let web = healthy(sup.api, "web", 1, "web healthy").remove(0);

    // Prometheus scraping web every second, and steady load on it.
    let (_prom, prom) = start_prometheus(dir.path(), &[("web", port)]);
    let _load = start_load(port, 50, 1000);

    // heal watch with a runbook whose one action is the supervisor's restart.
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("web.yaml"),
        r#"signals:
  - name: error_ratio
    query: |
      sum by (service, instance) (rate(http_requests_total{job="services",code="500"}[5s]))
        /
      sum by (service, instance) (rate(http_requests_total{job="services"}[5s]))
    detector:
      direction: up
      min_spread: 0.005
      limit_above: 0.1
rules:
  - name: error-ratio-high
    when: {signal: error_ratio, direction: up, for: 1s}
    then:
      - action: restart
        target: "supervisor/{{service}}"
        timeout: 10s
    guards: {cooldown: 10s, max_attempts: 5, window: 10m}
    verify: {wait: 5s, recovered_when: {value_below: 0.05}}
"#,
    )
    .unwrap();
    let heal_port = free_ports(1);
    let mut watch = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["watch", "--prometheus", &format!("http://{prom}")])
        .arg("--runbooks")
        .arg(&runbooks)
        .args(["--interval", "1s", "--backfill", "0s", "--execute"])
        .args(["--listen", &format!("127.0.0.1:{heal_port}")])
        .args(["--supervisor", &format!("http://{}", sup.api)])
        .args(["--supervisor-token-env", "SUP_TOKEN"])
        .env("SUP_TOKEN", TOKEN)
        .env("HEAL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let log = log.clone();
        let err = watch.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    let _watch = Guard(watch);
    let heal = SocketAddr::from(([127, 0, 0, 1], heal_port));
    // Watching and evaluating (error ratio 0) before the fault.
    wait_until("heal watch evaluating", Duration::from_secs(60), || {
        client::get(heal, "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });

    // 60 % of requests now fail; the supervisor's tcp check still passes.
    let web_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = client::post(web_addr, "/fault/errors?rate=0.6", Duration::from_secs(2)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let restarted = wait_until("heal to restart web", Duration::from_secs(60), || {
        let r = service(sup.api, "web")["instances"][0].clone();
        (r["starts"].as_u64() > web["starts"].as_u64() && r["phase"] == "healthy").then_some(r)
    });
    assert_ne!(pid(&restarted), pid(&web));
    assert!(
        restarted["last_exit"]
            .as_str()
            .is_some_and(|e| e.starts_with("restart requested")),
        "{restarted}"
    );
    // The new process has no fault.
    let fault = client::get(web_addr, "/fault", Duration::from_secs(2)).unwrap();
    assert!(
        !fault.body_text().contains("errors"),
        "{}",
        fault.body_text()
    );
    let metrics = wait_until("the action counted", Duration::from_secs(30), || {
        let m = client::get(heal, "/metrics", Duration::from_secs(2))
            .ok()?
            .body_text();
        m.contains(r#"heal_actions_total{kind="restart",outcome="ok"}"#)
            .then_some(m)
    });
    assert!(
        !metrics.contains(r#"kind="restart",outcome="failed""#),
        "{metrics}\n{}",
        log.lock().unwrap()
    );
}

/// `heal watch` with `--execute`, the supervisor as its restart target, and
/// `runbooks` and `--log-state` from `dir`; stderr appended to `dir/heal.err`.
fn start_log_watch(dir: &Path, sup: SocketAddr, port: u16) -> Guard {
    // No query signal: Prometheus is never asked.
    start_watch(dir, sup, port, "http://127.0.0.1:9", true)
}

/// `heal watch --execute` against `prometheus`, the supervisor as its
/// restart target, `dir/runbooks`, the store `dir/heal.db` and (with
/// `log_state`) `dir/logs.json`; stderr appended to `dir/heal.err`.
fn start_watch(dir: &Path, sup: SocketAddr, port: u16, prometheus: &str, log_state: bool) -> Guard {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("heal.err"))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_heal"));
    cmd.args(["watch", "--prometheus", prometheus])
        .arg("--runbooks")
        .arg(dir.join("runbooks"))
        .args(["--interval", "1s", "--backfill", "0s", "--execute"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--supervisor", &format!("http://{sup}")])
        .args(["--supervisor-token-env", "SUP_TOKEN"]);
    if log_state {
        cmd.arg("--log-state").arg(dir.join("logs.json"));
    }
    Guard(
        cmd.arg("--db")
            .arg(dir.join("heal.db"))
            .env("SUP_TOKEN", TOKEN)
            .env("HEAL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

/// A lab service `web` under `heal supervise` (its `service` arguments
/// followed by `args`, YAML flow items), and 50 requests a second on it.
struct LabWeb {
    sup: Supervise,
    port: u16,
    /// Its instance when first healthy.
    web: Value,
    load: Guard,
}

fn lab_web_under_load(dir: &Path, args: &str) -> LabWeb {
    let lab = lab_bin();
    let port = free_ports(1);
    let config_path = dir.join("supervise.yaml");
    std::fs::write(
        &config_path,
        format!(
            "services:\n  - name: web\n    release: {{version: v1, argv: [{}, service, --name, web, --port, \"{{port}}\", {args}]}}\n    ports: {port}\n    check: {{type: tcp, interval: 500ms}}\n",
            lab.display(),
        ),
    )
    .unwrap();
    let sup = start_supervise(&config_path, &dir.join("state"), true);
    let web = healthy(sup.api, "web", 1, "web healthy").remove(0);
    let load = start_load(port, 50, 1000);
    LabWeb {
        sup,
        port,
        web,
        load,
    }
}

/// `dir/runbooks/web.yaml`: log source `web` (its input given as `input`,
/// a YAML mapping entry), the `ERROR ... refused` lines as a signal, and a
/// rule restarting `supervisor/web` on them.
fn write_dependency_runbook(dir: &Path, input: &str) {
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("web.yaml"),
        format!(
            r#"log_sources:
  - name: web
    {input}
    read_from: beginning
    format: {{type: log_format, log_format: "<Date> <Time> <Level> <Component>: <Content>"}}
signals:
  - name: db_refused
    logs: {{source: web, level: [ERROR], match: "refused"}}
    detector: {{direction: up, min_spread: 1, limit_above: 5}}
rules:
  - name: dependency-refused
    when: {{signal: db_refused, direction: up, for: 1s}}
    then:
      - action: restart
        target: "supervisor/{{{{service}}}}"
        timeout: 10s
    guards: {{cooldown: 30s, max_attempts: 3, window: 10m}}
    verify: {{wait: 5s, recovered_when: {{value_below: 1}}}}
"#
        ),
    )
    .unwrap();
}

/// Half the requests to `web` find its database refusing (each still
/// answered 200); heal must restart it through the supervisor, and the new
/// process has no fault.
fn dependency_fault_restarts(
    sup: &Supervise,
    port: u16,
    web: &Value,
    heal_log: &dyn Fn() -> String,
) {
    let web_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = client::post(
        web_addr,
        "/fault/dependency?rate=0.5",
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        client::get(web_addr, "/", Duration::from_secs(2))
            .unwrap()
            .status,
        200
    );
    let restarted = wait_until("heal to restart web", Duration::from_secs(60), || {
        let r = service(sup.api, "web")["instances"][0].clone();
        (r["starts"].as_u64() > web["starts"].as_u64() && r["phase"] == "healthy").then_some(r)
    });
    assert_ne!(pid(&restarted), pid(web), "{}", heal_log());
    assert!(
        restarted["last_exit"]
            .as_str()
            .is_some_and(|e| e.starts_with("restart requested")),
        "{restarted}"
    );
    let fault = client::get(web_addr, "/fault", Duration::from_secs(2)).unwrap();
    assert!(
        !fault.body_text().contains("dependency"),
        "{}",
        fault.body_text()
    );
}

/// Polls `read` (heal's count, and the truth) for up to 30 s until they
/// agree; the last reading.
fn settled(mut read: impl FnMut() -> (Option<u64>, u64)) -> (Option<u64>, u64) {
    let t0 = Instant::now();
    loop {
        let (counted, truth) = read();
        if counted == Some(truth) || t0.elapsed() > Duration::from_secs(30) {
            return (counted, truth);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// heal dies without a word (SIGKILL) and comes back on the same state;
/// returns once the new one counts lines again.
fn sigkill_and_restart(mut watch: Guard, dir: &Path, sup: SocketAddr, port: u16) -> Guard {
    watch.0.kill().unwrap();
    watch.0.wait().unwrap();
    // Reaped already: the guard's SIGTERM must not reach a reused pid.
    std::mem::forget(watch);
    std::thread::sleep(Duration::from_secs(1));
    let back = start_log_watch(dir, sup, port);
    let heal = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("heal back", Duration::from_secs(60), || {
        lines_counted(heal).filter(|n| *n > 0)
    });
    back
}

/// heal's `heal_log_lines_total` for source `web`.
fn lines_counted(heal: SocketAddr) -> Option<u64> {
    let m = client::get(heal, "/metrics", Duration::from_secs(2))
        .ok()?
        .body_text();
    m.lines().find_map(|l| {
        l.strip_prefix(r#"heal_log_lines_total{source="web"}"#)?
            .trim()
            .parse()
            .ok()
    })
}

/// A fault only the log shows: the lab service's database refuses
/// connections, and it keeps answering 200 from its cache while its log
/// fills with `ERROR web.db: connection to ... refused`. heal tails that log
/// file (with a rotation of it and a SIGKILL of heal along the way), sees the
/// error lines through a `logs:` signal and restarts the service through
/// `heal supervise`; at the end every line the service wrote, across both
/// files, was counted exactly once.
#[test]
fn heal_watch_restarts_a_service_whose_log_shows_a_failing_dependency() {
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let LabWeb {
        sup,
        port,
        web,
        load,
    } = lab_web_under_load(dir.path(), &format!("--log-dir, {}", logs.display()));
    write_dependency_runbook(dir.path(), &format!("files: [{}/web.log]", logs.display()));
    let heal_port = free_ports(1);
    let heal = SocketAddr::from(([127, 0, 0, 1], heal_port));
    let heal_log = || std::fs::read_to_string(dir.path().join("heal.err")).unwrap_or_default();
    let watch = start_log_watch(dir.path(), sup.api, heal_port);
    wait_until(
        "heal counting the access log",
        Duration::from_secs(60),
        || lines_counted(heal).filter(|n| *n > 100),
    );

    // logrotate's rename: the service reopens its log within a second; the
    // lines it wrote to the old inode meanwhile are drained by heal.
    std::fs::rename(logs.join("web.log"), logs.join("web.log.1")).unwrap();
    wait_until(
        "the service writing a new web.log",
        Duration::from_secs(10),
        || logs.join("web.log").exists().then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let _watch = sigkill_and_restart(watch, dir.path(), sup.api, heal_port);

    // Half the requests now find the database refusing: still 200 each.
    dependency_fault_restarts(&sup, port, &web, &heal_log);
    wait_until("the action counted", Duration::from_secs(30), || {
        let m = client::get(heal, "/metrics", Duration::from_secs(2))
            .ok()?
            .body_text();
        m.contains(r#"heal_actions_total{kind="restart",outcome="ok"}"#)
            .then_some(m)
    });

    // The incident's report shows what the log said: the refused lines
    // and the template that appeared (its evidence is stored when the
    // incident resolves).
    let id = wait_until("the incident in the store", Duration::from_secs(30), || {
        let r = client::get(heal, "/api/incidents", Duration::from_secs(2)).ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        v["incidents"][0]["id"].as_str().map(str::to_owned)
    });
    let said = wait_until(
        "the incident's log evidence",
        Duration::from_secs(60),
        || {
            let r = client::get(
                heal,
                &format!("/api/incidents/{id}"),
                Duration::from_secs(2),
            )
            .ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            v["logs"].is_object().then(|| v["logs"].clone())
        },
    );
    let first = said["lines"][0]["text"].as_str().unwrap_or("");
    assert!(
        first.contains("ERROR web.db: connection to 10.0.0.7:5432 refused"),
        "{said}"
    );
    assert!(
        said["templates"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["template"]
                .as_str()
                .is_some_and(|s| s.contains("refused")))),
        "{said}"
    );
    let page = client::get(heal, &format!("/incidents/{id}"), Duration::from_secs(2)).unwrap();
    assert!(page.body_text().contains("What the log said"));

    // No more requests: every line in the service's files, counted once.
    drop(load);
    std::thread::sleep(Duration::from_secs(1));
    // (Read again at each try: a request still in flight may add a line.)
    let written = || -> u64 {
        ["web.log", "web.log.1"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(logs.join(f))
                    .unwrap()
                    .lines()
                    .count() as u64
            })
            .sum()
    };
    let (counted, held) = settled(|| (lines_counted(heal), written()));
    assert_eq!(
        counted,
        Some(held),
        "lines counted vs written\n{}",
        heal_log()
    );
    let m = client::get(heal, "/metrics", Duration::from_secs(2))
        .unwrap()
        .body_text();
    assert!(
        m.contains(r#"heal_log_rotations_total{source="web"} 1"#),
        "{m}"
    );
    // The action came from the log signal's rule.
    assert!(heal_log().contains("dependency-refused"), "{}", heal_log());
}

/// The lab's log through Kafka: the service under `heal supervise` sends
/// its log lines to a topic of a real broker (tansu); heal reads the topic
/// (all partitions, offsets committed under its group), catches the
/// dependency fault that only the log shows, and restarts the service. A
/// SIGKILL of heal on the way; at the end heal has counted every message
/// the topic holds, once.
#[test]
fn heal_watch_restarts_a_service_from_its_log_in_kafka() {
    let _one_at_a_time = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = common::start_broker("lab-logs", 2);
    let LabWeb {
        sup,
        port,
        web,
        load,
    } = lab_web_under_load(
        dir.path(),
        &format!("--kafka, \"{brokers}\", --kafka-topic, lab-logs"),
    );
    write_dependency_runbook(
        dir.path(),
        &format!("kafka: {{brokers: [\"{brokers}\"], topics: [lab-logs], group: heal-e2e, assign: all_partitions}}"),
    );
    let heal_port = free_ports(1);
    let heal = SocketAddr::from(([127, 0, 0, 1], heal_port));
    let heal_log = || std::fs::read_to_string(dir.path().join("heal.err")).unwrap_or_default();
    let watch = start_log_watch(dir.path(), sup.api, heal_port);
    wait_until("heal counting the topic", Duration::from_secs(60), || {
        lines_counted(heal).filter(|n| *n > 100)
    });
    let _watch = sigkill_and_restart(watch, dir.path(), sup.api, heal_port);

    dependency_fault_restarts(&sup, port, &web, &heal_log);
    assert!(heal_log().contains("dependency-refused"), "{}", heal_log());

    // No more requests: what the topic holds, counted once.
    drop(load);
    std::thread::sleep(Duration::from_secs(2));
    // (Read again at each try: the producer may still deliver a line.)
    let in_topic = || common::topic_messages(&brokers, "lab-logs", 2);
    let (counted, held) = settled(|| (lines_counted(heal), in_topic()));
    assert_eq!(
        counted,
        Some(held),
        "lines counted vs held by the topic\n{}",
        heal_log()
    );
}

/// Issue 13's end-to-end case: three lab services in a call chain
/// (web -> api -> db, each calling the next on every request) under `heal
/// supervise`, a real Prometheus scraping them every second, load on web,
/// and `heal watch --execute` with a runbook that restarts any service
/// whose latency is too high, with `diagnosis:` and the call graph read
/// from Prometheus (the services' own call counters; `heal topology` shows
/// it). A
/// latency fault in db slows all three; heal groups the three incidents,
/// ranks db as the root cause, restarts db only, and records the steps it
/// planned for web and api as `inhibited_by_root_cause`.
#[test]
fn a_slow_database_behind_two_callers_is_the_only_one_restarted() {
    let _one_at_a_time = one_at_a_time();
    let lab = lab_bin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pd, pa, pw) = (free_ports(1), free_ports(1), free_ports(1));
    let svc = |name: &str, port: u16, call: Option<(&str, u16)>, deps: &str| {
        let call = call
            .map(|(n, p)| format!(", --call, {n}=127.0.0.1:{p}"))
            .unwrap_or_default();
        format!(
            "  - name: {name}
    release: {{version: v1, argv: [{lab}, service, --name, {name}, --port, \"{{port}}\"{call}]}}
    ports: {port}
    depends_on: [{deps}]
    check: {{type: tcp, interval: 500ms}}
",
            lab = lab.display()
        )
    };
    let config = format!(
        "services:\n{}{}{}",
        svc("db", pd, None, ""),
        svc("api", pa, Some(("db", pd)), "db"),
        svc("web", pw, Some(("api", pa)), "api"),
    );
    let config_path = d.join("supervise.yaml");
    std::fs::write(&config_path, config).unwrap();
    let sup = start_supervise(&config_path, &d.join("state"), true);
    let first: Vec<Value> = ["db", "api", "web"]
        .iter()
        .map(|s| healthy(sup.api, s, 1, &format!("{s} healthy")).remove(0))
        .collect();

    let (_prom, prom) = start_prometheus(d, &[("db", pd), ("api", pa), ("web", pw)]);
    let _load = start_load(pw, 30, 3000);

    let runbooks = d.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("chain.yaml"),
        r#"signals:
  - name: latency_p90_seconds
    query: |
      histogram_quantile(0.9, sum by (service, le) (rate(http_request_duration_seconds_bucket{job="services"}[5s])))
    detector: {direction: up, min_spread: 0.01, limit_above: 0.15}
rules:
  - name: restart-slow
    when: {signal: latency_p90_seconds, direction: up, for: 1s}
    then:
      - action: restart
        target: "supervisor/{{service}}"
        timeout: 10s
    guards: {cooldown: 60s, max_attempts: 2, window: 10m}
    verify: {wait: 5s, recovered_when: {value_below: 0.1}}
diagnosis:
  group_wait: 5s
  window: 30s
  refresh: 5s
  edges:
    - query: sum by (service, callee) (rate(lab_dependency_requests_total{code="200"}[10s])) > 0
      caller: service
      callee: callee
"#,
    )
    .unwrap();
    let heal_port = free_ports(1);
    let _watch = start_watch(d, sup.api, heal_port, &format!("http://{prom}"), false);
    let heal = SocketAddr::from(([127, 0, 0, 1], heal_port));
    let heal_log = || std::fs::read_to_string(d.join("heal.err")).unwrap_or_default();
    // Twenty seconds of normal latency first: the series' recent past.
    wait_until("heal watch evaluating", Duration::from_secs(60), || {
        let m = client::get(heal, "/metrics", Duration::from_secs(1)).ok()?;
        m.body_text()
            .contains("heal_samples_total{signal=\"latency_p90_seconds\"}")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(20));
    // The call graph, as heal reads it from Prometheus.
    let o = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["topology", "--runbooks"])
        .arg(&runbooks)
        .args(["--prometheus", &format!("http://{prom}")])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        shown.contains(
            "from the edge queries: 2 edges (2 not in the runbooks)\n  api -> db\n  web -> api\n"
        ),
        "{shown}"
    );
    assert!(shown.contains("services: api, db, web"), "{shown}");
    assert!(
        heal_log()
            .lines()
            .any(|l| l.contains("call graph refreshed from Prometheus") && l.ends_with("edges=2")),
        "{}",
        heal_log()
    );

    let db_addr = SocketAddr::from(([127, 0, 0, 1], pd));
    let r = client::post(db_addr, "/fault/latency?ms=400", Duration::from_secs(2)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let restarted = wait_until("heal to restart db", Duration::from_secs(90), || {
        let r = service(sup.api, "db")["instances"][0].clone();
        (r["starts"].as_u64() > first[0]["starts"].as_u64() && r["phase"] == "healthy").then_some(r)
    });
    assert!(
        restarted["last_exit"]
            .as_str()
            .is_some_and(|e| e.starts_with("restart requested")),
        "{restarted}\n{}",
        heal_log()
    );
    // Time for anything else heal would do, then: web and api never
    // restarted.
    std::thread::sleep(Duration::from_secs(10));
    for (i, name) in ["api", "web"].iter().enumerate() {
        let now = service(sup.api, name)["instances"][0].clone();
        assert_eq!(
            now["starts"],
            first[i + 1]["starts"],
            "{name} was restarted: {now}\n{}",
            heal_log()
        );
    }
    // The incidents: one group, db its root cause; the callers' steps held.
    let list: Value = serde_json::from_str(
        &client::get(heal, "/api/incidents", Duration::from_secs(2))
            .unwrap()
            .body_text(),
    )
    .unwrap();
    let mut held = Vec::new();
    for summary in list["incidents"].as_array().unwrap() {
        let id = summary["id"].as_str().unwrap();
        let one: Value = serde_json::from_str(
            &client::get(
                heal,
                &format!("/api/incidents/{id}"),
                Duration::from_secs(2),
            )
            .unwrap()
            .body_text(),
        )
        .unwrap();
        let inc = &one["incident"];
        let service = inc["service"].as_str().unwrap().to_owned();
        assert_eq!(
            inc["diagnosis"]["root_cause"],
            "db",
            "{inc}\n{}",
            heal_log()
        );
        let reasons: Vec<&str> = inc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["decision"]["reason"].as_str().unwrap_or("allowed"))
            .collect();
        if service == "db" {
            assert!(reasons.contains(&"allowed"), "{inc}");
        } else {
            assert!(
                !reasons.is_empty() && reasons.iter().all(|r| *r == "inhibited_by_root_cause"),
                "{inc}"
            );
            held.push(service);
        }
    }
    held.sort();
    assert!(
        !held.is_empty(),
        "no caller incident: {list}\n{}",
        heal_log()
    );
    assert!(
        heal_log().contains("incident diagnosed: its group's root cause is db"),
        "{}",
        heal_log()
    );
}
