//! `heal silence` as an operator uses it against a running `heal watch`:
//! a table by default (`--json` for the API's JSON), the token variable
//! named when it is unset, a warning for a window entirely in the past, and
//! expiring an ended silence is an error.
//!
//! Prometheus is deliberately absent: evaluations fail ("no data") while
//! the API keeps working.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const HEAL: &str = env!("CARGO_BIN_EXE_heal");
const TOKEN: &str = "silence-cli-token";

struct Heal(Child);

impl Drop for Heal {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `heal watch` on a free port (it prints which), no Prometheus.
fn start(dir: &Path) -> (Heal, u16) {
    std::fs::create_dir(dir.join("runbooks")).unwrap();
    std::fs::write(dir.join("runbooks/r.yaml"), common::APPROVAL_RUNBOOK).unwrap();
    let mut child = Command::new(HEAL)
        .args(["watch", "--prometheus", "http://127.0.0.1:9", "--runbooks"])
        .arg(dir.join("runbooks"))
        .args([
            "--interval",
            "1s",
            "--backfill",
            "0s",
            "--query-timeout",
            "200ms",
        ])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-token-env",
            "SILENCE_CLI_TOKEN",
        ])
        .env("SILENCE_CLI_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let heal = Heal(child);
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines.next().expect("heal watch exited").unwrap();
        if let Some(rest) = line.split("metrics on http://127.0.0.1:").nth(1) {
            break rest.split('/').next().unwrap().parse::<u16>().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (heal, port)
}

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

fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn silence_commands_speak_to_people() {
    let dir = tempfile::tempdir().unwrap();
    let (_heal, port) = start(dir.path());
    let add = [
        "silence",
        "add",
        "--matcher",
        "service=web",
        "--duration",
        "2h",
        "--by",
        "alice",
        "--comment",
        "deploying web",
    ];

    // No token: the variable is named, nothing is sent.
    let o = cli(port, None, &add);
    let (_, err) = out(&o);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("HEAL_API_TOKEN is not set"), "{err}");
    assert!(!err.contains("401"), "{err}");
    // A wrong token: refused, and said which variable held it.
    let o = cli(port, Some("wrong"), &add);
    let (_, err) = out(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err.contains("the token in HEAL_API_TOKEN was refused"),
        "{err}"
    );

    // A table, with times people read.
    let o = cli(port, Some(TOKEN), &add);
    let (table, err) = out(&o);
    assert!(o.status.success(), "{err}");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "STATE", "STARTS", "ENDS", "BY", "MATCHERS", "COMMENT"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("sil-000001  active  20"), "{row}");
    assert!(
        row.contains("alice") && row.ends_with("deploying web"),
        "{row}"
    );
    assert!(!table.contains("_ms") && !table.contains('{'), "{table}");

    // A window entirely in the past: accepted, with a warning.
    let o = cli(
        port,
        Some(TOKEN),
        &[
            "silence",
            "add",
            "--matcher",
            "service=db",
            "--starts-at",
            "2020-01-01T00:00:00Z",
            "--duration",
            "1h",
            "--comment",
            "too late",
        ],
    );
    let (_, err) = out(&o);
    assert!(
        err.contains(
            "warning: this silence ends at 2020-01-01T01:00:00Z, before now: it will mute nothing"
        ),
        "{err}"
    );

    // --json: the API's answer.
    let o = cli(port, None, &["silence", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["id"], "sil-000001", "{list}");

    // Expiring: once fine, twice an error.
    let o = cli(port, Some(TOKEN), &["silence", "expire", "sil-000001"]);
    assert!(o.status.success(), "{:?}", out(&o));
    assert!(out(&o).0.contains("sil-000001  ended"), "{:?}", out(&o));
    let o = cli(port, Some(TOKEN), &["silence", "expire", "sil-000001"]);
    let (_, err) = out(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("silence sil-000001 already ended at 20"),
        "{err}"
    );
}
