//! `heal demo` end to end: the real lab, a real Prometheus and `heal watch
//! --execute` as the demo starts them, a crash, and the recovery it prints.
//! About 40 s: a crash is caught by the runbook's hard limit on `up`, which
//! needs no history, so the demo's automatic warm-up for it is 20 s.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_heal"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn demo_heals_a_crash_and_leaves_nothing_behind() {
    let prometheus = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or("/usr/bin/prometheus".into());
    assert!(
        prometheus.exists(),
        "this test needs Prometheus at {}: `apt-get install prometheus` (CI does), or set PROMETHEUS_BIN",
        prometheus.display()
    );
    assert!(
        bin_dir().join("heal-lab").exists(),
        "heal-lab is missing beside heal: run `cargo test --workspace` (or `cargo build -p lab`)"
    );
    // The demo's temporary directory goes under this one, which must be
    // empty again afterwards.
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["demo", "--fault", "crash", "--prometheus-bin"])
        .arg(&prometheus)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let recovered = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("recovered: web answered / with 200 again ")?
                .split(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no recovery time printed:\n{stdout}"));
    assert!(recovered > 0.0 && recovered < 60.0, "{recovered}\n{stdout}");
    // heal's own probe (`service-unresponsive`) or the scrape (`service-down`)
    // sees the crash first, whichever comes first in the second.
    assert!(
        (stdout.contains("rule service-down") || stdout.contains("rule service-unresponsive"))
            && stdout.contains("instance=\"web-0\""),
        "no service-down or service-unresponsive incident on web:\n{stdout}"
    );
    assert!(
        stdout.contains("performed: exec ok"),
        "no restart:\n{stdout}"
    );
    assert!(
        stdout.contains("verified: recovered"),
        "no verification:\n{stdout}"
    );

    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
    let procs = processes_mentioning(&tmp.path().display().to_string());
    assert!(procs.is_empty(), "processes left running: {procs:#?}");
}

#[test]
fn demo_without_prometheus_says_how_to_get_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["demo", "--prometheus-bin", "/nonexistent/prometheus"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("apt-get install prometheus"), "{stderr}");
}
