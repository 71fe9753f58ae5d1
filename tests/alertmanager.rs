//! Alertmanager in, on real parts: a lab service scraped every second by a
//! real Prometheus that evaluates an alert rule (`LabErrors`: the service's
//! errors fault is on) and sends to a real Alertmanager, whose webhook
//! receiver is heal's `POST /api/v1/alerts` with the API token. heal's
//! runbook acts on the alert by name (`when: {signal: alerts, alert:
//! LabErrors}`): its webhook step clears the fault, Prometheus resolves the
//! alert, Alertmanager says so, and heal verifies the step as having
//! recovered the alert. Garbage and a missing token are refused with the
//! statuses a sender expects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::http::client;

mod common;
use common::{free_port, heal_lab, metric, metrics, prometheus_bin, wait_until, Guard};

/// Debian's `prometheus-alertmanager` (its binary has the package's name).
fn alertmanager_bin() -> PathBuf {
    let found = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("Alertmanager is missing: apt-get install prometheus-alertmanager (.ci/run does)")
    })
}

fn post_alerts(heal: SocketAddr, token: Option<&str>, body: &str) -> u16 {
    common::post_status(
        heal,
        "/api/v1/alerts",
        token,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn a_real_alertmanager_sends_a_prometheus_alert_and_heal_acts_on_it_and_verifies_it_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let token = "am-test-token";
    let d = |name: &str| dir.path().join(name);

    // The lab service, erroring from the start.
    let lab_port = free_port();
    let lab = SocketAddr::from(([127, 0, 0, 1], lab_port));
    let _lab = Guard(
        Command::new(heal_lab())
            .args(["service", "--name", "api", "--port", &lab_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the lab service", Duration::from_secs(20), || {
        client::get(lab, "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });

    // heal: one alert signal, one rule that clears the fault through the
    // lab's own API and verifies that the alert resolved.
    std::fs::create_dir(d("runbooks")).unwrap();
    std::fs::write(
        d("runbooks").join("alerts.yaml"),
        format!(
            "signals:
  - name: alerts
    alertmanager: {{match: {{job: lab}}}}
rules:
  - name: lab-erroring
    when: {{signal: alerts, alert: LabErrors, for: 0s}}
    then:
      - {{action: webhook, url: \"http://{lab}/fault/clear\"}}
    verify: {{wait: 20s, recovered_when: {{value_below: 0.5}}}}
"
        ),
    )
    .unwrap();
    let heal = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let prom = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let am = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _heal = Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["watch", "--prometheus", &format!("http://{prom}")])
            .arg("--runbooks")
            .arg(d("runbooks"))
            .args(["--interval", "1s", "--backfill", "0s"])
            .args(["--listen", &heal.to_string()])
            .args(["--api-token-env", "HEAL_AM_TOKEN", "--execute"])
            .env("HEAL_AM_TOKEN", token)
            .env("HEAL_LOG", "heal::live=info,warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d("heal.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let heal_log = || std::fs::read_to_string(d("heal.err")).unwrap_or_default();
    wait_until("heal's API", Duration::from_secs(20), || {
        client::get(heal, "/healthz", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });

    // Refused: no token, a wrong one, a body that is not a webhook payload,
    // an alert without a name. Nothing fires from them.
    let fake = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"LabErrors","job":"lab"}}]}"#;
    assert_eq!(post_alerts(heal, None, fake), 401);
    assert_eq!(post_alerts(heal, Some("wrong"), fake), 401);
    assert_eq!(post_alerts(heal, Some(token), "not json"), 400);
    assert_eq!(
        post_alerts(
            heal,
            Some(token),
            r#"{"alerts":[{"status":"firing","labels":{"job":"lab"}}]}"#
        ),
        400
    );

    // The real Alertmanager: one route, to heal, resolved alerts too.
    std::fs::write(
        d("alertmanager.yml"),
        format!(
            "route:
  receiver: heal
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: heal
    webhook_configs:
      - url: http://{heal}/api/v1/alerts
        send_resolved: true
        http_config:
          authorization: {{credentials: {token}}}
"
        ),
    )
    .unwrap();
    let _alertmanager = Guard(
        Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", d("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", d("am-data").display()))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d("alertmanager.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    // The real Prometheus: scrapes the lab, evaluates the rule every second.
    std::fs::write(
        d("rules.yml"),
        "groups:
  - name: lab
    interval: 1s
    rules:
      - alert: LabErrors
        expr: lab_fault{job=\"lab\", kind=\"errors\"} == 1
        labels: {severity: page}
        annotations: {summary: \"{{ $labels.instance }} answers 500s\"}
",
    )
    .unwrap();
    std::fs::write(
        d("prometheus.yml"),
        format!(
            "global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ['{}']
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['{am}']
scrape_configs:
  - job_name: lab
    static_configs:
      - targets: ['{lab}']
",
            d("rules.yml").display()
        ),
    )
    .unwrap();
    let _prometheus = Guard(
        Command::new(prometheus_bin())
            .arg(format!("--config.file={}", d("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", d("tsdb").display()))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d("prometheus.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let all_logs = || {
        format!(
            "heal:\n{}\nprometheus:\n{}\nalertmanager:\n{}\nheal metrics:\n{}",
            heal_log(),
            std::fs::read_to_string(d("prometheus.err")).unwrap_or_default(),
            std::fs::read_to_string(d("alertmanager.err")).unwrap_or_default(),
            metrics(heal)
                .lines()
                .filter(|l| l.starts_with("heal_alert") || l.starts_with("heal_series_live"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    // Quiet first: Prometheus up, no alert, no incident.
    wait_until(
        "prometheus scraping the lab",
        Duration::from_secs(60),
        || {
            client::get(
                prom,
                "/api/v1/query?query=lab_fault",
                Duration::from_secs(1),
            )
            .is_ok_and(|r| r.body_text().contains("\"kind\":\"errors\""))
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!heal_log().contains("incident opened"), "{}", all_logs());

    // The fault: Prometheus fires LabErrors, Alertmanager sends it to heal.
    let r = client::post(lab, "/fault/errors?rate=1", Duration::from_secs(2)).unwrap();
    assert_eq!(r.status, 200);
    let start = std::time::Instant::now();
    while !heal_log().contains("rule=lab-erroring") {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no incident from the alert:\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let opened = heal_log()
        .lines()
        .find(|l| l.contains("incident opened"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", all_logs()));
    // The series is the alert: its name and labels, Prometheus' rule labels
    // among them.
    for want in [
        "series=alerts{",
        "alertname=\"LabErrors\"",
        "severity=\"page\"",
        "job=\"lab\"",
    ] {
        assert!(opened.contains(want), "{want} not in {opened}");
    }
    assert!(
        metric(heal, "heal_alertmanager_requests_total{code=\"200\"}").unwrap_or(0.0) >= 1.0,
        "{}",
        all_logs()
    );

    // heal's step cleared the fault; the alert resolves; heal verifies.
    let start = std::time::Instant::now();
    let verified = loop {
        let log = heal_log();
        if let Some(l) = log.lines().find(|l| l.contains(" verified")) {
            break l.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never verified:\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        verified.contains("outcome=\"recovered\""),
        "{verified}\n{}",
        all_logs()
    );
    let fault = client::get(lab, "/fault", Duration::from_secs(2)).unwrap();
    assert!(
        !fault.body_text().contains("errors"),
        "the fault is still on: {}",
        fault.body_text()
    );
    // One incident, one step: the resolved notice opened nothing.
    assert_eq!(
        heal_log().matches("incident opened").count(),
        1,
        "{}",
        all_logs()
    );
    assert_eq!(
        metric(heal, "heal_alertmanager_requests_total{code=\"401\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(heal, "heal_alertmanager_requests_total{code=\"400\"}"),
        Some(2.0)
    );
}
