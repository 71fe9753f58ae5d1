//! `heal bench nab --cv` and `--results` on a small NAB-layout corpus
//! written here, the written results re-scored with the project's NAB
//! scorer, and `heal score --params` writing the same detections.
//!
//! The corpus is built so that the cross-validated figure must differ from
//! the in-sample one: category `calm` has a moderate spike (5 sigma) in each
//! window and nothing else; category `wild` has four larger spikes (9 sigma)
//! outside its windows and a huge one inside. On every series a threshold
//! low enough for calm's spikes also fires on wild's false spikes. In-sample
//! the threshold is low (finding calm's windows is worth more than wild's
//! false alarms cost); leaving calm out, the threshold is chosen on wild
//! alone, above its false spikes, and misses calm's windows; leaving wild
//! out, it is chosen on calm alone, low, and wild pays its false alarms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use detect::nab::{self, NabFile, Profile};
use lab::rng::SplitMix64;

mod common;

use common::{heal, normal, stderr, stdout};

const ROWS: usize = 2000;
const STEP_SECS: i64 = 300;

fn stamp(row: usize) -> String {
    let secs = row as i64 * STEP_SECS;
    let (days, s) = (secs / 86_400, secs % 86_400);
    format!(
        "2026-01-{:02} {:02}:{:02}:{:02}",
        5 + days,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Writes the corpus: two series per category, seeded noise around 10 with
/// unit spread, spikes as the module documentation says, windows of 101
/// rows around the labelled spikes.
fn write_corpus(dir: &Path) {
    let mut rng = SplitMix64::new(11);
    let mut windows: BTreeMap<String, Vec<[String; 2]>> = BTreeMap::new();
    for (category, labelled, size, unlabelled) in [
        ("calm", [900, 1500], 5.0, &[][..]),
        ("wild", [1300, 1300], 30.0, &[700, 1000, 1600, 1850][..]),
    ] {
        std::fs::create_dir_all(dir.join("data").join(category)).unwrap();
        for (k, &at) in labelled.iter().enumerate() {
            let name = format!("s{k}.csv");
            let mut csv = String::from("timestamp,value\n");
            for i in 0..ROWS {
                let mut v = 10.0 + normal(&mut rng);
                if i == at {
                    v += size;
                }
                if unlabelled.contains(&i) {
                    v += 9.0;
                }
                let _ = writeln!(csv, "{},{v:.4}", stamp(i));
            }
            std::fs::write(dir.join("data").join(category).join(&name), csv).unwrap();
            windows.insert(
                format!("{category}/{name}"),
                vec![[
                    format!("{}.000000", stamp(at - 50)),
                    format!("{}.000000", stamp(at + 50)),
                ]],
            );
        }
    }
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    std::fs::write(
        dir.join("labels/combined_windows.json"),
        serde_json::to_string_pretty(&windows).unwrap(),
    )
    .unwrap();
}

/// The whitespace-separated fields of the first line starting with `label`.
fn fields<'a>(out: &'a str, label: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{out}"))
        .split_whitespace()
        .collect()
}

fn num(s: &str) -> f64 {
    s.trim_start_matches('@')
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// The project's NAB scorer over a results directory: each series'
/// `anomaly_score` column against the corpus' windows, at `threshold`.
fn rescore(corpus: &Path, results: &Path, threshold: f64, profile: Profile) -> f64 {
    let c = ingest::NabCorpus::open(corpus).unwrap();
    let files: Vec<NabFile> = c
        .files()
        .iter()
        .map(|entry| {
            let data = c.read(entry).unwrap();
            let ts: Vec<i64> = data.rows().iter().map(|r| r.ts_ms).collect();
            let text = std::fs::read_to_string(results.join(nab::results_path(&entry.key)))
                .unwrap_or_else(|e| panic!("{}: {e}", entry.key));
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
            let rows: Vec<&str> = lines.collect();
            assert_eq!(rows.len(), ts.len(), "{}: one row per data row", entry.key);
            for (row, r) in rows.iter().zip(data.rows()) {
                let (prefix, _) = row.rsplit_once(',').unwrap();
                assert_eq!(
                    prefix,
                    data.row_text(r),
                    "{}: rows in data order",
                    entry.key
                );
            }
            NabFile {
                name: entry.key.clone(),
                scores: rows
                    .iter()
                    .map(|r| num(r.rsplit_once(',').unwrap().1))
                    .collect(),
                windows: nab::windows_to_rows(&ts, c.windows(&entry.key)),
            }
        })
        .collect();
    nab::corpus_score(&files, threshold, profile).normalized
}

#[test]
fn cv_is_computed_from_held_out_folds_and_the_results_rescore_to_the_printed_figures() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    write_corpus(&corpus);
    let results = dir.path().join("results");
    let o = heal(&[
        "bench",
        "nab",
        corpus.to_str().unwrap(),
        "--cv",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("4 files, 8000 points, 4 windows, 2 categories"),
        "{out}"
    );

    // The in-sample and cross-validated line of the standard profile:
    // profile, in-sample threshold, score, counts, cv, counts, cv mean.
    let cv_line = out
        .lines()
        .skip_while(|l| !l.starts_with("leave one category out"))
        .find(|l| l.starts_with("standard"))
        .unwrap_or_else(|| panic!("no cv line: {out}"));
    let f: Vec<&str> = cv_line.split_whitespace().collect();
    assert_eq!(f.len(), 7, "{cv_line}");
    let (in_t, in_score, in_counts) = (num(f[1]), num(f[2]), f[3]);
    let (cv_score, cv_counts, cv_mean) = (num(f[4]), f[5], num(f[6]));
    // In-sample every window is found (calm's moderate spikes too).
    assert!(in_counts.starts_with("4/0/"), "{cv_line}");
    // Held out, calm's threshold comes from wild, which misses calm's
    // spikes: two windows fewer, so the figure is lower.
    assert!(cv_counts.starts_with("2/2/"), "{cv_line}");
    assert!(cv_score < in_score - 10.0, "{cv_line}");

    // Per category: calm missed at a threshold above the in-sample one,
    // wild at a threshold no higher than the in-sample one.
    let calm = fields(&out, "calm ");
    let wild = fields(&out, "wild ");
    // category, series, windows, then per profile: score, @thr, counts.
    assert_eq!(calm.len(), 3 + 3 * 3, "{out}");
    assert_eq!(&calm[1..3], ["2", "2"], "{out}");
    let (calm_score, calm_t, calm_counts) = (num(calm[3]), num(calm[4]), calm[5]);
    let (wild_score, wild_t) = (num(wild[3]), num(wild[4]));
    assert_eq!(calm_counts, "0/2/0", "{out}");
    assert!(calm_t > in_t, "{out}");
    assert!(wild_t <= in_t, "{out}");
    // The mean is over the held-out categories' own figures.
    assert!(
        ((calm_score + wild_score) / 2.0 - cv_mean).abs() <= 0.051,
        "{out}"
    );

    // The results at the reported threshold re-score to the printed
    // in-sample figure; the held-out detections to the printed cv figure.
    let best = fields(&out, "standard");
    assert_eq!(num(best[1]), in_t, "{out}");
    for (profile, label) in [
        (Profile::STANDARD, "standard"),
        (Profile::LOW_FP, "reward_low_FP_rate"),
        (Profile::LOW_FN, "reward_low_FN_rate"),
    ] {
        let printed = num(fields(&out, label)[2]);
        let got = rescore(&corpus, &results, in_t, profile);
        assert!((got - printed).abs() <= 0.051, "{label}: {got} vs {out}");
    }
    let held = rescore(&corpus, &results.join("held-out"), 1.0, Profile::STANDARD);
    assert!((held - cv_score).abs() <= 0.051, "{held} vs {out}");
    assert!(
        out.contains(&format!(
            "re-score: nab_score.py {} {} --fixed {in_t:.3}",
            corpus.display(),
            results.display()
        )),
        "{out}"
    );

    // `heal score --params` with the reported configuration writes the
    // same detections as the results file; the adaptive defaults reset at
    // half the threshold.
    let params = dir.path().join("params.yaml");
    std::fs::write(
        &params,
        format!("threshold: {in_t}\nreset_threshold: {}\n", in_t / 2.0),
    )
    .unwrap();
    let scored = dir.path().join("scored.csv");
    let o = heal(&[
        "score",
        corpus.join("data/calm/s0.csv").to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let detections = |path: &Path| -> Vec<usize> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .skip(1)
            .enumerate()
            .filter(|(_, l)| num(l.rsplit_once(',').unwrap().1) >= in_t)
            .map(|(i, _)| i)
            .collect()
    };
    let from_bench = detections(&results.join("calm/s0.csv"));
    assert!(!from_bench.is_empty(), "calm's spike fires in-sample");
    assert_eq!(detections(&scored), from_bench);
}

#[test]
fn detector_all_with_cv_prints_every_kind_in_sample_and_held_out() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let o = heal(&[
        "bench",
        "nab",
        dir.path().to_str().unwrap(),
        "--detector",
        "all",
        "--cv",
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
        let rows: Vec<&str> = out
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .collect();
        // The summary row, then one row per profile's per-category table.
        assert_eq!(rows.len(), 4, "{name}: {out}");
        // name, (threshold, in, cv, mean) per profile, own threshold and
        // its standard score, ns/point.
        let cols: Vec<f64> = rows[0].split_whitespace().skip(1).map(num).collect();
        assert_eq!(cols.len(), 15, "{}", rows[0]);
        for k in 0..3 {
            let (t, inside, cv) = (cols[4 * k], cols[4 * k + 1], cols[4 * k + 2]);
            assert!((0.05..=0.65).contains(&t), "{}", rows[0]);
            assert!(inside.is_finite() && cv.is_finite(), "{}", rows[0]);
        }
        assert!(cols[14] > 0.0, "{}", rows[0]);
    }
    let nab = fields(&out, "nab ");
    assert_eq!(num(nab[13]), 0.19, "the NAB configuration's own threshold");
    // The adaptive detector loses calm's windows held out, as above.
    let adaptive = fields(&out, "adaptive ");
    assert!(num(adaptive[3]) < num(adaptive[2]) - 10.0, "{out}");
}

#[test]
fn score_takes_a_detector_name_and_refuses_all() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let input = dir.path().join("data/wild/s0.csv");
    let o = heal(&["score", input.to_str().unwrap(), "--detector", "nab"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), ROWS + 1);
    // The huge labelled spike fires the NAB configuration.
    let at = text.lines().nth(1300 + 1).unwrap();
    assert!(num(at.rsplit_once(',').unwrap().1) >= 0.19, "{at}");
    let o = heal(&["score", input.to_str().unwrap(), "--detector", "all"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("--detector all"), "{}", stderr(&o));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "threshold: 2\n").unwrap();
    let o = heal(&[
        "score",
        input.to_str().unwrap(),
        "--params",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}:1:1: threshold: must be within [0, 1]",
            bad.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cv_needs_two_categories() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    std::fs::remove_dir_all(dir.path().join("data/wild")).unwrap();
    let o = heal(&["bench", "nab", dir.path().to_str().unwrap(), "--cv"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--cv leaves one category out and needs at least two (found 1)"),
        "{}",
        stderr(&o)
    );
}
