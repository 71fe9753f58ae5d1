//! `heal watch`'s control API and persisted guard state, driven through the
//! real binary and its own CLI (`heal silence ...`, `heal approve`).
//!
//! Prometheus is deliberately absent: evaluations fail ("no data") while
//! the loop, the API and the guard state keep working.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const HEAL: &str = env!("CARGO_BIN_EXE_heal");
const TOKEN: &str = "s3cret-token-for-tests";

struct Heal(Child);

impl Drop for Heal {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const RUNBOOK: &str = "signals:
  - name: lat
    query: lat
rules:
  - name: restart-on-latency
    when: {signal: lat, direction: up}
    then:
      - action: exec
        argv: [/bin/true]
    guards: {require_approval: true}
";

/// Starts `heal watch` against a Prometheus that is not there, keeping its
/// guard state in `guards.json`.
fn start(dir: &Path) -> (Heal, u16) {
    let state = dir.join("guards.json");
    start_with(dir, &["--state", state.to_str().unwrap()])
}

/// The same with other options for where the guard state goes.
/// heal picks its own port (`--listen 127.0.0.1:0`) and prints it: two
/// tests running at once cannot be handed the same one.
fn start_with(dir: &Path, extra: &[&str]) -> (Heal, u16) {
    let mut child = Command::new(HEAL)
        .args([
            "watch",
            "--prometheus",
            // Port 9 (discard): nothing answers there.
            "http://127.0.0.1:9",
        ])
        .arg("--runbooks")
        .arg(dir.join("runbooks"))
        .args([
            "--interval",
            "1s",
            "--backfill",
            "0s",
            "--query-timeout",
            "200ms",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .args(["--api-token-env", "HEAL_TEST_TOKEN"])
        .env("HEAL_TEST_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let heal = Heal(child);
    // "heal watching ... metrics on http://127.0.0.1:PORT/metrics; ..."
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("heal watch exited before listening")
            .unwrap();
        if let Some(rest) = line.split("metrics on http://127.0.0.1:").nth(1) {
            break rest.split('/').next().unwrap().parse::<u16>().unwrap();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (heal, port)
}

/// Runs a `heal` CLI command against the API on `port`.
fn cli(port: u16, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(HEAL);
    cmd.args(args)
        .args(["--api", &format!("http://127.0.0.1:{port}")])
        .env_remove("HEAL_API_TOKEN");
    if let Some(t) = token {
        cmd.env("HEAL_API_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn silences_persist_across_restarts_and_changes_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/r.yaml"), RUNBOOK).unwrap();
    let (heal, port) = start(dir.path());

    let add = [
        "silence",
        "add",
        "--matcher",
        "service=web",
        "--matcher",
        "instance=~web-.*",
        "--duration",
        "2h",
        "--by",
        "alice",
        "--comment",
        "deploying web",
    ];
    // No token, a wrong token: refused, nothing added.
    let o = cli(port, None, &add);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("401"), "{}", text(&o));
    let o = cli(port, Some("wrong"), &add);
    assert!(
        text(&o).contains("missing or wrong bearer token"),
        "{}",
        text(&o)
    );
    // A typo in a matcher is caught before any request.
    let o = cli(
        port,
        Some(TOKEN),
        &[
            "silence",
            "add",
            "--matcher",
            "service",
            "--duration",
            "1h",
            "--comment",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(text(&o).contains("expected NAME=VALUE"), "{}", text(&o));

    let o = cli(port, Some(TOKEN), &add);
    assert!(o.status.success(), "{}", text(&o));
    let added: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(added["id"], "sil-000001");
    assert_eq!(added["created_by"], "alice");
    assert_eq!(added["matchers"][1]["op"], "=~");

    // Approving an incident that has nothing parked is a clear error.
    let o = cli(port, Some(TOKEN), &["approve", "inc-000042", "--by", "bob"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        text(&o).contains("incident inc-000042 has no step waiting for approval"),
        "{}",
        text(&o)
    );

    // heal restarts: the silence is still there (read back from --state).
    drop(heal);
    let state = std::fs::read_to_string(dir.path().join("guards.json")).unwrap();
    assert!(state.contains("deploying web"), "{state}");
    let (heal, port) = start(dir.path());
    let o = cli(port, None, &["silence", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["comment"], "deploying web");

    // Expired: gone from the list, and the next silence gets a new id.
    let o = cli(port, Some(TOKEN), &["silence", "expire", "sil-000001"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(port, None, &["silence", "list"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    let o = cli(port, Some(TOKEN), &add);
    let added: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(added["id"], "sil-000002");
    drop(heal);
}

#[test]
fn a_corrupt_guard_state_stops_heal_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/r.yaml"), RUNBOOK).unwrap();
    let state = dir.path().join("guards.json");
    std::fs::write(&state, "{\"attempts\": [ not json").unwrap();
    let o = Command::new(HEAL)
        .args(["watch", "--prometheus", "http://127.0.0.1:9"])
        .arg("--runbooks")
        .arg(dir.path().join("runbooks"))
        .arg("--state")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("guards.json"), "{}", text(&o));
    assert!(text(&o).contains("corrupt guard state"), "{}", text(&o));
    // Nothing was overwritten.
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{\"attempts\": [ not json"
    );
}

#[test]
fn with_an_incident_store_the_guard_state_lives_in_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/r.yaml"), RUNBOOK).unwrap();
    let db = dir.path().join("heal.db");
    let (heal, port) = start_with(dir.path(), &["--db", db.to_str().unwrap()]);
    let o = cli(
        port,
        Some(TOKEN),
        &[
            "silence",
            "add",
            "--matcher",
            "service=api",
            "--duration",
            "1h",
            "--by",
            "carol",
            "--comment",
            "migration",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Killed outright, restarted on the same store: the silence is back.
    drop(heal);
    let (heal, port) = start_with(dir.path(), &["--db", db.to_str().unwrap()]);
    let o = cli(port, None, &["silence", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["comment"], "migration", "{list}");
    assert!(!dir.path().join("guards.json").exists());
    drop(heal);
}
