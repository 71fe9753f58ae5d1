//! End to end on the real lab: real services (`heal-lab`) under load, a real
//! Prometheus scraping them every second, and `heal watch --execute`
//! restarting them through the lab supervisor with an exec action.
//!
//! One scenario, in order, because every step needs the same warm lab (the
//! detectors calibrate on about 100 samples of history, so the lab runs for
//! two minutes before heal starts) and step (e) stops the shared Prometheus:
//!
//! - (d) clean traffic: no action at all, and the `clean` service is never
//!   touched during the whole run;
//! - (a) a hung service (alive, requests time out) is restarted and serves
//!   (usually seen first by heal's own probe of /healthz);
//! - (b) a service whose error rate climbs is restarted;
//! - a crashed service is restarted;
//! - (c) a memory leak is caught and restarted before the service reaches
//!   its memory limit (it would kill itself at 256 MiB);
//! - (e) Prometheus stopped and restarted mid-run: no action fires from
//!   missing data, heal's probes go on with the last known targets, and
//!   watching resumes.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::http::client;
use store::{IncidentFilter, Store};

mod common;

const SERVICES: [&str; 5] = ["clean", "hang", "errors", "crash", "leak"];

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

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_heal"))
        .parent()
        .unwrap()
        .to_path_buf()
}
fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if f() {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

fn start_prometheus(config: &Path, storage: &Path, port: u16) -> Guard {
    let child = Command::new(common::prometheus_bin())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    let guard = Guard(child);
    wait_until("prometheus to be ready", Duration::from_secs(30), || {
        client::get(addr(port), "/-/ready", Duration::from_secs(1)).is_ok_and(|r| r.status == 200)
    });
    guard
}

/// Whether the service answers `/` with 200 within 500 ms.
fn serves(port: u16) -> bool {
    client::get(addr(port), "/", Duration::from_millis(500)).is_ok_and(|r| r.status == 200)
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of a Prometheus instant query's single result, if any.
fn prom_query(port: u16, query: &str) -> Option<f64> {
    let enc = common::url_encode(query);
    let r = client::get(
        addr(port),
        &format!("/api/v1/query?query={enc}"),
        Duration::from_secs(2),
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The runbook's cooldown (`guards.cooldown: 10s` on every rule of
/// lab/runbooks/lab.yaml), plus a margin for event time trailing wall time.
const COOLDOWN_MS: i64 = 10_000 + 2_000;

/// heal is done with `service`, read from its own incident store: every
/// step it performed on the service's incidents was verified (or the
/// incident resolved), and the cooldown of every attempt has passed in
/// heal's guard state. Then the same fault again is a new incident heal
/// may act on.
fn heal_done_with(db: &Path, service: &str) -> bool {
    let Ok(store) = Store::open_read_only(db) else {
        return false;
    };
    let filter = IncidentFilter {
        service: Some(service.to_owned()),
        limit: 1000,
        ..IncidentFilter::default()
    };
    let Ok(page) = store.list(&filter) else {
        return false;
    };
    let mut ids = Vec::new();
    for s in &page.incidents {
        let Ok(Some(r)) = store.incident(&s.id) else {
            return false;
        };
        let unverified = r
            .incident
            .actions
            .iter()
            .any(|a| a.decision.allowed && a.verification.is_none());
        if unverified && r.incident.resolved_ms.is_none() {
            return false;
        }
        ids.push(s.id.clone());
    }
    let Ok(Some(guards)) = store.guard_state() else {
        return ids.is_empty();
    };
    let now = now_ms();
    guards
        .attempts
        .iter()
        .filter(|a| ids.contains(&a.incident))
        .all(|a| now - a.ts_ms >= COOLDOWN_MS)
}

fn lab_status(control: u16) -> serde_json::Value {
    let r = client::get(addr(control), "/status", Duration::from_secs(2)).expect("lab status");
    serde_json::from_slice(&r.body).expect("status JSON")
}

fn restarts(control: u16, name: &str) -> u64 {
    lab_status(control)["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()["restarts"]
        .as_u64()
        .unwrap()
}

#[test]
fn heal_keeps_the_lab_healthy() {
    let prometheus = common::prometheus_bin();
    let dir = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    let lab_bin = bins.join("heal-lab");
    assert!(
        lab_bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p lab`)",
        lab_bin.display()
    );
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // The lab: five services under one supervisor.
    let ports: Vec<u16> = SERVICES.iter().map(|_| free_port()).collect();
    let control = free_port();
    let lab_conf = dir.path().join("lab.conf");
    let conf: String = SERVICES
        .iter()
        .zip(&ports)
        .map(|(n, p)| format!("{n} {p} --mem-limit-mb 256\n"))
        .collect();
    std::fs::write(&lab_conf, conf).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    let mut lab = Command::new(&lab_bin)
        .args(["up", "--config", lab_conf.to_str().unwrap(), "--run-dir"])
        .arg(dir.path().join("run"))
        .args([
            "--control",
            &format!("127.0.0.1:{control}"),
            "--exit-on-stdin-eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lab_out = BufReader::new(lab.stdout.take().unwrap());
    let _lab = Guard(lab);
    // Read on a thread, so the wait has a deadline; heal-lab ending its
    // output without the line fails the test here.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lab_out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("control listening") => break,
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("heal-lab up did not print `control listening` within 60s")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("heal-lab up ended its output before `control listening`")
            }
        }
    }

    // Prometheus scraping every service every second.
    let prom_port = free_port();
    let prom_conf = dir.path().join("prometheus.yml");
    let mut args = vec!["prometheus-config".to_string()];
    for (n, p) in SERVICES.iter().zip(&ports) {
        args.push("--target".into());
        args.push(format!("{n}=127.0.0.1:{p}"));
    }
    args.extend([
        "--scrape-interval".into(),
        "1s".into(),
        "-o".into(),
        prom_conf.to_str().unwrap().into(),
    ]);
    assert!(Command::new(&lab_bin)
        .args(&args)
        .status()
        .unwrap()
        .success());
    let storage = dir.path().join("tsdb");
    let mut prom = Some(start_prometheus(&prom_conf, &storage, prom_port));
    let _ = &prometheus;

    // Steady load on every service for the whole scenario.
    let mut load = Command::new(&lab_bin);
    load.arg("load");
    for p in &ports {
        load.args(["--target", &format!("http://127.0.0.1:{p}/")]);
    }
    let _load = Guard(
        load.args(["--rps", "50", "--duration-s", "900", "--timeout-ms", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Let the lab build history heal back-fills from: the detectors
    // calibrate on about 100 samples, so wait until Prometheus holds 110
    // scrapes of every service (about two minutes).
    wait_until(
        "110 scrapes of every service in Prometheus",
        Duration::from_secs(400),
        || prom_query(prom_port, "min(count_over_time(up[10m]))").is_some_and(|n| n >= 110.0),
    );

    // heal, with the lab runbook pointed at this lab's supervisor.
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    let book = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/runbooks/lab.yaml"),
    )
    .unwrap()
    .replace("127.0.0.1:19400", &format!("127.0.0.1:{control}"));
    std::fs::write(runbooks.join("lab.yaml"), book).unwrap();
    let heal_port = free_port();
    let db = dir.path().join("heal.db");
    let mut heal = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "watch",
            "--prometheus",
            &format!("http://127.0.0.1:{prom_port}"),
        ])
        .args(["--runbooks", runbooks.to_str().unwrap()])
        .args([
            "--interval",
            "1s",
            "--backfill",
            "10m",
            "--query-timeout",
            "800ms",
            "--execute",
        ])
        .args(["--db", db.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{heal_port}")])
        .env("PATH", &path)
        .env("HEAL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let log = log.clone();
        let err = heal.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    let _heal = Guard(heal);
    // An unreachable heal fails the test (it must not read as 0 actions).
    let heal_metrics = || {
        client::get(addr(heal_port), "/metrics", Duration::from_secs(5))
            .map(|r| r.body_text())
            .unwrap_or_else(|e| panic!("heal's /metrics: {e}\n{}", log.lock().unwrap()))
    };
    // Samples of `lab_up` (one series per service): 5 per evaluation.
    const UP_SAMPLES: &str = r#"heal_samples_total{signal="lab_up"}"#;
    let evaluations = || metric(&heal_metrics(), UP_SAMPLES) / SERVICES.len() as f64;
    let actions = || metric(&heal_metrics(), "heal_actions_total");
    wait_until("heal to be healthy", Duration::from_secs(30), || {
        client::get(addr(heal_port), "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
    });

    // (d) Clean traffic: nothing to do over 20 evaluations.
    let first = evaluations();
    wait_until(
        "20 evaluations of clean traffic",
        Duration::from_secs(120),
        || evaluations() >= first + 20.0,
    );
    assert_eq!(
        actions(),
        0.0,
        "actions on clean traffic:\n{}",
        log.lock().unwrap()
    );

    let port_of = |name: &str| ports[SERVICES.iter().position(|s| *s == name).unwrap()];
    let inject = |name: &str, fault: &str| {
        let r = client::post(
            addr(port_of(name)),
            &format!("/fault/{fault}"),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(r.status, 200, "injecting {fault} into {name}");
        Instant::now()
    };
    let recovered = |name: &str, since: Instant| {
        let port = port_of(name);
        let t0 = Instant::now();
        while !(serves(port)
            && client::get(addr(port), "/fault", Duration::from_millis(500))
                .is_ok_and(|r| r.body_text().trim() == "none"))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(45),
                "timed out after 45s waiting for {name} to serve again; heal's log:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        since.elapsed()
    };

    // (a) A hang, (b) errors, a crash, (c) a leak: each restarted by heal,
    // by a rule meant for it. heal's own probe of /healthz
    // (`service-unresponsive`) sees a hang, a crash and most 500s first;
    // the rules on Prometheus' view (`service-hung` on requests in flight,
    // `service-down` on `up`, `error-ratio-high`) are the second line. Then
    // the hang again, soon after: heal forgot the first one once its
    // restart was verified, so the second is just as anomalous and gets its
    // own incident.
    let mut report = Vec::new();
    for (name, fault, rules) in [
        ("hang", "hang", ["service-unresponsive", "service-hung"]),
        (
            "errors",
            "errors?rate=0.6",
            ["error-ratio-high", "service-unresponsive"],
        ),
        ("crash", "crash", ["service-down", "service-unresponsive"]),
        ("leak", "leak?mb_per_s=16", ["memory-leak", "memory-leak"]),
        ("hang", "hang", ["service-unresponsive", "service-hung"]),
    ] {
        let before = restarts(control, name);
        let log_before = log.lock().unwrap().len();
        let t = inject(name, fault);
        let took = recovered(name, t);
        // The lab's control counts the restart a moment after the new
        // process is up: give it a few seconds, not none.
        let t1 = Instant::now();
        while restarts(control, name) <= before && t1.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            restarts(control, name) > before,
            "{name}: served again without a restart?"
        );
        let since = log.lock().unwrap()[log_before..].to_owned();
        let handled_by = rules.iter().find(|rule| {
            since.lines().any(|l| {
                l.contains("incident opened")
                    && l.contains(&format!("rule={rule}"))
                    && l.contains(&format!("{name}-0"))
            })
        });
        assert!(
            handled_by.is_some(),
            "{name}: no {rules:?} incident after the fault:\n{since}"
        );
        report.push(format!(
            "{name}: serving again {:.1}s after the fault ({})",
            took.as_secs_f64(),
            handled_by.unwrap()
        ));
        // Before the next fault: heal's verification of what it did and
        // its cooldown are over (read from heal's store, not guessed).
        wait_until(
            &format!("heal to verify its steps on {name} and its cooldown to pass"),
            Duration::from_secs(90),
            || heal_done_with(&db, name),
        );
    }
    let text = log.lock().unwrap().clone();
    // The leak was caught by the memory rule, before the service killed itself.
    assert!(
        text.lines().any(|l| l.contains("incident opened")
            && l.contains("rule=memory-leak")
            && l.contains("leak-0")),
        "no memory-leak incident:\n{text}"
    );
    // The first incident on the leaking service is the memory rule's: had
    // the service died of its leak first, `service-down` would have opened
    // first. (heal's own restart briefly fails a scrape too, so a
    // `service-down` incident after the memory rule acted is expected; the
    // engine marks its steps `target_busy`.)
    let first_on_leak = text
        .lines()
        .find(|l| l.contains("incident opened") && l.contains("leak-0"))
        .unwrap_or_default();
    assert!(
        first_on_leak.contains("rule=memory-leak"),
        "the leaking service died before heal acted:\n{text}"
    );

    // (e) Prometheus stops: evaluations fail, no action fires from missing
    // data, and heal's probes go on with the targets it last knew.
    const PROBES_OK: &str = r#"heal_probes_total{signal="probe_success",result="ok"}"#;
    let before = actions();
    let m = heal_metrics();
    let failures_before = metric(&m, "heal_evaluation_failures_total");
    let probes_before = metric(&m, PROBES_OK);
    assert!(probes_before > 0.0, "no successful probe yet:\n{m}");
    drop(prom.take());
    // Failed evaluations, and at least 10 more successful probes.
    wait_until(
        "failed evaluations and 10 more probes with Prometheus down",
        Duration::from_secs(90),
        || {
            let m = heal_metrics();
            metric(&m, "heal_evaluation_failures_total") > failures_before + 5.0
                && metric(&m, PROBES_OK) >= probes_before + 10.0
        },
    );
    assert_eq!(
        actions(),
        before,
        "an action fired while Prometheus was down:\n{}",
        log.lock().unwrap()
    );
    // ... and watching resumes when it is back.
    let _prom = start_prometheus(&prom_conf, &storage, prom_port);
    // (Samples of a query signal: the probe's never stopped.) Then 10
    // evaluations on fresh data.
    let evals = evaluations();
    wait_until(
        "10 evaluations after Prometheus came back",
        Duration::from_secs(90),
        || evaluations() >= evals + 10.0,
    );
    assert_eq!(
        actions(),
        before,
        "an action fired after Prometheus came back:\n{}",
        log.lock().unwrap()
    );

    // (d) The clean service was never touched, over the whole run.
    assert_eq!(restarts(control, "clean"), 0, "{}", log.lock().unwrap());
    let text = log.lock().unwrap().clone();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("incident opened") && l.contains("instance=\"clean-0\"")),
        "incident on the clean service:\n{text}"
    );
    println!("{}", report.join("\n"));
}
