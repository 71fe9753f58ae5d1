//! Peer outliers end to end: a dataset written here (five replicas of one
//! service, one of which runs apart from its siblings while staying normal
//! for its own history) replayed through `heal replay` with and without a
//! `peer:` block on its signal.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use lab::rng::SplitMix64;

mod common;

use common::{heal, stderr, stdout};

/// Start of the data (2026-01-05T00:00:00Z) and its 15 s slot grid.
const START_SECS: i64 = 1_767_571_200;
const STEP_SECS: i64 = 15;
/// The slot from which `api-2` runs apart.
const APART_FROM: i64 = 400;

/// A long-form CSV: `latency` of five replicas of `api` on a common 15 s
/// grid, moving together (a shared component, spread 10) plus a little of
/// their own (spread 0.5); `api-2` runs 6 higher from [`APART_FROM`] on.
/// One more series, `queue` of another signal without `peer:`, shares
/// the timestamps: replay's slots hold both signals.
fn write_dataset(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("__name__,timestamp,service,instance,value\n");
    let mut noise = SplitMix64::new(42);
    for i in 0..600 {
        let ts = START_SECS + i * STEP_SECS;
        let shared = 100.0 + 10.0 * noise.noise();
        for k in 0..5 {
            let apart = if k == 2 && i >= APART_FROM { 6.0 } else { 0.0 };
            let v = shared + 0.5 * noise.noise() + apart;
            let _ = writeln!(csv, "latency,{ts},api,api-{k},{v:.4}");
        }
        let _ = writeln!(csv, "queue,{ts},api,api-1b,{:.4}", 5.0 + noise.noise());
    }
    let path = dir.join("peers.csv");
    std::fs::write(&path, csv).unwrap();
    let ds = dir.join("peers.parquet");
    let o = heal(&[
        "dataset",
        "import",
        "--format",
        "long",
        path.to_str().unwrap(),
        "-o",
        ds.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    ds
}

fn runbook(peer: bool) -> String {
    format!(
        "signals:
  - name: latency
    query: latency
    detector: {{direction: up}}
{}  - name: queue
    query: queue
rules:
  - name: replica-slow
    when: {{signal: latency, direction: up}}
    then:
      - {{action: restart, target: 'api/{{{{instance}}}}'}}
",
        if peer {
            "    peer: {threshold: 3.5, consecutive: 3}\n"
        } else {
            ""
        }
    )
}

fn replay(dir: &Path, ds: &Path, peer: bool) -> (Output, std::path::PathBuf) {
    let name = if peer { "with" } else { "without" };
    let runbooks = dir.join(format!("runbooks-{name}"));
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(runbooks.join("rb.yaml"), runbook(peer)).unwrap();
    let report = dir.join(format!("report-{name}"));
    let o = heal(&[
        "replay",
        ds.to_str().unwrap(),
        "--runbooks",
        runbooks.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (o, report)
}

#[test]
fn replay_opens_one_incident_for_the_replica_apart_only_with_peer() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write_dataset(dir.path());

    let (o, report) = replay(dir.path(), &ds, true);
    let out = stdout(&o);
    let jsonl = std::fs::read_to_string(report.join("incidents.jsonl")).unwrap();
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), 1, "one incident: {out}");
    let inc: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(inc["series"]["instance"], "api-2", "{inc}");
    assert_eq!(inc["direction"], "up");
    // It fired within a few slots of running apart: not before the third
    // (`consecutive: 3`), later only if a slot's noise broke the streak.
    let slot = (inc["onset_ms"].as_i64().unwrap() / 1000 - START_SECS) / STEP_SECS;
    assert!(
        (APART_FROM + 2..APART_FROM + 10).contains(&slot),
        "slot {slot}: {inc}"
    );
    let z = inc["peer_z"].as_f64().expect("the peers' robust z");
    assert!(z > 3.5, "{z}");
    assert!(
        out.contains("^ differs from its siblings (robust z "),
        "the summary says why: {out}"
    );
    let md = std::fs::read_to_string(report.join("inc-000001.md")).unwrap();
    assert!(
        md.contains("| Cause | differs from its siblings (robust z "),
        "{md}"
    );

    // The same data without `peer:`: every replica is normal for its own
    // history, so nothing opens.
    let (o, report) = replay(dir.path(), &ds, false);
    assert!(stdout(&o).contains("no incidents"), "{}", stdout(&o));
    let jsonl = std::fs::read_to_string(report.join("incidents.jsonl")).unwrap();
    assert_eq!(jsonl, "");
}
