//! README.md's commands, run exactly as written, and its figures kept in
//! step with what the commands print.
//!
//! Every command line of README.md's `sh` blocks and indented blocks is
//! extracted (continuation lines joined, the trailing `# comment` dropped).
//! A synopsis (`[--opt]`, `...`, `DIR`, `URL` and the like) is not a command.
//! Every other line must be listed in [`PLAN`]: run here, as written, in a
//! scratch directory that has what the README assumes (the bundled dataset
//! and runbooks, a NAB-style `nyc_taxi.csv` and windows file, a `heal.db`),
//! or skipped with the reason and the test that covers it instead. A new
//! README command therefore fails this test until it is run or explained.

use std::path::{Path, PathBuf};
use std::process::Command;

const HEAL: &str = env!("CARGO_BIN_EXE_heal");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Splits a command line as a POSIX shell would for the plain words,
/// single and double quotes, and backslash escapes used in the README; an
/// unquoted `>` redirects stdout to the next word. No expansion.
fn split(line: &str) -> (Vec<String>, Option<String>) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut redirect = false;
    let mut out = None;
    let mut push = |w: &mut String, in_word: &mut bool, redirect: &mut bool| {
        if *in_word {
            if *redirect {
                out = Some(std::mem::take(w));
                *redirect = false;
            } else {
                words.push(std::mem::take(w));
            }
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '>' if !in_word => redirect = true,
            c if c.is_whitespace() => push(&mut word, &mut in_word, &mut redirect),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    push(&mut word, &mut in_word, &mut redirect);
    (words, out)
}

/// Drops a trailing `# comment` (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1].is_ascii_whitespace()) => {
                return line[..i].trim_end();
            }
            _ => {}
        }
    }
    line.trim_end()
}

/// The command lines of a Markdown file's `sh` blocks and indented blocks
/// that start with `heal` or `cargo`, continuation lines joined.
fn commands(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut in_fence = false;
    let mut pending: Option<String> = None;
    for raw in markdown.lines() {
        if raw.starts_with("```") {
            in_sh = !in_fence && raw.trim() == "```sh";
            in_fence = !in_fence;
            continue;
        }
        let line = if in_sh {
            raw
        } else if !in_fence && raw.starts_with("    ") {
            &raw[4..]
        } else {
            continue;
        };
        let line = if let Some(mut p) = pending.take() {
            p.push(' ');
            p.push_str(line.trim_start());
            p
        } else {
            let t = line.trim_start();
            if !(t.starts_with("heal ") || t.starts_with("cargo ")) {
                continue;
            }
            t.to_owned()
        };
        let code = strip_comment(&line);
        if let Some(head) = code.strip_suffix('\\') {
            pending = Some(head.trim_end().to_owned());
            continue;
        }
        out.push(code.to_owned());
    }
    out
}

/// A synopsis line shows a command's shape, not a command to run.
fn is_synopsis(line: &str) -> bool {
    const PLACEHOLDERS: [&str; 11] = [
        "DIR", "URL", "FILE", "DATASET", "PROMQL", "OUT", "VAR", "NAME", "ID", "S ", "...",
    ];
    line.contains('[')
        || line.contains('|')
        || split(line).0.iter().any(|w| {
            PLACEHOLDERS
                .iter()
                .any(|p| w == p.trim() || w.contains("OUT."))
        })
}

