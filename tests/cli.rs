//! Integration tests of the `heal` binary: each runs the real command line
//! on files in a temporary directory and checks what it printed and wrote.

use std::path::{Path, PathBuf};

mod common;

use common::{heal, stderr, stdout};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the golden file, or rewrites the golden file when
/// `UPDATE_GOLDEN=1`.
fn check_golden(actual: &str, golden: &Path) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(golden, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (UPDATE_GOLDEN=1 creates it)",
            golden.display()
        )
    });
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{} differs from the output (first differing line: {:?}); run with UPDATE_GOLDEN=1 to accept\n--- actual ---\n{actual}",
            golden.display(),
            first.map(|i| i + 1)
        );
    }
}

#[test]
fn every_bundled_runbook_is_valid() {
    let o = heal(&["runbooks", "check", "runbooks"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: 3 files, 4 signals, 6 rules\n");
}

#[test]
fn a_bad_runbook_exits_64_and_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "signals:\n  - name: up\n    query: up\nrules:\n  - name: r\n    when:\n      signal: down\n    then:\n      - action: restart\n        target: \"{{service}}\"\n",
    )
    .unwrap();
    let o = heal(&["runbooks", "check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    let file = dir.path().join("bad.yaml");
    assert!(
        err.contains(&format!(
            "{}:7:7: rules[0].when.signal: undefined signal \"down\" (defined: up)",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn runbook_schema_is_json_with_the_rule_fields() {
    let o = heal(&["runbooks", "schema"]);
    assert!(o.status.success());
    let schema: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = schema.to_string();
    for field in [
        "signals",
        "rules",
        "cooldown",
        "max_attempts",
        "recovered_when",
        "argv",
    ] {
        assert!(text.contains(field), "schema lacks {field}");
    }
}

#[test]
fn score_writes_one_row_per_input_row_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..400 {
        // A flat-ish series with one big spike, a repeated and a backwards timestamp.
        let (h, m) = (i / 60, i % 60);
        let v = if i == 300 {
            500.0
        } else {
            10.0 + (i % 7) as f64 * 0.1
        };
        csv.push_str(&format!("2024-01-01 {h:02}:{m:02}:00,{v}\n"));
        if i == 100 {
            csv.push_str(&format!("2024-01-01 {h:02}:{m:02}:00,{v}\n"));
        }
        if i == 200 {
            csv.push_str("2024-01-01 00:00:00,10\n");
        }
    }
    std::fs::write(&input, &csv).unwrap();
    let out = dir.path().join("out.csv");
    let o = heal(&[
        "score",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 rows not scored (duplicate: 1, out_of_order: 1)"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score");
    let inputs: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(lines.len() - 1, inputs.len());
    let mut spike_score = 0.0;
    for (row, input) in lines[1..].iter().zip(&inputs) {
        let (prefix, score) = row.rsplit_once(',').unwrap();
        assert_eq!(prefix, *input);
        let s: f64 = score.parse().unwrap();
        assert!((0.0..=1.0).contains(&s));
        if input.starts_with("2024-01-01 05:00:00,500") {
            spike_score = s;
        }
    }
    assert!(spike_score > 0.9, "the spike scored {spike_score}");
}

#[test]
fn score_rejects_a_bad_csv_naming_row_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(
        &input,
        "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,abc\n",
    )
    .unwrap();
    let out = dir.path().join("out.csv");
    let o = heal(&[
        "score",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: reading {}: row 3, column \"value\": cannot parse \"abc\" as a number",
            input.display()
        )
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no partial or temporary file"
    );
}

#[test]
fn bench_nab_scores_a_small_corpus() {
    // The detector should find the spike early in its window.
    let dir = small_nab_corpus();
    let o = heal(&["bench", "nab", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("2 files, 4000 points, 1 windows"), "{out}");
    let standard = out.lines().find(|l| l.starts_with("standard")).unwrap();
    let cols: Vec<&str> = standard.split_whitespace().collect();
    // profile, best threshold, best score, counts, default threshold, score, counts
    let best: f64 = cols[2].parse().unwrap();
    assert!(best > 50.0, "{standard}");
    assert_eq!(cols[3], "1/0/0", "{standard}");
    assert!(out.contains("points/s"), "{out}");
}

#[test]
fn bundled_dataset_is_what_the_documented_command_makes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth.parquet");
    let o = heal(&[
        "dataset",
        "synth",
        "--seed",
        "42",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let made = std::fs::read(&out).unwrap();
    let bundled = std::fs::read(root().join("datasets/synth-42.parquet")).unwrap();
    assert!(made == bundled, "datasets/synth-42.parquet is stale: regenerate it with `heal dataset synth --seed 42 -o datasets/synth-42.parquet`");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("synth.truth.json")).unwrap(),
        std::fs::read_to_string(root().join("datasets/synth-42.truth.json")).unwrap()
    );
}

#[test]
fn replay_of_the_bundled_dataset_matches_the_golden_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let o = heal(&[
        "replay",
        "datasets/synth-42.parquet",
        "--runbooks",
        "runbooks",
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let incidents = std::fs::read_to_string(report.join("incidents.jsonl")).unwrap();
    check_golden(
        &incidents,
        &root().join("tests/golden/replay-synth-42.jsonl"),
    );
    // The printed summary (incident table, counters, evaluation) is golden too,
    // less the last line, which names the temporary report directory.
    let summary = stdout(&o);
    let summary: Vec<&str> = summary
        .lines()
        .filter(|l| !l.starts_with("wrote "))
        .collect();
    check_golden(
        &(summary.join("\n") + "\n"),
        &root().join("tests/golden/replay-synth-42.txt"),
    );
    // One Markdown report per incident, named by id.
    let n = incidents.lines().count();
    let reports = std::fs::read_dir(&report).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "md")
    });
    assert_eq!(reports.count(), n);
    // And one HTML report each, every one with its signal's chart (the
    // replay's pipeline recorded evidence for every incident).
    for line in incidents.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["id"].as_str().unwrap();
        let page = std::fs::read_to_string(report.join(format!("{id}.html"))).unwrap();
        assert!(page.contains("<polyline class=\"series\""), "{id}");
        assert!(page.contains("<polygon class=\"band\""), "{id}");
    }
    // The Atom feed lists the closed incidents, linking to those reports.
    let feed = std::fs::read_to_string(report.join("feed.atom")).unwrap();
    let closed = incidents
        .lines()
        .filter(|l| l.contains("\"status\":\"resolved\""))
        .count();
    assert_eq!(feed.matches("<entry>").count(), closed);
    assert!(feed.starts_with("<?xml"));
    assert!(feed.contains("<id>file://"));
}

#[test]
fn replay_finds_the_injected_faults() {
    // Independent of the golden file: the bundled runbooks catch at least the
    // spike and the level shift of the bundled dataset.
    let o = heal(&[
        "replay",
        "datasets/synth-42.parquet",
        "--runbooks",
        "runbooks",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.contains("windows detected"))
        .unwrap();
    let detected: usize = line
        .split("windows detected: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(detected >= 3, "{line}");
}

#[test]
fn bench_storm_holds_every_limit_and_records_every_suppression() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "bench",
            "storm",
            "--services",
            "40",
            "--instances",
            "5",
            "--seconds",
            "10",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("steps decided: 200"), "{text}");
    // 10 % of 5 instances rounds down to 0, but one is always allowed: the
    // blast radius holds each service to one instance at once.
    assert!(text.contains("worst per service 1 (limit 2)"), "{text}");
    assert!(
        text.contains("every limit held; every suppression has its reason"),
        "{text}"
    );

    // The same storm recorded in an incident store.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("storm.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heal"))
        .args([
            "bench",
            "storm",
            "--services",
            "10",
            "--instances",
            "3",
            "--seconds",
            "5",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("incident store"), "{text}");
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["incidents", "list", "--limit", "100", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let rows = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with("inc-"))
        .count();
    assert_eq!(rows, 30, "{}", String::from_utf8_lossy(&list.stdout));
}

/// A two-file corpus in NAB layout: one series with a labelled spike, one
/// clean series.
fn small_nab_corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/cat");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(dir.path().join("labels")).unwrap();
    let mut a = String::from("timestamp,value\n");
    let mut b = String::from("timestamp,value\n");
    for i in 0..2000u32 {
        let t = format!(
            "2024-01-{:02} {:02}:{:02}:00",
            1 + i / 1440,
            i / 60 % 24,
            i % 60
        );
        let noise = ((i * 7919) % 13) as f64 / 13.0;
        let va = if i == 1500 { 100.0 } else { 10.0 + noise };
        a.push_str(&format!("{t},{va}\n"));
        b.push_str(&format!("{t},{}\n", 10.0 + noise));
    }
    std::fs::write(data.join("a.csv"), a).unwrap();
    std::fs::write(data.join("b.csv"), b).unwrap();
    std::fs::write(
        dir.path().join("labels/combined_windows.json"),
        r#"{"cat/a.csv": [["2024-01-02 00:50:00.000000", "2024-01-02 01:30:00.000000"]], "cat/b.csv": []}"#,
    )
    .unwrap();
    dir
}

#[test]
fn bench_nab_detector_all_prints_every_detector_side_by_side() {
    let dir = small_nab_corpus();
    let o = heal(&[
        "bench",
        "nab",
        dir.path().to_str().unwrap(),
        "--detector",
        "all",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in [
        "adaptive",
        "sensitive",
        "changepoint",
        "seasonal",
        "ensemble",
        "novelty",
        "nab",
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"));
        // name, then (threshold, score, tp/fn/fp) for three profiles, the
        // configuration's own threshold and its standard score, then the
        // time per point.
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 13, "{line}");
        let ns: f64 = cols[12].parse().unwrap();
        assert!(ns > 0.0, "{line}");
    }
    // The spike is plain: the adaptive detector and the ensemble find it.
    for name in ["adaptive", "ensemble"] {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        assert_eq!(line.split_whitespace().nth(3), Some("1/0/0"), "{line}");
    }
}

#[test]
fn watch_refuses_a_docker_socket_that_does_not_exist() {
    let o = heal(&[
        "watch",
        "--prometheus",
        "http://127.0.0.1:9",
        "--runbooks",
        "runbooks",
        "--docker",
        "/nonexistent/docker.sock",
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--docker: docker socket /nonexistent/docker.sock"),
        "{}",
        stderr(&o)
    );
}

/// Nine levels of ten aliases: 10^9 strings once expanded (issue 10, 1).
fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [\"lol\"]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

#[test]
fn every_yaml_entry_point_refuses_an_alias_bomb_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.yaml");
    std::fs::write(&bomb, billion_laughs()).unwrap();
    let bomb_s = bomb.to_str().unwrap();
    let dataset = root().join("datasets/synth-42.parquet");
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(runbooks.join("bomb.yaml"), billion_laughs()).unwrap();
    let in_runbooks = runbooks.join("bomb.yaml");
    let expected = |file: &Path| {
        format!(
            "{}:6:25: parsing yaml: aliases expand to more than 100000 nodes (an alias bomb?): refused at this alias",
            file.display()
        )
    };
    let cases: [(&str, Vec<&str>, &Path); 4] = [
        (
            "runbooks check",
            vec!["runbooks", "check", runbooks.to_str().unwrap()],
            &in_runbooks,
        ),
        (
            "replay --params",
            vec![
                "replay",
                dataset.to_str().unwrap(),
                "--runbooks",
                "runbooks",
                "--params",
                bomb_s,
            ],
            &bomb,
        ),
        (
            "agent --config",
            vec!["agent", "--listen", "127.0.0.1:0", "--config", bomb_s],
            &bomb,
        ),
        (
            "supervise --config",
            vec!["supervise", "--config", bomb_s],
            &bomb,
        ),
    ];
    for (what, args, file) in cases {
        let o = heal(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(64), "{what}: {err}");
        assert!(err.contains(&expected(file)), "{what}: {err}");
    }
}

#[test]
fn a_corrupted_dataset_is_refused_by_name_and_rewrite_adds_the_hash() {
    // Issue 10, 7: byte-flipped copies of synth-42.parquet loaded silently.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.parquet");
    let o = heal(&[
        "dataset",
        "rewrite",
        "datasets/synth-42.parquet",
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundled = std::fs::read(root().join("datasets/synth-42.parquet")).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    assert!(bytes == bundled, "rewriting the bundled dataset changed it");
    bytes[bundled.len() / 2] ^= 0x04;
    let flipped = dir.path().join("flipped.parquet");
    std::fs::write(&flipped, &bytes).unwrap();
    for args in [
        vec!["dataset", "info", flipped.to_str().unwrap()],
        vec![
            "replay",
            flipped.to_str().unwrap(),
            "--runbooks",
            "runbooks",
        ],
    ] {
        let o = heal(&args);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(
            err.contains(&format!(
                "reading {}: the file's bytes do not match its file hash",
                flipped.display()
            )),
            "{args:?}: {err}"
        );
    }
    // A damaged file-hash mark leaves the content hash alone: the file
    // looks like one from a heal before file hashes. It is refused with a
    // pointer to the rewrite, which checks it by its content and gives back
    // exactly the bundled file.
    let mut bytes = bundled.clone();
    let mark = bytes
        .windows(17)
        .rposition(|w| w == b"heal-file-sha256:")
        .expect("the bundled dataset has a file hash");
    bytes[mark] ^= 0x01;
    let unmarked = dir.path().join("unmarked.parquet");
    std::fs::write(&unmarked, &bytes).unwrap();
    let o = heal(&["dataset", "info", unmarked.to_str().unwrap()]);
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("but no file hash"), "{err}");
    assert!(err.contains("heal dataset rewrite"), "{err}");
    let repaired = dir.path().join("repaired.parquet");
    let o = heal(&[
        "dataset",
        "rewrite",
        unmarked.to_str().unwrap(),
        "-o",
        repaired.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&repaired).unwrap() == bundled,
        "the rewrite did not restore the file"
    );
}

/// `heal completions`: bash really loads the script (`complete -p heal`
/// then names heal's function) and it completes subcommands and options;
/// zsh's and fish's scripts are theirs; an unknown shell is refused.
#[test]
fn shell_completions_load_in_bash_and_name_every_subcommand() {
    let bash = heal(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("heal.bash");
    std::fs::write(&script, stdout(&bash)).unwrap();
    // Source it, then ask for the words after `heal w` and `heal watch --rem`.
    let probe = format!(
        "source {}\ncomplete -p heal\nCOMP_WORDS=(heal w); COMP_CWORD=1; COMP_LINE='heal w'; COMP_POINT=6; _heal heal w heal; echo \"sub: ${{COMPREPLY[*]}}\"\nCOMP_WORDS=(heal watch --rem); COMP_CWORD=2; COMP_LINE='heal watch --rem'; COMP_POINT=16; _heal heal --rem watch; echo \"opt: ${{COMPREPLY[*]}}\"\n",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _heal heal"), "{text}");
    assert!(text.contains("sub: watch"), "{text}");
    assert!(
        text.contains("--remote-write") && text.contains("--remote-write-token-env"),
        "{text}"
    );
    let zsh = stdout(&heal(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef heal"), "{zsh}");
    let fish = stdout(&heal(&["completions", "fish"]));
    assert!(fish.contains("complete -c heal"), "{fish}");
    for sub in [
        "watch",
        "replay",
        "supervise",
        "incidents",
        "completions",
        "man",
    ] {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks {sub}");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks {sub}");
    }
    let bad = heal(&["completions", "tcsh"]);
    // clap's own usage error (as for every bad argument), naming the shells.
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("possible values: bash"),
        "{}",
        stderr(&bad)
    );
}

/// `heal man`: a roff page with a section per subcommand (nested ones
/// too) and their options, as `--help` gives them.
#[test]
fn the_man_page_has_every_subcommand_and_its_options() {
    let out = heal(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH heal 1"));
    for section in [
        "HEAL WATCH",
        "HEAL REPLAY",
        "HEAL BENCH NAB",
        "HEAL INCIDENTS LIST",
        "HEAL RUNBOOKS CHECK",
        "HEAL COMPLETIONS",
    ] {
        assert!(
            page.contains(&format!(".SH \"{section}\"")),
            "no {section} section"
        );
    }
    assert!(page.contains("remote\\-write"), "watch's options are in it");
}
