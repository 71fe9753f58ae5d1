//! Prometheus remote write into `heal watch`, on real parts: a lab service
//! (`heal-lab service`) scraped every second by a real Prometheus whose
//! `remote_write` sends to heal's `POST /api/v1/write` with the API token.
//! heal's runbook reads the pushed series (`remote_write:` signals: a gauge
//! and a counter's rate); the service starts leaking memory and heal opens
//! the incident from the pushed samples alone (its `--prometheus` is never
//! queried: no signal has a query). Garbage and a missing token are refused
//! with the statuses a sender expects, and the loop goes on.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::http::client;

mod common;
use common::{
    free_port, heal_lab, metric, metrics, post_remote_write, start_prometheus, url_encode,
    wait_until, Guard,
};

/// A lab service `api` on `port`.
fn start_lab(port: u16) -> Guard {
    Guard(
        Command::new(heal_lab())
            .args(["service", "--name", "api", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_real_prometheus_remote_writes_to_heal_and_heal_acts_on_the_pushed_series() {
    let dir = tempfile::tempdir().unwrap();
    let token = "rw-test-token";

    // The lab service.
    let lab_port = free_port();
    let _lab = start_lab(lab_port);
    let lab = SocketAddr::from(([127, 0, 0, 1], lab_port));
    wait_until("the lab service", Duration::from_secs(20), || {
        client::get(lab, "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });

    // heal, with remote-write signals only.
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("pushed.yaml"),
        "signals:
  - name: api_memory_bytes
    remote_write: {metric: process_resident_memory_bytes, match: {job: lab}}
    detector: {direction: up, limit_above: 67108864}
  - name: api_requests_per_second
    remote_write: {metric: http_requests_total, match: {job: lab, code: \"200\"}, rate: true}
rules:
  - name: api-leaking
    when: {signal: api_memory_bytes, direction: up, for: 0s}
    then:
      - {action: exec, argv: [heal-lab, restart, api]}
    verify: {wait: 5s, recovered_when: {value_below: 67108864}}
",
    )
    .unwrap();
    let prom_port = free_port();
    let heal_port = free_port();
    let heal = SocketAddr::from(([127, 0, 0, 1], heal_port));
    let log = dir.path().join("heal.err");
    let _heal = Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["watch", "--prometheus"])
            .arg(format!("http://127.0.0.1:{prom_port}"))
            .arg("--runbooks")
            .arg(&runbooks)
            .args(["--interval", "1s", "--backfill", "0s"])
            .args(["--listen", &heal.to_string()])
            .args(["--api-token-env", "HEAL_RW_TOKEN"])
            .env("HEAL_RW_TOKEN", token)
            .env("HEAL_LOG", "heal::live=info,warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let heal_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = std::time::Instant::now();
    while client::get(heal, "/metrics", Duration::from_secs(1)).map_or(true, |r| r.status != 200) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "heal's API never answered:\n{}",
            heal_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Refused before Prometheus sends anything: no token, a wrong one,
    // and a body that is not remote write; heal goes on.
    assert_eq!(post_remote_write(heal, None, b"x"), 401);
    assert_eq!(post_remote_write(heal, Some("wrong"), b"x"), 401);
    assert_eq!(
        post_remote_write(heal, Some(token), b"this is not snappy"),
        400
    );

    // The real Prometheus: scrapes the lab every second, remote-writes to heal.
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:
  scrape_interval: 1s
scrape_configs:
  - job_name: lab
    static_configs:
      - targets: ['127.0.0.1:{lab_port}']
remote_write:
  - url: http://{heal}/api/v1/write
    authorization: {{credentials: {token}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
"
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus(dir.path(), &config, prom_port, &[]);
    // Requests to the lab, so that its counter moves.
    let load = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let loader = {
        let load = load.clone();
        std::thread::spawn(move || {
            while load.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client::get(lab, "/", Duration::from_secs(1));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Both signals get their series from the pushed samples.
    let start = std::time::Instant::now();
    loop {
        let m = metrics(heal);
        if m.contains("heal_series_live{signal=\"api_memory_bytes\"} 1")
            && m.contains("heal_series_live{signal=\"api_requests_per_second\"} 1")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pushed series missing:\n{}\n{}\n{}",
            m.lines()
                .filter(|l| l.starts_with("heal_remote") || l.starts_with("heal_series_live"))
                .collect::<Vec<_>>()
                .join("\n"),
            heal_log(),
            std::fs::read_to_string(dir.path().join("prometheus.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let matched = metric(heal, "heal_remote_write_samples_total{outcome=\"matched\"}").unwrap();
    assert!(matched > 0.0, "{}", metrics(heal));
    assert!(
        metric(heal, "heal_remote_write_requests_total{code=\"204\"}").unwrap_or(0.0) > 0.0,
        "{}",
        metrics(heal)
    );
    assert!(!heal_log().contains("incident opened"), "{}", heal_log());

    // The leak: 16 MiB/s; heal sees it in the pushed gauge past 64 MiB.
    let r = client::post(lab, "/fault/leak?mb_per_s=16", Duration::from_secs(2)).unwrap();
    assert_eq!(r.status, 200);
    wait_until("the leak's incident", Duration::from_secs(60), || {
        heal_log().contains("rule=api-leaking").then_some(())
    });
    let log_text = heal_log();
    assert!(
        log_text.contains("series=api_memory_bytes{") && log_text.contains("job=\"lab\""),
        "{log_text}"
    );
    // Refused bodies counted, and the loop still evaluating.
    assert_eq!(
        metric(heal, "heal_remote_write_requests_total{code=\"400\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(heal, "heal_remote_write_requests_total{code=\"401\"}"),
        Some(2.0)
    );
    assert!(client::get(heal, "/healthz", Duration::from_secs(2)).is_ok_and(|r| r.status == 200));
    load.store(false, std::sync::atomic::Ordering::Relaxed);
    loader.join().unwrap();
}

/// Prometheus' `/api/v1/query` answer for `query`: (labels, value) per
/// series.
fn query(prometheus: SocketAddr, q: &str) -> Vec<(serde_json::Value, f64)> {
    let path = format!("/api/v1/query?query={}", url_encode(q));
    let Ok(r) = client::get(prometheus, &path, Duration::from_secs(2)) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&r.body_text()).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["metric"].clone(),
                        s["value"][1]
                            .as_str()
                            .unwrap_or("NaN")
                            .parse()
                            .unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Scores out: `heal watch --remote-write` sends each watched series'
/// anomaly score and band to a real Prometheus (its remote-write
/// receiver on), where they are queried back with the series' labels.
#[test]
fn heal_watch_remote_writes_scores_and_bands_that_prometheus_serves_back() {
    let dir = tempfile::tempdir().unwrap();
    let lab_port = free_port();
    let _lab = start_lab(lab_port);
    let prom_port = free_port();
    let prometheus = SocketAddr::from(([127, 0, 0, 1], prom_port));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:
  scrape_interval: 1s
scrape_configs:
  - job_name: lab
    static_configs:
      - targets: ['127.0.0.1:{lab_port}']
"
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus(
        dir.path(),
        &config,
        prom_port,
        &["--web.enable-remote-write-receiver"],
    );
    wait_until("prometheus ready", Duration::from_secs(60), || {
        client::get(prometheus, "/-/ready", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("lab.yaml"),
        "signals:
  - name: lab_memory_bytes
    query: process_resident_memory_bytes{job=\"lab\"}
    detector: {warmup: 3}
",
    )
    .unwrap();
    let heal = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = dir.path().join("heal.err");
    let _heal = Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["watch", "--prometheus", &format!("http://{prometheus}")])
            .arg("--runbooks")
            .arg(&runbooks)
            .args(["--interval", "1s", "--backfill", "0s"])
            .args(["--listen", &heal.to_string()])
            .args([
                "--remote-write",
                &format!("http://{prometheus}/api/v1/write"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let heal_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // The three series, back from Prometheus with the watched series'
    // labels and the signal.
    let start = std::time::Instant::now();
    let (score, lower, upper) = loop {
        let get = |m: &str| query(prometheus, &format!("{m}{{signal=\"lab_memory_bytes\"}}"));
        let (s, l, u) = (
            get("heal_anomaly_score"),
            get("heal_band_lower"),
            get("heal_band_upper"),
        );
        if !s.is_empty() && !l.is_empty() && !u.is_empty() {
            break (s, l, u);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no scores in Prometheus: {s:?} {l:?} {u:?}\n{}\n{}",
            heal_log(),
            metrics(heal)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let (labels, s) = &score[0];
    assert_eq!(labels["job"], "lab", "{labels}");
    assert_eq!(
        labels["instance"],
        format!("127.0.0.1:{lab_port}"),
        "{labels}"
    );
    assert!((0.0..=1.0).contains(s), "{s}");
    let memory = query(prometheus, "process_resident_memory_bytes{job=\"lab\"}");
    assert!(!memory.is_empty());
    assert!(lower[0].1 <= upper[0].1, "{lower:?} {upper:?}");
    // The dashboard's queries: every one is PromQL this Prometheus takes,
    // naming metrics heal exports or writes; the score panels show data.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/heal.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let exported = metrics(heal);
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let concrete = expr
                .replace("$__rate_interval", "1m")
                .replace("$signal", "lab_memory_bytes");
            let r = client::get(
                prometheus,
                &format!("/api/v1/query?query={}", url_encode(&concrete)),
                Duration::from_secs(2),
            )
            .unwrap();
            assert_eq!(r.status, 200, "{expr}: {}", r.body_text());
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("heal_") {
                    let written = ["heal_anomaly_score", "heal_band_lower", "heal_band_upper"];
                    assert!(
                        written.contains(&word) || exported.contains(&format!("# TYPE {word} ")),
                        "the dashboard names {word}, which heal does not export"
                    );
                }
            }
            if expr.starts_with("heal_anomaly_score") || expr.starts_with("heal_band") {
                assert!(!query(prometheus, &concrete).is_empty(), "{expr}: no data");
            }
        }
    }
    // (heal's counters are set at each evaluation: they follow the sends.)
    wait_until("sent samples counted", Duration::from_secs(10), || {
        (metric(
            heal,
            "heal_remote_write_out_samples_total{outcome=\"sent\"}",
        )
        .unwrap_or(0.0)
            >= 3.0)
            .then_some(())
    });
    assert_eq!(
        metric(
            heal,
            "heal_remote_write_out_samples_total{outcome=\"dropped_failed\"}"
        ),
        Some(0.0)
    );
}
