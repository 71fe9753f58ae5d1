//! lab/README.md's lab, started as the README writes it, is what
//! lab/runbooks/lab.yaml's restart command reaches: the runbook's argv (with
//! `{{service}}` filled in) and the README's control commands, run as
//! written, all succeed. (They disagreed once: the runbook said
//! 127.0.0.1:19400, the README 19000, and every restart failed with exit 69.)
//!
//! The README's ports are fixed (18001, 18002, 19400): this test needs them
//! free.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_heal-lab");

fn lab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The body of the first fenced block of `fence` (` ```text `) after
/// `marker`.
fn block_after(text: &str, marker: &str, fence: &str) -> String {
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}"));
    let rest = &text[at..];
    let open = format!("```{fence}\n");
    let start = rest.find(&open).unwrap() + open.len();
    let len = rest[start..].find("```").unwrap();
    rest[start..start + len].to_owned()
}

/// Runs a README command line as written (`heal-lab` is the binary under
/// test; no shell).
fn run(dir: &std::path::Path, line: &str) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "heal-lab", "{line}");
    Command::new(BIN)
        .args(&words[1..])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The lab manager, shut down (then killed) when dropped.
struct Up(Child, String);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["shutdown", "--control", &self.1])
            .output();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_lab_runbook_restarts_a_lab_started_as_the_readme_says() {
    let readme = std::fs::read_to_string(lab_dir().join("README.md")).unwrap();
    let runbook = std::fs::read_to_string(lab_dir().join("runbooks/lab.yaml")).unwrap();
    let dir = common::TempDir::new("readme");

    // `lab.conf`, as the README gives it.
    let conf = block_after(&readme, "`lab.conf`, one service per line", "text");
    std::fs::write(dir.0.as_path().join("lab.conf"), conf).unwrap();
    // `heal-lab up ...`, as written, without its optional `[...]` parts.
    let up_block = block_after(&readme, "## `heal-lab up`", "sh");
    let up_line = up_block
        .lines()
        .find(|l| l.starts_with("heal-lab up"))
        .unwrap();
    let up_line: String = up_line
        .split('[')
        .map(|part| part.split_once(']').map_or(part, |(_, after)| after))
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = up_line.split_whitespace().collect();
    let control = words[words.iter().position(|w| *w == "--control").unwrap() + 1].to_owned();
    let mut child = Command::new(BIN)
        .args(&words[1..])
        .current_dir(dir.0.as_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up = Up(child, control.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("heal-lab up did not start (are ports 18001, 18002 and 19400 free?)");
        if line.starts_with("control listening on") {
            break;
        }
    }

    // The runbook's restart, its argv as written with `{{service}}` = web.
    let argv_line = runbook
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("argv: [heal-lab, restart"))
        .expect("the lab runbook restarts with heal-lab restart");
    let inner = argv_line
        .trim_start_matches("argv: [")
        .trim_end_matches(']');
    let argv: Vec<String> = inner
        .split(',')
        .map(|w| w.trim().trim_matches('"').replace("{{service}}", "web"))
        .collect();
    assert_eq!(argv[0], "heal-lab");
    let o = Command::new(BIN).args(&argv[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "the runbook's restart failed (exit {:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"name\":\"web\""));

    // The README's control commands, as written, in order.
    let cli = block_after(&readme, "### Control CLI", "sh");
    for line in cli.lines().filter(|l| l.starts_with("heal-lab ")) {
        let o = run(dir.0.as_path(), line);
        assert!(
            o.status.success(),
            "{line}: exit {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    drop(up);
}