/// What to do with a README command, by its start.
enum Plan {
    /// Run it as written; it must exit 0.
    Run,
    /// Not run here, and why (where it is covered instead).
    Skip(&'static str),
}

const PLAN: &[(&str, Plan)] = &[
    ("cargo run --release -- replay datasets/synth-42.parquet --runbooks runbooks --report out/replay", Plan::Run),
    ("cargo test --workspace --locked", Plan::Skip("it is the command that runs this test")),
    ("cargo build --release -p heal -p lab && target/release/heal demo", Plan::Skip("a release build and minutes of a live lab: tests/demo.rs runs `heal demo`")),
    ("cargo build --release -p heal", Plan::Skip("the first line of the container recipe (a release build, then `docker import`): executors/tests/docker.rs builds and runs an image the same way, from heal-lab")),
    ("heal record --prometheus URL", Plan::Skip("needs a Prometheus: ingest/tests/prometheus.rs")),
    ("heal runbooks schema", Plan::Run),
    ("heal dataset synth --seed 42 -o datasets/synth-42.parquet", Plan::Run),
    ("heal dataset import nyc_taxi.csv -o taxi.parquet --format nab --name taxi --nab-windows NAB/labels/combined_windows.json", Plan::Run),
    ("heal dataset info taxi.parquet", Plan::Run),
    ("heal dataset rewrite old.parquet -o old.parquet", Plan::Run),
    ("heal score nyc_taxi.csv -o scored.csv", Plan::Run),
    ("heal bench nab ../shared/datasets/nab-dev", Plan::Skip("needs the shared NAB corpus, outside the repository: tests/bench_nab.rs runs it on a generated corpus")),
    ("heal diagnose ../shared/datasets/rca-dev/ob-003", Plan::Skip("needs the shared RCA cases, outside the repository: tests/rca_cli.rs runs `heal diagnose` and `heal bench rca` on generated cases")),
    ("heal incidents list --since -1d", Plan::Run),
    ("heal incidents show inc-000001 --db heal.db", Plan::Run),
    ("heal agent --config", Plan::Skip("a server: tests/agent.rs runs it")),
    ("heal bench storm", Plan::Skip("a benchmark that prints figures: tests/cli.rs runs `heal bench storm` with small numbers")),
    ("heal tune ../shared/datasets/nab-dev", Plan::Skip("needs the shared NAB corpus: tests/tune.rs runs `heal tune`")),
    ("heal incidents mark inc-000001 --false-alarm --note \"planned load test\"", Plan::Run),
    ("heal incidents missed --signal http_latency_p99_seconds --at -2h", Plan::Run),
    ("heal incidents sensitivity", Plan::Run),
    ("heal silence add", Plan::Skip("needs a running heal watch: tests/watch_api.rs and tests/live_api.rs")),
    ("heal silence list", Plan::Skip("needs a running heal watch: tests/watch_api.rs")),
    ("heal silence expire sil-000001", Plan::Skip("needs a running heal watch: tests/watch_api.rs")),
    ("heal approve inc-000042", Plan::Skip("needs a running heal watch with a parked step: tests/live_api.rs")),
    ("heal detect --brokers", Plan::Skip("needs a Kafka-protocol broker and PostgreSQL: tests/scale.rs runs three `heal detect` workers (one SIGKILLed) against tansu and a PostgreSQL of its own")),
    ("heal ingest --brokers", Plan::Skip("needs a Kafka-protocol broker: tests/scale.rs runs `heal ingest` into tansu")),
    ("heal remediate --brokers", Plan::Skip("needs a Kafka-protocol broker and PostgreSQL: tests/scale.rs runs two `heal remediate` members (one SIGKILLed) against tansu and a PostgreSQL of its own")),
];

fn plan(line: &str) -> Option<&'static Plan> {
    PLAN.iter()
        .find(|(start, _)| line.starts_with(start))
        .map(|(_, p)| p)
}

/// A scratch directory with what the README's commands assume.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("datasets")).unwrap();
    for f in ["synth-42.parquet", "synth-42.truth.json"] {
        std::fs::copy(repo().join("datasets").join(f), d.join("datasets").join(f)).unwrap();
    }
    // A dataset from before content hashes (any dataset does for the
    // rewrite in place).
    std::fs::copy(
        repo().join("datasets/synth-42.parquet"),
        d.join("old.parquet"),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("runbooks")).unwrap();
    for entry in std::fs::read_dir(repo().join("runbooks")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, d.join("runbooks").join(p.file_name().unwrap())).unwrap();
    }
    // A NAB-style file in the current directory, not under NAB's
    // `data/<category>/`: its key is found by its name.
    let mut csv = String::from("timestamp,value\n");
    for i in 0..600 {
        let v = 100.0 + 10.0 * ((i as f64) / 24.0).sin() + if i == 500 { 80.0 } else { 0.0 };
        csv.push_str(&format!(
            "2014-07-{:02} {:02}:{:02}:00,{v}\n",
            1 + i / 288,
            (i % 288) / 12,
            (i % 12) * 5
        ));
    }
    std::fs::write(d.join("nyc_taxi.csv"), csv).unwrap();
    std::fs::create_dir_all(d.join("NAB/labels")).unwrap();
    std::fs::write(
        d.join("NAB/labels/combined_windows.json"),
        r#"{"realKnownCause/nyc_taxi.csv": [["2014-07-02 16:00:00.000000", "2014-07-02 20:00:00.000000"]],
            "realKnownCause/other.csv": []}"#,
    )
    .unwrap();
    // The store the incident commands read (./heal.db, their default).
    let o = Command::new(HEAL)
        .current_dir(d)
        .args([
            "replay",
            "datasets/synth-42.parquet",
            "--runbooks",
            "runbooks",
            "--db",
            "heal.db",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir
}

/// Runs one README command as written in `dir`; returns its stdout.
fn run(dir: &Path, line: &str) -> String {
    let line = line.replacen("cargo run --release -- ", "heal ", 1);
    let (words, redirect) = split(&line);
    assert_eq!(words[0], "heal", "{line}");
    let o = Command::new(HEAL)
        .current_dir(dir)
        .args(&words[1..])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "README command failed as written: {line}\nexit {:?}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    if let Some(file) = redirect {
        std::fs::write(dir.join(file), &stdout).unwrap();
    }
    stdout
}

