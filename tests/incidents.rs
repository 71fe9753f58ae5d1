//! `heal replay --db` into a real SQLite file, then `heal incidents list`
//! and `heal incidents show` on it.

use std::path::Path;
use std::process::{Command, Output};

fn heal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running heal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

#[test]
fn replays_into_a_store_then_list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("heal.db");
    let dbs = db.to_str().unwrap();

    let first = replay_into(&db, &dir.path().join("r1"));
    assert!(
        first.contains(&format!("stored 5 incidents and 30 engine events in {dbs}")),
        "{first}"
    );
    // A second run numbers on from the store: no id is reused.
    let second = replay_into(&db, &dir.path().join("r2"));
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
    let report = std::fs::read_to_string(dir.path().join("r1/inc-000004.md")).unwrap();
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
    let o = heal(&["incidents", "list", "--db", dbs, "--status", "closed"]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        "error: --status \"closed\": expected open or resolved\n"
    );
    let o = heal(&["incidents", "list", "--db", dbs, "--cursor", "x"]);
    assert_eq!(o.status.code(), Some(64));
}

/// Creates an empty store the way heal does: a replay of nothing would
/// need a dataset, so open it through the library.
fn remediate_store_create(db: &Path) {
    remediate::store::Store::open(db).unwrap();
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
    let db = dir.path().join("heal.db");
    replay_into(&db, &dir.path().join("r1"));
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
        .arg(&db)
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
    let (status, body) = http_get(port, "/api/incidents?status=closed");
    assert_eq!(status, 400);
    assert!(body.contains("expected open or resolved"), "{body}");

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
