//! Messages a new user meets on the way: each says what to do next, and
//! none points at something that is not there.

use std::process::Command;

const HEAL: &str = env!("CARGO_BIN_EXE_heal");

fn run(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String, String) {
    let o = Command::new(HEAL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn replaying_a_csv_points_to_the_import() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nyc_taxi.csv"),
        "timestamp,value\n2014-07-01 00:00:00,1\n",
    )
    .unwrap();
    let runbooks = concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks");
    let (code, _, err) = run(
        &["replay", "nyc_taxi.csv", "--runbooks", runbooks],
        dir.path(),
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("not a heal dataset (it looks like a CSV file): import it first with `heal dataset import nyc_taxi.csv -o DATASET.parquet --format nab`"),
        "{err}"
    );
    assert!(!err.contains("PAR1"), "{err}");
}

#[test]
fn params_that_no_signal_takes_are_called_out() {
    let dir = tempfile::tempdir().unwrap();
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("r.yaml"),
        "signals:
  - name: http_latency_p99_seconds
    query: q
    detector: {threshold: 0.5}
rules:
  - name: r
    when: {signal: http_latency_p99_seconds}
    then:
      - {action: restart, target: deployment/x}
",
    )
    .unwrap();
    std::fs::write(dir.path().join("params.yaml"), "threshold: 0.3\n").unwrap();
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/synth-42.parquet");
    let (code, _, err) = run(
        &[
            "replay",
            dataset,
            "--runbooks",
            "runbooks",
            "--params",
            "params.yaml",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: --params params.yaml: every signal sets its own detector:, so these settings change nothing"),
        "{err}"
    );
    assert!(!err.lines().any(|l| l.trim_end().ends_with(':')), "{err}");
}

#[test]
fn bench_storm_prints_no_path_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let small = [
        "bench",
        "storm",
        "--services",
        "5",
        "--instances",
        "2",
        "--seconds",
        "2",
    ];
    let (code, out, err) = run(&small, dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("(decision log in a temporary file, removed; --log FILE keeps it)"),
        "{out}"
    );
    // Every absolute path it prints exists.
    for word in out.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        if word.starts_with('/') {
            assert!(
                std::path::Path::new(word).exists(),
                "{word} printed but gone:\n{out}"
            );
        }
    }
    let log = dir.path().join("decisions.jsonl");
    let mut args = small.to_vec();
    args.extend(["--log", log.to_str().unwrap()]);
    let (code, out, err) = run(&args, dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("(decision log {})", log.display())),
        "{out}"
    );
    assert!(log.exists());
}

/// The bundled replay's memory leak (`inc-000004`) is not reported
/// resolved while the series still climbs: the adapting detector's
/// excursion ends at 03:30, but the incident stays open until the dataset's
/// restart brings the series back to its band from before the leak (08:00),
/// and then reads "Ended", not "Resolved", since no step recovered it.
#[test]
fn the_bundled_leak_is_not_resolved_while_it_climbs() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, _, err) = run(
        &[
            "replay",
            &format!("{root}/datasets/synth-42.parquet"),
            "--runbooks",
            &format!("{root}/runbooks"),
            "--report",
            "out",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    let md = std::fs::read_to_string(dir.path().join("out/inc-000004.md")).unwrap();
    assert!(
        md.starts_with("# inc-000004: search process_memory_bytes"),
        "{md}"
    );
    assert!(!md.contains("**Resolved**"), "{md}");
    assert!(
        md.contains("**Ended** at 2026-01-08T08:00:00Z after 5h57m: the series came back to its band from before the incident without a step verified as recovering it."),
        "{md}"
    );
    // Every verification after the detector stopped flagging it says the
    // series was still out of its band.
    let jsonl = std::fs::read_to_string(dir.path().join("out/incidents.jsonl")).unwrap();
    let leak: serde_json::Value = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["id"] == "inc-000004")
        .unwrap();
    assert_eq!(leak["resolved"], "2026-01-08T08:00:00Z");
    for a in leak["actions"].as_array().unwrap() {
        assert_eq!(a["verification"]["outcome"], "not_recovered", "{a}");
    }
}