#[test]
fn the_splitter_reads_the_readme_as_a_shell_would() {
    assert_eq!(
        split(r#"heal a 'b c' "d \"e\"" f\ g > out.json"#),
        (
            vec![
                "heal".into(),
                "a".into(),
                "b c".into(),
                "d \"e\"".into(),
                "f g".into()
            ],
            Some("out.json".into())
        )
    );
    assert_eq!(strip_comment("heal x 'a # b'   # note"), "heal x 'a # b'");
    assert!(is_synopsis(
        "heal replay DATASET --runbooks DIR [--report DIR]"
    ));
    assert!(!is_synopsis("heal incidents list --since -1d"));
}

#[test]
fn readme_commands_run_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = commands(&readme);
    assert!(lines.len() > 20, "{lines:#?}");
    let unplanned: Vec<&String> = lines
        .iter()
        .filter(|l| !is_synopsis(l) && plan(l).is_none())
        .collect();
    assert!(
        unplanned.is_empty(),
        "README commands neither run nor explained in tests/readme_as_written.rs PLAN: {unplanned:#?}"
    );
    for (start, p) in PLAN {
        if let Plan::Skip(why) = p {
            assert!(!why.trim().is_empty(), "{start}: a skip says why");
            assert!(
                lines.iter().any(|l| l.starts_with(start)),
                "{start}: no longer in README.md; drop it from PLAN"
            );
        }
    }
    let dir = scratch();
    let mut ran = Vec::new();
    for line in lines.iter().filter(|l| !is_synopsis(l)) {
        if let Some(Plan::Run) = plan(line) {
            run(dir.path(), line);
            ran.push(line.as_str());
        }
    }
    // The commands this issue found failing as written are among them.
    for must in [
        "heal incidents list --since -1d",
        "heal incidents missed --signal http_latency_p99_seconds --at -2h",
        "heal dataset import nyc_taxi.csv -o taxi.parquet --format nab --name taxi --nab-windows NAB/labels/combined_windows.json",
    ] {
        assert!(ran.contains(&must), "{must} not run; ran {ran:#?}");
    }
    // What they wrote is there.
    assert!(dir.path().join("out/replay/incidents.jsonl").exists());
    assert!(dir.path().join("runbook.schema.json").exists());
    let info = run(dir.path(), "heal dataset info taxi.parquet");
    assert!(info.contains("1 truth windows"), "{info}");
}

/// The figures README.md gives for the bundled replay are what the replay
/// command it names prints.
#[test]
fn readme_replay_figures_match_the_replay() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let at = readme
        .find("Expected result on the bundled dataset")
        .expect("README states the bundled replay's expected result");
    let sentence: String = readme[at..]
        .split("\n\n")
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(HEAL)
        .current_dir(repo())
        .args([
            "replay",
            "datasets/synth-42.parquet",
            "--runbooks",
            "runbooks",
            "--report",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |after: &str| -> String {
        let rest = stdout
            .split(after)
            .nth(1)
            .unwrap_or_else(|| panic!("no {after:?} in {stdout}"));
        rest.split_whitespace().next().unwrap().to_owned()
    };
    let incidents = stdout.lines().filter(|l| l.starts_with("inc-")).count();
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let delay = field("mean ").trim_end_matches(',').to_owned();
    let delay_s: u64 = delay
        .strip_suffix('s')
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("mean delay {delay:?} is not in seconds"));
    let expected = format!(
        "{} incidents, all four faults found (precision {}, recall {}), mean detection delay {} s.",
        words[incidents],
        field("precision "),
        field("recall "),
        delay_s
    );
    assert!(
        sentence.contains(&expected),
        "README.md is out of step with `heal replay`: it says\n{sentence}\nthe replay prints\n{expected}"
    );
}

/// lab/README.md starts the lab where lab/runbooks/lab.yaml restarts it.
#[test]
fn the_lab_readme_and_the_lab_runbook_agree_on_the_control_address() {
    let readme = std::fs::read_to_string(repo().join("lab/README.md")).unwrap();
    let runbook = std::fs::read_to_string(repo().join("lab/runbooks/lab.yaml")).unwrap();
    let addresses = |text: &str, before: &str| -> Vec<String> {
        text.split(before)
            .skip(1)
            .map(|rest| {
                rest.trim_start_matches(['"', ' ', ','])
                    .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    // `--control ADDR` in prose is a placeholder, not an address.
    let in_readme: Vec<String> = addresses(&readme, "--control ")
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    let in_runbook = addresses(&runbook, "--control,");
    assert!(!in_readme.is_empty() && !in_runbook.is_empty());
    let mut all: Vec<&String> = in_readme.iter().chain(&in_runbook).collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        1,
        "control addresses differ: README {in_readme:?}, runbook {in_runbook:?}"
    );
}
