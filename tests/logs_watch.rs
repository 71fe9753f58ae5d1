//! A file log source under `heal watch`, as an operator's logs treat it:
//! lines appended in bursts, the file rotated by rename-and-create (logrotate's
//! default) and by copytruncate, and heal itself SIGKILLed in the middle and
//! started again on the same `--log-state`. The count heal exports
//! (`heal_log_lines_total`, kept with the offsets) must equal the lines
//! written: none lost, none counted twice.
//!
//! Real components: the `heal` binary (a process to kill), real files and
//! renames on the local file system. Prometheus is not needed (the runbook
//! has only a log signal); heal is pointed at a port nobody listens on and
//! must keep counting logs all the same.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{free_port, log_heal_stderr, log_line, start_log_heal, wait_until};
use lab::http::client;

/// Appends `n` numbered lines (`from`, `from + 1`, ...) to `path`.
fn write_lines(path: &Path, from: usize, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for i in from..from + n {
        text.push_str(&log_line(i));
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// The value of the sample `name{labels}` in heal's `/metrics`.
fn metric(heal: SocketAddr, sample: &str) -> Option<f64> {
    let m = client::get(heal, "/metrics", Duration::from_secs(2))
        .ok()?
        .body_text();
    m.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// Waits until heal has counted exactly `want` lines, then checks the count
/// stays there (a line counted twice would show a moment later).
fn counted(heal: SocketAddr, dir: &Path, want: usize, what: &str) {
    let sample = r#"heal_log_lines_total{source="app"}"#;
    let deadline = Duration::from_secs(30);
    let t0 = std::time::Instant::now();
    let mut last = None;
    while t0.elapsed() < deadline {
        last = metric(heal, sample);
        if last == Some(want as f64) {
            break;
        }
        assert!(
            last.is_none_or(|v| v <= want as f64),
            "{what}: counted {last:?} lines, more than the {want} written\n{}",
            log_heal_stderr(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last,
        Some(want as f64),
        "{what}: lines counted after {deadline:?}\n{}",
        log_heal_stderr(dir)
    );
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        metric(heal, sample),
        Some(want as f64),
        "{what}: the count moved"
    );
}

#[test]
fn rotations_and_a_sigkill_of_heal_lose_no_line_and_count_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("app.log");
    std::fs::create_dir_all(d.join("runbooks")).unwrap();
    std::fs::write(
        d.join("runbooks/app.yaml"),
        format!(
            "log_sources:
  - name: app
    files: [{}]
    read_from: beginning
    format: {{type: log_format, log_format: \"<Level> <Content>\"}}
signals:
  - name: app_errors
    logs: {{source: app, level: [ERROR], match: refused}}
    detector: {{direction: up, limit_above: 1000000}}
  - name: app_lines
    logs: {{source: app}}
    detector: {{direction: up, limit_above: 1000000}}
",
            log.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let heal = SocketAddr::from(([127, 0, 0, 1], port));
    let mut written = 0;

    // Lines written before heal starts are read from the beginning.
    write_lines(&log, written, 2_000);
    written += 2_000;
    let mut watch = start_log_heal(d, port, 0);
    counted(heal, d, written, "the first lines");

    // Rename-and-create: the last lines of the old file, written just before
    // the rename and not yet read, are drained from its inode.
    write_lines(&log, written, 500);
    written += 500;
    std::fs::rename(&log, d.join("app.log.1")).unwrap();
    write_lines(&log, written, 500);
    written += 500;
    counted(heal, d, written, "after a rename rotation");
    assert_eq!(
        metric(heal, r#"heal_log_rotations_total{source="app"}"#),
        Some(1.0)
    );

    // SIGKILL with unread lines; while heal is down, more lines and a
    // rotation: the restarted heal finds the old file by its inode, finishes
    // it from the checkpoint, and reads the new one from its start.
    write_lines(&log, written, 300);
    written += 300;
    watch.0.kill().unwrap();
    watch.0.wait().unwrap();
    write_lines(&log, written, 200);
    written += 200;
    std::fs::rename(&log, d.join("app.log.2")).unwrap();
    write_lines(&log, written, 400);
    written += 400;
    watch = start_log_heal(d, port, 1);
    counted(
        heal,
        d,
        written,
        "after a SIGKILL and a rotation while down",
    );

    // copytruncate: once heal has read everything, the file is copied away
    // and truncated in place; the writer goes on at offset 0 with fewer bytes
    // than heal's offset.
    std::fs::copy(&log, d.join("app.log.3")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    write_lines(&log, written, 100);
    written += 100;
    counted(heal, d, written, "after copytruncate");
    assert_eq!(
        metric(heal, r#"heal_log_truncations_total{source="app"}"#),
        Some(1.0)
    );

    // The miner, across the restart (its templates are kept in the state
    // file): three statements, whatever their numbers and addresses.
    let errors = wait_until("the template gauge", Duration::from_secs(10), || {
        let m = client::get(heal, "/metrics", Duration::from_secs(2))
            .ok()?
            .body_text();
        m.contains("heal_log_templates{source=\"app\"}")
            .then_some(m)
    });
    let templates = errors
        .lines()
        .find_map(|l| l.strip_prefix("heal_log_templates{source=\"app\"}"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap();
    assert_eq!(templates, 3.0, "{errors}");
    drop(watch);
}
