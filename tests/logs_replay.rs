//! `heal record --log-source` and `heal replay --logs` through the binary:
//! a log file (two hours of a service's log, with event times, and a burst
//! of "connection refused" errors at 1h30) recorded into a log dataset,
//! then replayed alone and together with a series dataset, in event time.
//! A recording made while lines arrive holds exactly those lines.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{heal, stderr, stdout, Guard};
use lab::rng::SplitMix64;

/// 2026-01-05T00:00:00Z.
const T0_MS: i64 = 1_767_571_200_000;
const HOUR_S: i64 = 3_600;
/// The error burst: 1h30 to 1h35.
const BURST_S: (i64, i64) = (5_400, 5_700);
/// The latency bump of the series dataset: 0h30 to 0h40.
const BUMP_S: (i64, i64) = (1_800, 2_400);

fn stamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp_millis(T0_MS + secs * 1000)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Two hours of a service's log: a request line every 2 s, a rare refused
/// connection, and a burst of them in [`BURST_S`]. Returns the line count.
fn write_log(path: &Path) -> usize {
    let mut rng = SplitMix64::new(7);
    let mut text = String::new();
    let mut n = 0;
    for s in 0..2 * HOUR_S {
        if s % 2 == 0 {
            let ms = 5 + (rng.unit() * 40.0) as u32;
            text.push_str(&format!(
                "{} INFO web.http: GET /api/items/{} 200 in {ms} ms\n",
                stamp(s),
                rng.next_u64() % 10_000
            ));
            n += 1;
        }
        let burst = (BURST_S.0..BURST_S.1).contains(&s);
        if burst || rng.unit() < 0.004 {
            text.push_str(&format!(
                "{} ERROR web.db: connection to 10.0.0.{}:5432 refused\n",
                stamp(s),
                rng.next_u64() % 250
            ));
            n += 1;
        }
    }
    std::fs::write(path, text).unwrap();
    n
}

