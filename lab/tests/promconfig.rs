//! `heal-lab prometheus-config`: the file it writes, and (where Prometheus is
//! installed) a real Prometheus scraping a lab service with it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, eventually, free_port, run, Service, TempDir};

const T: Duration = Duration::from_secs(10);

#[test]
fn writes_the_file_and_prints_with_dash() {
    let dir = TempDir::new("prom");
    let out_file = dir.path().join("prometheus.yml");
    let out = run(
        &[
            "prometheus-config",
            "--target",
            "web=127.0.0.1:18001",
            "--target",
            "api=127.0.0.1:18002",
            "--scrape-interval",
            "2s",
            "-o",
            out_file.to_str().unwrap(),
        ],
        T,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yml = std::fs::read_to_string(&out_file).unwrap();
    for line in [
        "  scrape_interval: 2s",
        "  scrape_timeout: 2s",
        "  evaluation_interval: 2s",
        "  - job_name: services",
        "    honor_labels: true",
        "      - targets: [\"127.0.0.1:18002\"]",
        "          service: \"api\"",
        "          instance: \"api-0\"",
    ] {
        assert!(yml.lines().any(|l| l == line), "missing {line:?} in\n{yml}");
    }
    let stdout = run(
        &[
            "prometheus-config",
            "--target",
            "web=127.0.0.1:18001",
            "--evaluation-interval",
            "5s",
        ],
        T,
    );
    let printed = String::from_utf8_lossy(&stdout.stdout);
    assert!(
        printed.contains("  scrape_interval: 1s\n")
            && printed.contains("  evaluation_interval: 5s\n"),
        "{printed}"
    );
    let check = Command::new(common::promtool())
        .args(["check", "config", out_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn bad_arguments_exit_64() {
    let out = run(&["prometheus-config", "--target", "web"], T);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "heal-lab: scrape target \"web\": expected NAME=HOST:PORT\n"
    );
    let out = run(
        &[
            "prometheus-config",
            "--target",
            "web=127.0.0.1:1",
            "--scrape-interval",
            "fast",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(64));
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// With the generated file, a real Prometheus sees the service under
/// `service="web", instance="web-0"`, with no `exported_service`. A
/// missing Prometheus fails the test.
#[test]
fn a_real_prometheus_scrapes_the_lab_with_it() {
    let prometheus = common::prometheus();
    let svc = Service::start("web", &[]);
    svc.get("/");
    let dir = TempDir::new("prom-real");
    let config = dir.path().join("prometheus.yml");
    let target = format!("web={}", svc.addr);
    let out = run(
        &[
            "prometheus-config",
            "--target",
            &target,
            "--scrape-interval",
            "1s",
            "-o",
            config.to_str().unwrap(),
        ],
        T,
    );
    assert!(out.status.success());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut prom = Command::new(prometheus)
        .args([
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address={listen}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = percent_encode(
        r#"http_requests_total{service="web",instance="web-0",job="services",code="200"}"#,
    );
    let addr = listen.parse().unwrap();
    let answer = eventually(Duration::from_secs(20), || {
        let r = client::get(
            addr,
            &format!("/api/v1/query?query={query}"),
            Duration::from_secs(2),
        )
        .ok()?;
        let body = r.body_text();
        body.contains("\"value\":[").then_some(body)
    });
    let _ = prom.kill();
    let _ = prom.wait();
    let body = answer.expect("Prometheus never had the sample");
    assert!(
        body.contains(r#""service":"web""#) && !body.contains("exported_service"),
        "{body}"
    );
}
