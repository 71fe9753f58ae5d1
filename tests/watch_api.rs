//! `heal watch` killed outright (SIGKILL) and restarted on the same
//! incident store: a silence added through its API is still there. This
//! needs the real binary (a process to kill); the API itself is tested
//! in-process in `tests/live_api.rs`.
//!
//! Prometheus is deliberately absent: evaluations fail ("no data") while
//! the loop, the API and the guard state keep working.

mod common;

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

/// Starts `heal watch` against a Prometheus that is not there, with
/// `extra` options (where the guard state goes). heal picks its own port (`--listen 127.0.0.1:0`) and prints it: two
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
fn with_an_incident_store_the_guard_state_lives_in_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/r.yaml"), common::APPROVAL_RUNBOOK).unwrap();
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
    // The CLI's own checks: a typo in a matcher is caught before any
    // request, a refused request is exit code 64.
    let typo = "silence add --matcher service --duration 1h --comment x";
    let unauthorized = "silence expire sil-000001";
    for (args, token, says) in [
        (typo, Some(TOKEN), "expected NAME=VALUE"),
        (unauthorized, None, "HEAL_API_TOKEN is not set"),
    ] {
        let args: Vec<&str> = args.split(' ').collect();
        let o = cli(port, token, &args);
        assert_eq!(o.status.code(), Some(64), "{}", text(&o));
        assert!(text(&o).contains(says), "{}", text(&o));
    }
    // Killed outright, restarted on the same store: the silence is back.
    drop(heal);
    let (heal, port) = start_with(dir.path(), &["--db", db.to_str().unwrap()]);
    let o = cli(port, None, &["silence", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["comment"], "migration", "{list}");
    assert!(!dir.path().join("guards.json").exists());
    drop(heal);
}