/// A long-form CSV of `app_latency` every 15 s for two hours, with a bump
/// in [`BUMP_S`].
fn write_series_csv(path: &Path) {
    let mut rng = SplitMix64::new(11);
    let mut text = String::from("timestamp,value,__name__,service,instance\n");
    for s in (0..2 * HOUR_S).step_by(15) {
        let bump = if (BUMP_S.0..BUMP_S.1).contains(&s) {
            80.0
        } else {
            0.0
        };
        let v = 100.0 + bump + common::normal(&mut rng) * 4.0;
        text.push_str(&format!(
            "{},{v:.3},app_latency,app,app\n",
            (T0_MS / 1000) + s
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn write_runbook(dir: &Path, log: &Path) -> PathBuf {
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("app.yaml"),
        format!(
            r#"log_sources:
  - name: app
    files: [{}]
    format:
      type: log_format
      log_format: "<Date> <Time> <Level> <Component>: <Content>"
      time: {{field: "Date,Time", format: "%Y-%m-%d %H:%M:%S"}}
signals:
  - name: app_errors
    logs: {{source: app, level: [ERROR], match: refused}}
    detector: {{direction: up, min_spread: 1}}
  - name: app_latency
    query: app_latency
    detector: {{direction: up, threshold: 0.3}}
rules:
  - name: dependency-refused
    when: {{signal: app_errors, direction: up}}
    then:
      - action: exec
        argv: [/bin/true]
  - name: slow
    when: {{signal: app_latency, direction: up}}
    then:
      - action: exec
        argv: [/bin/true]
"#,
            log.display()
        ),
    )
    .unwrap();
    runbooks
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The incidents of a report directory, as (signal, onset in seconds from
/// T0), in id order.
fn incidents(report: &Path) -> Vec<(String, i64)> {
    std::fs::read_to_string(report.join("incidents.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["signal"].as_str().unwrap().to_owned(),
                (v["onset_ms"].as_i64().unwrap() - T0_MS) / 1000,
            )
        })
        .collect()
}

/// `heal replay [DATASET] --logs LOGS` into `report`, which must succeed:
/// its output and stdout.
fn replay(
    dataset: Option<&Path>,
    logs: &Path,
    runbooks: &Path,
    report: &Path,
) -> (std::process::Output, String) {
    let mut args = vec!["replay"];
    if let Some(d) = dataset {
        args.push(path(d));
    }
    args.extend([
        "--logs",
        path(logs),
        "--runbooks",
        path(runbooks),
        "--report",
        path(report),
        "--quiet",
    ]);
    let o = heal(&args);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    (o, out)
}

#[test]
fn a_recorded_log_replays_in_event_time_alone_and_with_series() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("app.log");
    let written = write_log(&log);
    let runbooks = write_runbook(d, &log);

    // Record what the file holds, stopping once nothing more arrives.
    let rec = d.join("rec.logs.parquet");
    let o = heal(&[
        "record",
        "--runbooks",
        path(&runbooks),
        "--log-source",
        "app",
        "--from-start",
        "--idle",
        "1s",
        "-o",
        path(&rec),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("wrote {written} log lines")),
        "{written}: {out}"
    );
    assert!(
        out.contains(&format!(
            "app: {written} lines read, {written} with their own event time"
        )),
        "{out}"
    );
    let recorded = ingest::LogDataset::read(&rec).unwrap();
    assert_eq!(recorded.lines.len(), written);
    assert_eq!(recorded.lines[0].ts_ms, T0_MS);
    assert_eq!(recorded.streams[0].labels.get("service"), Some("app"));

    // Ground truth for the log signal's series: the burst.
    std::fs::write(
        d.join("rec.logs.truth.json"),
        format!(
            r#"{{"windows": [{{"series": "app_errors{{instance=\"app\",service=\"app\"}}", "start": "{}", "end": "{}"}}]}}"#,
            stamp(BURST_S.0).replace(' ', "T") + "Z",
            stamp(BURST_S.1 + 60).replace(' ', "T") + "Z"
        ),
    )
    .unwrap();

    // The logs alone: one incident, at the burst's event time (the whole
    // file was read within a second: arrival time would put every line in
    // one slot), with the lines in its report.
    let report = d.join("logs-only");
    let (o, out) = replay(None, &rec, &runbooks, &report);
    assert!(
        out.contains(&format!(
            "replayed {written} log lines of 1 sources in 481 slots of 15s"
        )),
        "{out}"
    );
    assert!(out.contains("precision 1.000  recall 1.000"), "{out}");
    let found = incidents(&report);
    assert_eq!(found.len(), 1, "{out}");
    assert_eq!(found[0].0, "app_errors");
    assert!(
        (BURST_S.0..BURST_S.0 + 120).contains(&found[0].1),
        "onset {} s: {out}",
        found[0].1
    );
    let md = std::fs::read_to_string(report.join("inc-000001.md")).unwrap();
    assert!(md.contains("## What the log said"), "{md}");
    assert!(md.contains("ERROR web.db: connection to 10.0.0."), "{md}");
    assert!(md.contains(r"connection to &lt;\*&gt; refused"), "{md}");
    assert!(!stderr(&o).contains("note:"), "{}", stderr(&o));

    // With the series: both incidents, numbered in event-time order (the
    // latency bump at 0h30 before the burst at 1h30, although every log
    // line sits in a file read first).
    let csv = d.join("latency.csv");
    write_series_csv(&csv);
    let series = d.join("latency.parquet");
    let o = heal(&[
        "dataset",
        "import",
        path(&csv),
        "-o",
        path(&series),
        "--format",
        "long",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = d.join("both");
    let (_, out) = replay(Some(&series), &rec, &runbooks, &report);
    let found = incidents(&report);
    assert_eq!(found.len(), 2, "{out}");
    assert_eq!(found[0].0, "app_latency", "{out}");
    assert!(
        (BUMP_S.0..BUMP_S.0 + 120).contains(&found[0].1),
        "{found:?}"
    );
    assert_eq!(found[1].0, "app_errors", "{out}");
    assert!(
        (BURST_S.0..BURST_S.0 + 120).contains(&found[1].1),
        "{found:?}"
    );
}

#[test]
fn a_recording_holds_what_arrives_while_it_runs_and_only_that() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("app.log");
    // Lines there before the recording starts are not recorded (no
    // --from-start); they have no event time of their own.
    std::fs::write(&log, "old line 1\nold line 2\n").unwrap();
    let runbooks = d.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("app.yaml"),
        format!(
            "log_sources:\n  - name: app\n    files: [{}]\n    labels: {{service: web, team: payments}}\nsignals:\n  - name: app_lines\n    logs: {{source: app}}\n",
            log.display()
        ),
    )
    .unwrap();
    let rec = d.join("live.logs.parquet");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut child = Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["record", "--runbooks", path(&runbooks)])
            .args(["--log-source", "app", "--for", "60s", "-o", path(&rec)])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..7 {
        std::io::Write::write_all(&mut f, format!("new line {i}\n").as_bytes()).unwrap();
    }
    drop(f);
    std::thread::sleep(Duration::from_millis(1_500));
    // SIGINT: what was read is written, and the command succeeds.
    assert!(Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("stopped because it was interrupted"), "{out}");
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let recorded = ingest::LogDataset::read(&rec).unwrap();
    let lines: Vec<&str> = recorded.lines.iter().map(|l| l.line.as_str()).collect();
    let want: Vec<String> = (0..7).map(|i| format!("new line {i}")).collect();
    assert_eq!(lines, want);
    // Stamped when read, within the recording.
    for l in &recorded.lines {
        assert!(
            (before..=after).contains(&l.ts_ms),
            "{} not in {before}..{after}",
            l.ts_ms
        );
    }
    let (start, end) = (recorded.start_ms.unwrap(), recorded.end_ms.unwrap());
    assert!(before <= start && start < end && end <= after);
    let labels = &recorded.streams[0].labels;
    assert_eq!(labels.get("service"), Some("web"));
    assert_eq!(labels.get("team"), Some("payments"));
    assert_eq!(labels.get("instance"), Some("web"));
}

#[test]
fn record_and_replay_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runbooks = d.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("app.yaml"),
        "log_sources:\n  - name: app\n    files: [/tmp/x.log]\nsignals:\n  - name: app_lines\n    logs: {source: app}\n",
    )
    .unwrap();
    let o = heal(&[
        "record",
        "--runbooks",
        path(&runbooks),
        "--log-source",
        "ap",
        "-o",
        path(&d.join("x.parquet")),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--log-source \"ap\": the runbooks in")
            && stderr(&o).contains("declare no such log source (they declare: app)"),
        "{}",
        stderr(&o)
    );

    // A series dataset given as --logs says which it is.
    let o = heal(&[
        "replay",
        "--logs",
        "datasets/synth-42.parquet",
        "--runbooks",
        path(&runbooks),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "missing column \"line\" (this is a series dataset: give it as DATASET, not as --logs)"
        ),
        "{}",
        stderr(&o)
    );
    let o = heal(&["replay", "--runbooks", path(&runbooks)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
