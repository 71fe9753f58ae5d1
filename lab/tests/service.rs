//! `heal-lab service` as a real process on a real socket: endpoints,
//! metrics, and every fault observed from the outside.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, eventually, free_port, value, Proc, Service};
use lab::procfs;

#[test]
fn serves_work_health_and_prometheus_metrics() {
    let svc = Service::start("web", &[]);
    let work = svc.get("/");
    assert_eq!(
        (work.status, work.body_text().as_str()),
        (200, "hello from web\n")
    );
    assert_eq!(svc.get("/healthz").body_text(), "ok\n");
    for _ in 0..4 {
        svc.get("/");
    }
    let metrics = svc.get("/metrics");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.body_text();
    let samples = common::parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = |name, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}\n{text}"))
    };
    assert_eq!(
        v(
            "http_requests_total",
            &[("service", "web"), ("code", "200")]
        ),
        5.0
    );
    assert_eq!(
        v(
            "http_requests_total",
            &[("service", "web"), ("code", "500")]
        ),
        0.0
    );
    assert_eq!(
        v("http_request_duration_seconds_count", &[("service", "web")]),
        5.0
    );
    assert_eq!(
        v("http_request_duration_seconds_bucket", &[("le", "10")]),
        5.0
    );
    let les: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "http_request_duration_seconds_bucket")
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(
        les,
        ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    );
    let rss = v("process_resident_memory_bytes", &[]);
    assert!((500_000.0..200e6).contains(&rss), "{rss}");
    let now = procfs::unix_time_secs();
    let start = v("process_start_time_seconds", &[]);
    assert!(start <= now && start > now - 60.0, "{start} vs {now}");
    assert!(v("process_cpu_seconds_total", &[]) >= 0.0);
    for kind in lab::service::KINDS {
        assert_eq!(v("lab_fault", &[("kind", kind)]), 0.0);
    }
    assert_eq!(v("lab_leaked_bytes", &[]), 0.0);

    // An independent opinion on the format: Prometheus' own tool.
    let mut check = Command::new(common::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wrong_paths_methods_and_parameters_are_refused() {
    let svc = Service::start("web", &[]);
    assert_eq!(svc.get("/nope").status, 404);
    assert_eq!(svc.post("/").status, 405);
    assert_eq!(svc.get("/fault/hang").status, 405);
    let bad = svc.post("/fault/errors?rate=2");
    assert_eq!(
        (bad.status, bad.body_text().as_str()),
        (400, "fault errors: rate must be in [0, 1], got 2\n")
    );
    assert_eq!(svc.post("/fault/melt").status, 400);
    assert_eq!(svc.get("/fault").body_text(), "none\n");
}

#[test]
fn listens_on_the_port_it_is_given() {
    let port = free_port();
    let proc = Proc::spawn(&["service", "--name", "fixed", "--port", &port.to_string()]);
    assert_eq!(
        proc.line(Duration::from_secs(10)),
        format!("listening on 127.0.0.1:{port}")
    );
}

#[test]
fn a_bad_command_line_exits_64() {
    let out = common::run(
        &[
            "service", "--name", "web", "--port", "0", "--fault", "errors:7",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("fault errors: rate must be in [0, 1], got 7"));
    let out = common::run(
        &["service", "--name", "a/b", "--port", "0"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("service name \"a/b\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crash_answers_then_exits_with_status_1() {
    let mut svc = Service::start("web", &[]);
    let r = svc.post("/fault/crash");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "fault crash: exiting\n")
    );
    let status = svc
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("the service should exit");
    assert_eq!(status.code(), Some(1));
    assert!(client::get(svc.addr, "/", Duration::from_millis(500)).is_err());
}

#[test]
fn a_delayed_crash_from_the_command_line() {
    let mut svc = Service::start("web", &["--fault", "crash:300"]);
    let started = Instant::now();
    assert_eq!(svc.get("/").status, 200);
    assert_eq!(svc.metric("lab_fault", &[("kind", "crash")]), 1.0);
    let status = svc
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("the service should exit");
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn hang_blocks_work_and_health_but_not_metrics() {
    let svc = Service::start("web", &[]);
    assert_eq!(svc.post("/fault/hang").status, 200);
    for path in ["/", "/healthz"] {
        let started = Instant::now();
        let err = client::get(svc.addr, path, Duration::from_millis(300)).expect_err(path);
        assert!(client::is_timeout(&err), "{path}: {err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    // The process is alive and Prometheus can still scrape it.
    assert_eq!(svc.metric("lab_fault", &[("kind", "hang")]), 1.0);
    assert_eq!(svc.metric("http_requests_total", &[("code", "200")]), 0.0);
    // A request blocked in the hang completes once the fault is cleared.
    let addr = svc.addr;
    let pending = std::thread::spawn(move || client::get(addr, "/", Duration::from_secs(10)));
    // Cleared only once the request is inside the hang (the service counts
    // it in flight), so it is the hang that releases it.
    let inside = eventually(Duration::from_secs(5), || {
        (svc.metric("http_requests_in_flight", &[]) >= 1.0).then_some(())
    });
    assert!(inside.is_some(), "the pending request never reached the hang");
    assert_eq!(svc.post("/fault/clear").status, 200);
    let released = pending.join().unwrap().expect("released request");
    assert_eq!(released.status, 200);
    assert_eq!(svc.get("/healthz").status, 200);
}

#[test]
fn leak_grows_resident_memory_then_dies_like_an_oom_kill() {
    let mut svc = Service::start("web", &["--mem-limit-mb", "64"]);
    let pid = svc.proc.pid();
    let before = procfs::resident_memory_bytes_of(pid).unwrap();
    assert_eq!(svc.post("/fault/leak?mb_per_s=40").status, 200);
    // At least 8 MiB more resident within a couple of seconds.
    let grown = eventually(Duration::from_secs(3), || {
        procfs::resident_memory_bytes_of(pid).filter(|&rss| rss >= before + 8 * 1024 * 1024)
    });
    assert!(grown.is_some(), "RSS did not grow from {before}");
    let status = svc
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("the service should die at its memory limit");
    assert_eq!(
        status.signal(),
        Some(9),
        "{status:?}; stderr:\n{}",
        svc.proc.stderr()
    );
    assert!(
        svc.proc.stderr().contains("killed like the OOM killer"),
        "{}",
        svc.proc.stderr()
    );
}

#[test]
fn leaked_bytes_are_reported_and_kept_after_clear() {
    let svc = Service::start("web", &["--fault", "leak:20", "--mem-limit-mb", "200"]);
    let leaked = eventually(Duration::from_secs(3), || {
        Some(svc.metric("lab_leaked_bytes", &[])).filter(|&b| b >= 4.0 * 1024.0 * 1024.0)
    });
    assert!(leaked.is_some());
    assert_eq!(svc.metric("lab_fault", &[("kind", "leak")]), 1.0);
    svc.post("/fault/clear");
    std::thread::sleep(Duration::from_millis(250));
    let kept = svc.metric("lab_leaked_bytes", &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        svc.metric("lab_leaked_bytes", &[]),
        kept,
        "the leak goes on after clear"
    );
    assert!(svc.metric("process_resident_memory_bytes", &[]) >= kept);
}

#[test]
fn latency_delays_work_and_shows_in_the_histogram() {
    let svc = Service::start("web", &["--fault", "latency:150"]);
    let started = Instant::now();
    assert_eq!(svc.get("/").status, 200);
    // A lower bound only: how long a loaded machine adds is not this
    // test's business (no upper wall-clock bound beside a CPU burner).
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        svc.metric("http_request_duration_seconds_bucket", &[("le", "0.1")]),
        0.0
    );
    assert_eq!(
        svc.metric("http_request_duration_seconds_bucket", &[("le", "0.25")]),
        1.0
    );
    assert!(svc.metric("http_request_duration_seconds_sum", &[]) >= 0.15);
    // Health and metrics are not delayed: under a ten-minute latency they
    // still answer (within `get`'s 5 s), while work does not answer in 1 s.
    assert_eq!(svc.post("/fault/latency?ms=600000").status, 200);
    assert_eq!(svc.get("/healthz").status, 200);
    assert_eq!(svc.metric("lab_fault", &[("kind", "latency")]), 1.0);
    let err = client::get(svc.addr, "/", Duration::from_secs(1)).expect_err("delayed work");
    assert!(client::is_timeout(&err), "{err}");
    // Changed at run time: back to no delay, work answers again, and the
    // service's own histogram puts that request under 0.1 s.
    assert_eq!(svc.post("/fault/latency?ms=0").status, 200);
    assert_eq!(svc.get("/").status, 200);
    assert_eq!(
        svc.metric("http_request_duration_seconds_bucket", &[("le", "0.1")]),
        1.0
    );
}

#[test]
fn errors_answer_500_at_the_set_rate() {
    let svc = Service::start("web", &[]);
    assert_eq!(svc.post("/fault/errors?rate=0.3").status, 200);
    let n = 200;
    let failed = (0..n).filter(|_| svc.get("/").status == 500).count();
    let ratio = failed as f64 / f64::from(n);
    assert!((0.2..=0.4).contains(&ratio), "{ratio}");
    assert_eq!(
        svc.metric("http_requests_total", &[("code", "500")]),
        failed as f64
    );
    assert_eq!(
        svc.metric("http_requests_total", &[("code", "200")]),
        (n as usize - failed) as f64
    );
    // At rate 1 health fails too.
    svc.post("/fault/errors?rate=1");
    assert_eq!(svc.get("/healthz").status, 500);
    svc.post("/fault/clear");
    assert_eq!(svc.get("/healthz").status, 200);
}

#[test]
fn cpu_burns_user_time_until_cleared() {
    let svc = Service::start("web", &["--fault", "cpu:1"]);
    let pid = svc.proc.pid();
    let t0 = procfs::user_cpu_ticks(pid).unwrap();
    let ticks = procfs::clock_ticks_per_second();
    // A fifth of a second of user time, however busy the machine.
    let burned = eventually(Duration::from_secs(5), || {
        procfs::user_cpu_ticks(pid).filter(|&t| t >= t0 + ticks / 5)
    });
    assert!(burned.is_some(), "utime stayed near {t0}");
    assert!(svc.metric("process_cpu_seconds_total", &[]) >= 0.2);
    svc.post("/fault/clear");
    std::thread::sleep(Duration::from_millis(200));
    let t1 = procfs::user_cpu_ticks(pid).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t2 = procfs::user_cpu_ticks(pid).unwrap();
    assert!(
        t2 - t1 < ticks / 10,
        "still spinning after clear: {t1} -> {t2}"
    );
}

#[test]
fn exits_when_stdin_closes_if_asked() {
    let mut proc = Proc::spawn(&[
        "service",
        "--name",
        "web",
        "--port",
        "0",
        "--exit-on-stdin-eof",
    ]);
    proc.wait_for_line("listening on ", Duration::from_secs(10));
    proc.close_stdin();
    let status = proc
        .wait_exit(Duration::from_secs(5))
        .expect("exit on stdin EOF");
    assert_eq!(status.code(), Some(0));
}
