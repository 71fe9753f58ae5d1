//! `heal replay --db` into a real store, then `heal incidents list` and
//! `heal incidents show` on it, and the feed `heal watch --db` serves from
//! it: each on a SQLite file and on a PostgreSQL database (Debian's
//! `postgresql`, a server of the test's own through `lab::postgres`).

use std::path::Path;
use std::process::Command;

mod common;

use common::{heal, normal, stderr, stdout};
use lab::rng::SplitMix64;

fn replay_into(db: &Path, report: &Path) -> String {
    let o = heal(&[
        "replay",
        "datasets/synth-42.parquet",
        "--runbooks",
        "runbooks",
        "--quiet",
        "--db",
        db.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn ids(list: &str) -> Vec<&str> {
    list.lines()
        .filter(|l| l.starts_with("inc-"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect()
}

/// A PostgreSQL server of the test's own; its URL is the `--db`.
fn postgres() -> lab::postgres::PgServer {
    lab::postgres::PgServer::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"))
}

#[test]
fn replays_into_a_store_then_list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    replays_then_list_and_show(&dir.path().join("heal.db"), dir.path());
}

#[test]
fn replays_into_postgres_then_list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let pg = postgres();
    replays_then_list_and_show(Path::new(&pg.url()), dir.path());
}

fn replays_then_list_and_show(db: &Path, dir: &Path) {
    let dbs = db.to_str().unwrap();

    let first = replay_into(db, &dir.join("r1"));
    assert!(
        first.contains(&format!("stored 5 incidents and 30 engine events in {dbs}")),
        "{first}"
    );
    // A second run numbers on from the store: no id is reused.
    let second = replay_into(db, &dir.join("r2"));
    assert!(second.contains("inc-000006  checkout"), "{second}");

    let o = heal(&["incidents", "list", "--db", dbs]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert_eq!(
        ids(&list),
        [
            // Newest first; the two runs opened the same incidents at the
            // same times, the later run's first.
            "inc-000010",
            "inc-000005",
            "inc-000009",
            "inc-000004",
            "inc-000008",
            "inc-000003",
            "inc-000007",
            "inc-000002",
            "inc-000006",
            "inc-000001",
        ],
        "{list}"
    );
    assert!(
        list.starts_with("incident    opened (UTC)         service    rule"),
        "{list}"
    );
    assert!(
        list.contains("inc-000001  2026-01-06 14:05:00  checkout   latency-p99-high           critical  resolved  not_recovered  0/3/3"),
        "{list}"
    );

    // Filters and pages.
    let o = heal(&[
        "incidents",
        "list",
        "--db",
        dbs,
        "--service",
        "payments",
        "--outcome",
        "recovered",
        "--since",
        "2026-01-07T00:00:00Z",
        "--limit",
        "3",
    ]);
    let page = stdout(&o);
    assert_eq!(
        ids(&page),
        ["inc-000008", "inc-000003", "inc-000007"],
        "{page}"
    );
    let cursor = page
        .lines()
        .find_map(|l| l.strip_prefix("more: add --cursor "))
        .unwrap_or_else(|| panic!("no cursor in {page}"));
    let o = heal(&[
        "incidents",
        "list",
        "--db",
        dbs,
        "--service",
        "payments",
        "--outcome",
        "recovered",
        "--limit",
        "3",
        "--cursor",
        cursor,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(json["incidents"][0]["id"], "inc-000002");
    assert_eq!(json["next_cursor"], serde_json::Value::Null);

    // `show` is the replay's own Markdown report, read back from the store,
    // followed by the executions (none: a replay performs nothing).
    let o = heal(&["incidents", "show", "inc-000004", "--db", dbs]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    let report = std::fs::read_to_string(dir.join("r1/inc-000004.md")).unwrap();
    assert!(shown.starts_with(&report), "{shown}");
    assert!(
        shown.ends_with("## Executions\n\nStatus resolved, outcome not_recovered.\n\nNo action was performed.\n"),
        "{shown}"
    );
}

#[test]
fn bad_input_exits_64_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let o = heal(&["incidents", "list", "--db", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        format!(
            "error: incident store {}: no such file\n",
            missing.display()
        )
    );
    assert!(!missing.exists(), "a reader must not create the store");

    // An empty store.
    let db = dir.path().join("heal.db");
    remediate_store_create(&db);
    let dbs = db.to_str().unwrap();
    let o = heal(&["incidents", "list", "--db", dbs]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "no incidents\n");
    let o = heal(&["incidents", "show", "inc-000001", "--db", dbs]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        format!("error: no incident \"inc-000001\" in {dbs}\n")
    );
    let o = heal(&["incidents", "list", "--db", dbs, "--status", "shut"]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        "error: --status \"shut\": expected open, resolved or closed\n"
    );
    let o = heal(&["incidents", "list", "--db", dbs, "--cursor", "x"]);
    assert_eq!(o.status.code(), Some(64));
}

/// Creates an empty store the way heal does: a replay of nothing would
/// need a dataset, so open it through the library.
fn remediate_store_create(db: &Path) {
    store::Store::open(db).unwrap();
}

/// GET over plain HTTP/1.1 with the std library; returns (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[test]
fn the_report_feed_over_http() {
    let dir = tempfile::tempdir().unwrap();
    report_feed_over_http(&dir.path().join("heal.db"), dir.path());
}

#[test]
fn the_report_feed_over_http_from_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg = postgres();
    report_feed_over_http(Path::new(&pg.url()), dir.path());
}

fn report_feed_over_http(db: &Path, dir: &Path) {
    replay_into(db, &dir.join("r1"));
    // heal watch serving the store; no Prometheus needed for the feed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_heal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["watch", "--prometheus", "http://127.0.0.1:9"])
        .args(["--runbooks", "runbooks", "--backfill", "0s"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--db")
        .arg(db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "heal watch did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let (status, body) = http_get(port, "/api/incidents?service=payments&status=resolved");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = page["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert!(list.iter().all(|i| i["service"] == "payments"));
    let (status, body) = http_get(port, "/api/incidents?limit=2");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, page["incidents"].as_array().unwrap().len()),
        (200, 2)
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, body) = http_get(port, &format!("/api/incidents?limit=2&cursor={cursor}"));
    let next: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_ne!(next["incidents"][0]["id"], page["incidents"][0]["id"]);
    let (status, body) = http_get(port, "/api/incidents?status=shut");
    assert_eq!(status, 400);
    assert!(body.contains("expected open, resolved or closed"), "{body}");

    // The HTML report, with the chart drawn from the stored evidence.
    let (status, html) = http_get(port, "/incidents/inc-000001");
    assert_eq!(status, 200);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("<svg") && html.contains("<polyline"),
        "no chart"
    );
    assert!(!html.contains("<script"));
    let (status, _) = http_get(port, "/incidents/inc-999999");
    assert_eq!(status, 404);
    let (status, one) = http_get(port, "/api/incidents/inc-000001");
    assert_eq!(status, 200);
    assert!(one.contains("\"status\":\"resolved\""), "{one}");

    // The Atom feed of closed incidents, linking to the HTML reports.
    let (status, atom) = http_get(port, "/feed.atom");
    assert_eq!(status, 200);
    assert!(
        atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\""),
        "{atom}"
    );
    assert_eq!(atom.matches("<entry>").count(), 5, "{atom}");
    assert!(
        atom.contains(&format!("http://127.0.0.1:{port}/incidents/inc-000001")),
        "{atom}"
    );

    let _ = child.kill();
    let _ = child.wait();
}

// ---- Learning from outcomes: marks by the CLI and through watch's API ----

/// A dataset of one series `latency{service="api"}`: 4,000 minutes of
/// noise around 10 with 30 spikes of 3.5 to 7 sigma, graded, so that some
/// score just above the runbook's threshold and some well above it.
fn graded_spikes_dataset(dir: &Path) -> std::path::PathBuf {
    use std::fmt::Write as _;
    let mut rng = SplitMix64::new(11);
    let mut csv = String::from("timestamp,value\n");
    for i in 0..4000u32 {
        let mut v = 10.0 + normal(&mut rng);
        if i >= 500 && (i - 500) % 110 == 0 && (i - 500) / 110 < 30 {
            v += 3.5 + 3.5 * f64::from((i - 500) / 110) / 29.0;
        }
        let (d, m) = (i / 1440, i % 1440);
        let _ = writeln!(
            csv,
            "2026-01-{:02} {:02}:{:02}:00,{v:.4}",
            5 + d,
            m / 60,
            m % 60
        );
    }
    let src = dir.join("latency.csv");
    std::fs::write(&src, csv).unwrap();
    let ds = dir.join("latency.parquet");
    let o = heal(&[
        "dataset",
        "import",
        src.to_str().unwrap(),
        "-o",
        ds.to_str().unwrap(),
        "--name",
        "latency",
        "--label",
        "service=api",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    ds
}

/// `N anomalies` from a replay's summary line.
fn anomalies(out: &str) -> usize {
    let line = out
        .lines()
        .find(|l| l.starts_with("replayed "))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    let before = line.split(" anomalies").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn false_alarms_marked_with_the_cli_make_the_next_replay_fire_less() {
    let dir = tempfile::tempdir().unwrap();
    let ds = graded_spikes_dataset(dir.path());
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("latency.yaml"),
        "signals:
  - name: latency
    query: latency
    detector: { direction: up, threshold: 0.2, reset_threshold: 0.1 }
rules:
  - name: latency-high
    when: { signal: latency, direction: up, for: 0s }
    then:
      - action: restart
        target: deployment/{{service}}
",
    )
    .unwrap();
    let db = dir.path().join("heal.db");
    let dbs = db.to_str().unwrap();
    let replay = || {
        let o = heal(&[
            "replay",
            ds.to_str().unwrap(),
            "--runbooks",
            runbooks.to_str().unwrap(),
            "--quiet",
            "--db",
            dbs,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let first = replay();
    let before = anomalies(&stdout(&first));
    let incidents: Vec<String> = ids(&stdout(&first))
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert!(incidents.len() >= 8, "{}", stdout(&first));
    // A person says these were false alarms: each one a step of +0.02, up
    // to the bound +0.15 (the eighth step is cut to it).
    for (k, id) in incidents.iter().take(8).enumerate() {
        let o = heal(&[
            "incidents",
            "mark",
            id,
            "--false-alarm",
            "--note",
            "load test",
            "--db",
            dbs,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let want = format!(
            "latency: threshold offset {:+.2} -> {:+.2}",
            0.02 * k as f64,
            (0.02 * (k + 1) as f64).min(0.15)
        );
        assert!(stdout(&o).starts_with(&want), "{want}: {}", stdout(&o));
    }
    // Twice the same incident: refused, the offset stays.
    let o = heal(&[
        "incidents",
        "mark",
        &incidents[0],
        "--false-alarm",
        "--db",
        dbs,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("already marked false_alarm"),
        "{}",
        stdout(&o)
    );
    let o = heal(&[
        "incidents",
        "mark",
        "inc-999999",
        "--false-alarm",
        "--db",
        dbs,
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no incident \"inc-999999\""),
        "{}",
        stderr(&o)
    );

    let o = heal(&["incidents", "sensitivity", "--db", dbs, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["offsets"]["latency"], 0.15, "{v}");
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.len(), 8, "{v}");
    assert_eq!(history[0]["reason"], "false_alarm");
    assert_eq!(history[0]["incident"], incidents[0].as_str());
    assert_eq!(history[0]["note"], "load test");

    // The next replay loads the offset and fires less on the same data.
    let second = replay();
    assert!(
        stderr(&second).contains("learned threshold offsets: latency +0.15"),
        "{}",
        stderr(&second)
    );
    let after = anomalies(&stdout(&second));
    assert!(after < before, "{before} anomalies, then {after}");
}

/// POST with an optional bearer token and JSON body; returns (status, body).
fn http_post(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[test]
fn marks_through_watch_api_are_recorded_and_applied_at_once() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("heal.db");
    replay_into(&db, &dir.path().join("r1"));
    // heal watch on that store, against a Prometheus nobody runs (port 9):
    // the API is what is tested.
    let mut child = Command::new(env!("CARGO_BIN_EXE_heal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["watch", "--prometheus", "http://127.0.0.1:9"])
        .args(["--runbooks", "runbooks", "--backfill", "0s"])
        .args(["--query-timeout", "200ms", "--listen", "127.0.0.1:0"])
        .args(["--api-token-env", "HEAL_TEST_TOKEN"])
        .env("HEAL_TEST_TOKEN", "s3cret")
        .arg("--db")
        .arg(&db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines
            .next()
            .expect("heal watch exited before listening")
            .unwrap();
        if let Some(rest) = line.split("metrics on http://127.0.0.1:").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let path = "/api/incidents/inc-000005/false-alarm";
    let (status, body) = http_post(port, path, None, "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_post(port, path, Some("s3cret"), r#"{"note":"planned load"}"#);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["already_marked"], false, "{v}");
    assert_eq!(v["adjustment"]["signal"], "http_request_rate", "{v}");
    assert_eq!(v["adjustment"]["new"], 0.02, "{v}");
    // Applied at once: the gauge of the running watch says so.
    let (_, metrics) = http_get(port, "/metrics");
    assert!(
        metrics.contains("heal_signal_threshold_offset{signal=\"http_request_rate\"} 0.02"),
        "{metrics}"
    );
    let (status, body) = http_post(port, path, Some("s3cret"), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"already_marked\":true"), "{body}");
    let (status, body) = http_post(
        port,
        "/api/incidents/inc-999999/false-alarm",
        Some("s3cret"),
        "",
    );
    assert_eq!(status, 404, "{body}");

    let (status, body) = http_post(
        port,
        "/api/missed",
        Some("s3cret"),
        r#"{"signal":"no_such_signal","at":"-1h"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no signal \\\"no_such_signal\\\""), "{body}");
    let (status, body) = http_post(
        port,
        "/api/missed",
        Some("s3cret"),
        r#"{"signal":"http_request_rate","at":"-1h","note":"lunch peak missing"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["adjustment"]["old"].as_f64(),
            v["adjustment"]["new"].as_f64()
        ),
        (Some(0.02), Some(0.0)),
        "{v}"
    );
    let (_, metrics) = http_get(port, "/metrics");
    assert!(
        metrics.contains("heal_signal_threshold_offset{signal=\"http_request_rate\"} 0\n"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // Both marks are in the store's history.
    let o = heal(&["incidents", "sensitivity", "--db", db.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("false_alarm inc-000005"), "{out}");
    assert!(out.contains("lunch peak missing"), "{out}");
    assert_eq!(out.matches("http_request_rate").count(), 3, "{out}");
}
