//! `heal tune` on a small NAB-layout corpus written here (seeded noise with
//! spikes and their windows), and the parameter file it writes read back by
//! `heal replay --params`.

use std::fmt::Write as _;
use std::path::Path;

use lab::rng::SplitMix64;

mod common;

use common::{heal, normal, stderr, stdout};

const ROWS: usize = 1500;
const STEP_SECS: i64 = 300;

fn stamp(secs: i64) -> String {
    let days = secs / 86_400;
    let s = secs % 86_400;
    // January 2026 only: 1500 rows of 5 minutes are about 5 days.
    format!(
        "2026-01-{:02} {:02}:{:02}:{:02}",
        5 + days,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Writes `data/<category>/<name>.csv` for the given categories and
/// numbers of series, and `labels/combined_windows.json`: noise around 10
/// with three spikes of 4.5 to 6 sigma per series (moderate: the ops-safe
/// default threshold misses most of them), each inside a window of 21 rows.
fn write_corpus(dir: &Path, seed: u64, categories: &[(&str, usize)]) {
    let mut rng = SplitMix64::new(seed);
    let mut windows = String::from("{\n");
    let mut first = true;
    for &(category, count) in categories {
        std::fs::create_dir_all(dir.join("data").join(category)).unwrap();
        for k in 0..count {
            let name = format!("s{k}.csv");
            let spikes = [600 + 37 * k, 950 + 23 * k, 1300 - 41 * k];
            let mut csv = String::from("timestamp,value\n");
            for i in 0..ROWS {
                let mut v = 10.0 + normal(&mut rng);
                if spikes.contains(&i) {
                    v += 4.5 + 1.5 * rng.unit();
                }
                let _ = writeln!(csv, "{},{v:.4}", stamp(i as i64 * STEP_SECS));
            }
            std::fs::write(dir.join("data").join(category).join(&name), csv).unwrap();
            let ws: Vec<String> = spikes
                .iter()
                .map(|&s| {
                    format!(
                        "[\"{}.000000\", \"{}.000000\"]",
                        stamp((s as i64 - 10) * STEP_SECS),
                        stamp((s as i64 + 10) * STEP_SECS)
                    )
                })
                .collect();
            if !first {
                windows.push_str(",\n");
            }
            first = false;
            let _ = write!(windows, "  \"{category}/{name}\": [{}]", ws.join(", "));
        }
    }
    windows.push_str("\n}\n");
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    std::fs::write(dir.join("labels").join("combined_windows.json"), windows).unwrap();
}

/// The four numbers of a `label  A  B  mean` line of tune's table.
fn row(out: &str, label: &str) -> Vec<f64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{out}"));
    line[label.len()..]
        .split_whitespace()
        .map(|x| x.parse().unwrap_or_else(|_| panic!("{line}")))
        .collect()
}

const RUNBOOK: &str = "signals:
  - name: latency
    query: latency
rules:
  - name: latency-high
    when:
      signal: latency
      direction: up
      for: 0s
    then:
      - action: restart
        target: deployment/{{service}}
";

#[test]
fn tune_beats_the_default_held_out_and_replay_reads_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    write_corpus(&corpus, 7, &[("synthA", 4), ("synthB", 4)]);
    let params = dir.path().join("params.yaml");
    let o = heal(&[
        "tune",
        corpus.to_str().unwrap(),
        "--trials",
        "24",
        "--seed",
        "5",
        "-o",
        params.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("(NAB layout, 8 series, 24 windows)"), "{out}");
    assert!(
        out.contains(
            "split: leave one category out (2 categories, as `heal bench nab --cv`): settings \
             chosen on the other categories, scored on the left-out one"
        ),
        "a NAB corpus of two categories: {out}"
    );
    let held = row(&out, "held-out (tuned on the other categories)");
    let default = row(&out, "default settings");
    let fitted = row(&out, "in-sample (tuned on every category)");
    // synthA, synthB, pooled, mean.
    assert_eq!(
        (held.len(), default.len(), fitted.len()),
        (4, 4, 4),
        "{out}"
    );
    // Tuned on one category, scored on the other: at least as good as the
    // default settings on each, and better pooled.
    assert!(held[0] >= default[0] && held[1] >= default[1], "{out}");
    assert!(
        held[2] > default[2],
        "the search finds better settings: {out}"
    );
    // The held-out figure is not the in-sample one: synthA's settings come
    // from synthB alone.
    assert!(held[0] < fitted[0], "{out}");
    assert!(held[2] < fitted[2], "{out}");

    let text = std::fs::read_to_string(&params).unwrap();
    assert!(text.starts_with("# heal tune: "), "{text}");
    assert!(
        text.contains("# objective standard, seed 5, 24 trials"),
        "{text}"
    );
    assert!(
        text.contains("# held-out score (leave one category out): pooled "),
        "{text}"
    );
    assert!(text.contains("\nthreshold: "), "{text}");

    // Same seed, same result.
    let again = heal(&[
        "tune",
        corpus.to_str().unwrap(),
        "--trials",
        "24",
        "--seed",
        "5",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains(&text), "{}", stdout(&again));

    // The file drives a replay: a dataset of one corpus series, a runbook
    // whose signal sets no detector of its own.
    let ds = dir.path().join("latency.parquet");
    let csv = corpus.join("data/synthA/s0.csv");
    let windows = corpus.join("labels/combined_windows.json");
    let o = heal(&[
        "dataset",
        "import",
        csv.to_str().unwrap(),
        "-o",
        ds.to_str().unwrap(),
        "--name",
        "latency",
        "--label",
        "service=api",
        "--nab-windows",
        windows.to_str().unwrap(),
        "--nab-key",
        "synthA/s0.csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(runbooks.join("rb.yaml"), RUNBOOK).unwrap();
    let replay = |params: &Path| {
        heal(&[
            "replay",
            ds.to_str().unwrap(),
            "--runbooks",
            runbooks.to_str().unwrap(),
            "--quiet",
            "--params",
            params.to_str().unwrap(),
        ])
    };
    let o = replay(&params);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "detector settings from {} (threshold ",
            params.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("signal(s) without their own detector: latency"));

    // A malformed file: exit 64, file, line and field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "# tuned\nthreshold: 0.3\nwarmup: many\n").unwrap();
    let o = replay(&bad);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:3:1: warmup: invalid type", bad.display())),
        "{err}"
    );
    std::fs::write(&bad, "threshold: 0.3\nthreshhold: 0.2\n").unwrap();
    let o = replay(&bad);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}:2:1: threshhold: unknown field `threshhold`",
            bad.display()
        )),
        "{err}"
    );
    std::fs::write(&bad, "threshold: 0.3\nreset_threshold: 0.5\n").unwrap();
    let o = replay(&bad);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}:2:1: reset_threshold: must not exceed threshold (0.3), got 0.5",
            bad.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tune_splits_a_corpus_of_one_category_into_halves_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path(), 3, &[("synthA", 6)]);
    let o = heal(&[
        "tune",
        dir.path().to_str().unwrap(),
        "--trials",
        "8",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "split: 2-fold cross-validation, halves stratified by category: half A 3 series \
             (9 windows), half B 3 series (9 windows) (one category: nothing to leave out)"
        ),
        "{out}"
    );
    assert_eq!(
        row(&out, "held-out (tuned on the other half)").len(),
        3,
        "{out}"
    );
    assert!(
        out.contains("# held-out score (2-fold cross-validation): half A "),
        "{out}"
    );
}

#[test]
fn tune_refuses_a_directory_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let o = heal(&["tune", dir.path().to_str().unwrap(), "--trials", "1"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("neither a NAB-layout directory"),
        "{}",
        stderr(&o)
    );
}
