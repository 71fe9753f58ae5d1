//! `heal tune`: a seeded random search over the adaptive
//! detector's settings, with a 2-fold cross-validated figure, written as a
//! parameter file that `heal replay --params` and `heal watch --params` read.
//!
//! Why cross-validation: the best of 200 configurations scored on the very
//! series it was picked on is an optimistic figure (the search fits the
//! noise of those series as much as their anomalies). The series are split
//! into two halves; a search on half A is scored on half B and the reverse,
//! and those two held-out scores are what a new series can expect. The
//! written configuration is the one picked on every series (more data, the
//! same procedure), shown with its in-sample score next to the honest one.
//!
//! Why one core: the machine heal tunes on is usually the one it watches
//! from. A trial scores every series once (sample policy and detector, as
//! `heal bench nab` does), which is cheap enough that 200 trials over the
//! NAB development subset (24 series, about 100,000 points) take about 8 s
//! even in a debug build.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use detect::nab::{self, NabFile, Profile};
use detect::{AdaptiveDetector, DetectorConfig};
use ingest::{Admit, Dataset, Sanitizer};
use remediate::runbook::Severity;
use remediate::Incident;

use lab::rng::SplitMix64;

use crate::evaluate::{evaluate, TruthWindow};
use crate::{Error, Result};

/// What to tune on and how (`heal tune`'s arguments).
#[derive(Debug, Clone)]
pub struct TuneConfig {
    /// A NAB-layout directory (`data/<category>/*.csv` and
    /// `labels/combined_windows.json`), or a directory of heal datasets
    /// (`*.parquet` with their ground truth `<stem>.truth.json`, such as
    /// `heal dataset synth` writes).
    pub dir: PathBuf,
    /// Random configurations tried (the default settings and the
    /// `sensitive` preset are always tried as well).
    pub trials: usize,
    /// Seed of the search and of the split into halves: the same seed on
    /// the same data gives the same result.
    pub seed: u64,
    /// What to maximise: NAB's `standard`, `low-fp` (reward_low_FP_rate) or
    /// `low-fn` (reward_low_FN_rate) normalised score, or `f1` of the
    /// detector's firings against the labelled windows (a firing inside a
    /// window of its series is true, as `heal replay` counts incidents).
    pub objective: Objective,
    /// Write the tuned settings to this YAML file (the `detector:` shape of
    /// a runbook signal, with a comment header saying how they were tuned);
    /// printed to standard output when omitted.
    pub output: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
}

/// What a trial is scored by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// NAB's standard profile (tp 1, fp 0.11, fn 1), normalised to 0..100.
    Standard,
    /// NAB's reward_low_FP_rate profile (fp 0.22).
    LowFp,
    /// NAB's reward_low_FN_rate profile (fn 2).
    LowFn,
    /// F1 of firings against windows, times 100.
    F1,
}

impl Objective {
    /// Every objective.
    const ALL: [Objective; 4] = [
        Objective::Standard,
        Objective::LowFp,
        Objective::LowFn,
        Objective::F1,
    ];

    /// The name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Standard => "standard",
            Objective::LowFp => "low-fp",
            Objective::LowFn => "low-fn",
            Objective::F1 => "f1",
        }
    }

    fn profile(self) -> Profile {
        match self {
            Objective::LowFp => Profile::LOW_FP,
            Objective::LowFn => Profile::LOW_FN,
            Objective::Standard | Objective::F1 => Profile::STANDARD,
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = String;

    /// The name as the command line spells it.
    fn from_str(s: &str) -> std::result::Result<Objective, String> {
        Objective::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Objective::ALL.iter().map(|v| v.name()).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One series to score: its samples, labelled windows and stratum.
#[derive(Debug)]
struct TuneSeries {
    /// `category/file.csv` for NAB, `stem/labels` for a dataset.
    name: String,
    /// What the split stratifies by: the NAB category, or the metric name.
    category: String,
    /// The series' labels, for matching firings with windows (evaluate.rs).
    labels: BTreeMap<String, String>,
    ts: Vec<i64>,
    values: Vec<f64>,
    /// Labelled windows, inclusive, in ms.
    truth: Vec<TruthWindow>,
    /// The NAB view of the series: row windows, and `scores` only for its
    /// length (NAB's probation depends on it).
    nab: NabFile,
}

/// Sums over a set of series for one configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    series: usize,
    windows: usize,
    /// NAB raw score under the objective's profile.
    raw: f64,
    tp: usize,
    fn_: usize,
    fp: usize,
    /// Firings, firings inside a window, windows with a firing.
    fires: usize,
    true_fires: usize,
    detected: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.series += o.series;
        self.windows += o.windows;
        self.raw += o.raw;
        self.tp += o.tp;
        self.fn_ += o.fn_;
        self.fp += o.fp;
        self.fires += o.fires;
        self.true_fires += o.true_fires;
        self.detected += o.detected;
    }

    /// The objective's value on these series. NAB scores are normalised
    /// over these series only (`100 (S - S_null) / (S_perfect - S_null)`),
    /// as NAB normalises a corpus; a set without windows has no such scale
    /// and scores its raw (zero or negative) total.
    fn value(&self, objective: Objective) -> f64 {
        match objective {
            Objective::F1 => {
                let precision = if self.fires == 0 {
                    1.0
                } else {
                    self.true_fires as f64 / self.fires as f64
                };
                let recall = if self.windows == 0 {
                    1.0
                } else {
                    self.detected as f64 / self.windows as f64
                };
                if precision + recall > 0.0 {
                    100.0 * 2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                }
            }
            _ => {
                let p = objective.profile();
                let perfect = p.tp * self.windows as f64;
                let null = -p.fn_ * self.windows as f64;
                if perfect > null {
                    100.0 * (self.raw - null) / (perfect - null)
                } else {
                    self.raw
                }
            }
        }
    }
}

/// Tunes, prints the report and writes (or prints) the parameter file.
///
/// # Errors
///
/// A directory that is neither layout, too few series, an unwritable
/// output.
pub fn run(args: TuneConfig) -> Result<()> {
    let (series, kind) = load(&args.dir)?;
    if series.len() < 2 {
        return Err(Error::Usage(format!(
            "{}: {} series: cross-validation needs at least 2",
            args.dir.display(),
            series.len()
        )));
    }
    let halves = split(&series, args.seed);
    let candidates = candidates(args.trials, args.seed);
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        // Draws to stderr, and not at all when stderr is not a terminal.
        indicatif::ProgressBar::new(candidates.len() as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} tune [{bar:40}] {pos}/{len} trials (eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let search = search(&series, &halves, &candidates, args.objective, || bar.inc(1));
    bar.finish_and_clear();
    let report = Report::new(&args, kind, &series, &halves, &candidates, &search);
    print!("{}", report.text());
    let best = &candidates[search.best[ALL]];
    let yaml = params_yaml(best, &report.header());
    match &args.output {
        Some(path) => {
            stdx::write_atomically(path, yaml.as_bytes())?;
            println!("wrote {}", path.display());
        }
        None => {
            println!();
            print!("{yaml}");
        }
    }
    Ok(())
}

/// Half A, half B, and every series.
const A: usize = 0;
const B: usize = 1;
const ALL: usize = 2;

/// What the search found: per candidate the tally of each set, and the
/// best candidate of each set (ties go to the earlier candidate, so the
/// defaults win a tie).
#[derive(Debug)]
struct Search {
    tallies: Vec<[Tally; 3]>,
    best: [usize; 3],
}

/// Scores every candidate on every series once and sums per set.
fn search(
    series: &[TuneSeries],
    halves: &[usize],
    candidates: &[DetectorConfig],
    objective: Objective,
    mut tick: impl FnMut(),
) -> Search {
    let mut tallies = Vec::with_capacity(candidates.len());
    let mut best = [0usize; 3];
    for (k, cfg) in candidates.iter().enumerate() {
        let mut t = [Tally::default(); 3];
        for (s, half) in series.iter().zip(halves) {
            let one = score_series(s, cfg, objective.profile());
            t[*half].add(&one);
            t[ALL].add(&one);
        }
        tallies.push(t);
        for set in [A, B, ALL] {
            if t[set].value(objective) > tallies[best[set]][set].value(objective) {
                best[set] = k;
            }
        }
        tick();
    }
    Search { tallies, best }
}

/// Runs one series through the sample policy and a fresh detector and
/// scores its firings (the samples whose excursion fired: what opens an
/// incident) against its windows, both as NAB does and as `heal replay`
/// evaluates incidents.
fn score_series(s: &TuneSeries, cfg: &DetectorConfig, profile: Profile) -> Tally {
    let mut sanitizer = Sanitizer::default();
    let mut detector = AdaptiveDetector::new(cfg.clone());
    let mut fired = Vec::new();
    for (row, (&ts, &v)) in s.ts.iter().zip(&s.values).enumerate() {
        if let Admit::Accept { sample, .. } = sanitizer.admit(ts, v) {
            let scored = detector.update(sample.ts_ms, sample.value);
            if scored.excursion.is_some_and(|e| e.first) {
                fired.push(row);
            }
        }
    }
    let nab = s.nab.score_detections(fired.iter().copied(), profile);
    let incidents: Vec<Incident> = fired
        .iter()
        .map(|&row| firing(&s.labels, s.ts[row]))
        .collect();
    let e = evaluate(&incidents, &s.truth);
    Tally {
        series: 1,
        windows: s.truth.len(),
        raw: nab.score,
        tp: nab.tp,
        fn_: nab.fn_,
        fp: nab.fp,
        fires: incidents.len(),
        true_fires: e.true_incidents,
        detected: e.detected_windows,
    }
}

/// A firing as the incident it would open, for `evaluate` (which reads the
/// series and the onset only).
fn firing(labels: &BTreeMap<String, String>, ts_ms: i64) -> Incident {
    Incident {
        id: String::new(),
        series: labels.clone(),
        service: String::new(),
        signal: String::new(),
        rule: String::new(),
        description: None,
        severity: Severity::Warning,
        above: true,
        onset_ms: ts_ms,
        opened_ms: ts_ms,
        peak_score: 0.0,
        peer_z: None,
        chain_len: 0,
        actions: Vec::new(),
        resolved_ms: None,
        unresolved_at_ms: None,
    }
}

/// The seeded split into halves A (0) and B (1), stratified by category:
/// each category's series are shuffled and dealt alternately, the deal
/// going on from one category to the next so the halves differ in size by
/// at most one.
fn split(series: &[TuneSeries], seed: u64) -> Vec<usize> {
    let mut by_category: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        by_category.entry(&s.category).or_default().push(i);
    }
    // A stream of its own, so changing --trials does not change the split.
    let mut rng = SplitMix64::new(seed ^ 0x5851_f42d_4c95_7f2d);
    let mut halves = vec![A; series.len()];
    let mut next = A;
    for members in by_category.values_mut() {
        members.sort_by(|a, b| series[*a].name.cmp(&series[*b].name));
        for i in (1..members.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            members.swap(i, j);
        }
        for &m in members.iter() {
            halves[m] = next;
            next = 1 - next;
        }
    }
    halves
}

/// The configurations tried: the defaults first (so they win a tie), the
/// `sensitive` preset, then `trials` random ones.
///
/// The ranges cover what a user might set and what NAB's series need: the
/// threshold from very sensitive (0.08, a tail probability of about 0.1)
/// to very quiet (0.6); hysteresis as a fraction of the threshold; level
/// and spread memories from minutes to days of samples; the daily profile
/// on or off. Half-lives are drawn log-uniformly (a factor matters, not a
/// difference) and everything is rounded to three significant digits so
/// the written file reads well. `direction`, `min_spread` and the limits
/// are the user's knowledge of the signal, never tuned.
fn candidates(trials: usize, seed: u64) -> Vec<DetectorConfig> {
    let base = DetectorConfig::default();
    let mut rng = SplitMix64::new(seed);
    let mut out = vec![base.clone(), DetectorConfig::sensitive()];
    for _ in 0..trials {
        let threshold = sig3(rng.uniform(0.08, 0.6));
        out.push(DetectorConfig {
            threshold,
            reset_threshold: sig3(threshold * rng.uniform(0.3, 0.8)),
            reset_samples: log_uniform(&mut rng, 5.0, 120.0).round() as u32,
            warmup: log_uniform(&mut rng, 10.0, 100.0).round() as u32,
            level_half_life: sig3(log_uniform(&mut rng, 5.0, 200.0)),
            spread_half_life: sig3(log_uniform(&mut rng, 50.0, 5000.0)),
            calibration_half_life: sig3(log_uniform(&mut rng, 200.0, 20000.0)),
            daily_buckets: if rng.uniform(0.0, 1.0) < 0.5 {
                0
            } else {
                base.daily_buckets.max(24)
            },
            daily_half_life_days: sig3(log_uniform(&mut rng, 2.0, 28.0)),
            ..base.clone()
        });
    }
    out
}

/// `x` rounded to three significant digits.
fn sig3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Log-uniform in [lo, hi).
fn log_uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    rng.uniform(lo.ln(), hi.ln()).exp()
}

/// Which layout the directory had, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nab,
    Datasets,
}

/// Reads a NAB-layout directory or a directory of datasets.
fn load(dir: &Path) -> Result<(Vec<TuneSeries>, Kind)> {
    if dir.join("labels").join("combined_windows.json").is_file() {
        return Ok((load_nab(dir)?, Kind::Nab));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Usage(format!("{}: reading directory: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::Usage(format!("{}: reading directory: {e}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "parquet") && path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(Error::Usage(format!(
            "{}: neither a NAB-layout directory (labels/combined_windows.json) nor one of \
             heal datasets (*.parquet)",
            dir.display()
        )));
    }
    paths.sort();
    let mut series = Vec::new();
    for path in &paths {
        let dataset = Dataset::read(path).map_err(|e| Error::Usage(e.to_string()))?;
        if dataset.truth.is_empty() {
            return Err(Error::Usage(format!(
                "{}: no ground truth (expected {}): tuning needs labelled windows",
                path.display(),
                ingest::truth_path(path).display()
            )));
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for s in &dataset.series {
            let ts: Vec<i64> = s.samples.iter().map(|x| x.ts_ms).collect();
            let windows: Vec<(i64, i64)> = dataset
                .truth
                .iter()
                .filter(|w| w.series == s.labels)
                .map(|w| (w.start_ms, w.end_ms))
                .collect();
            series.push(TuneSeries::new(
                format!("{stem}/{}", s.labels),
                s.labels.name().unwrap_or(&stem).to_owned(),
                s.labels
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ts,
                s.samples.iter().map(|x| x.value).collect(),
                windows,
            ));
        }
    }
    Ok((series, Kind::Datasets))
}

fn load_nab(dir: &Path) -> Result<Vec<TuneSeries>> {
    let corpus = ingest::NabCorpus::open(dir).map_err(|e| Error::Usage(e.to_string()))?;
    if corpus.files().is_empty() {
        return Err(Error::Usage(format!(
            "{}: no data/<category>/*.csv files",
            dir.display()
        )));
    }
    let mut series = Vec::new();
    for entry in corpus.files() {
        let file = corpus
            .read(entry)
            .map_err(|e| Error::Usage(e.to_string()))?;
        let category = entry.key.split('/').next().unwrap_or_default().to_owned();
        let labels = BTreeMap::from([("file".to_owned(), entry.key.clone())]);
        series.push(TuneSeries::new(
            entry.key.clone(),
            category,
            labels,
            file.rows().iter().map(|r| r.ts_ms).collect(),
            file.rows().iter().map(|r| r.value).collect(),
            corpus.windows(&entry.key).to_vec(),
        ));
    }
    Ok(series)
}

impl TuneSeries {
    fn new(
        name: String,
        category: String,
        labels: BTreeMap<String, String>,
        ts: Vec<i64>,
        values: Vec<f64>,
        windows: Vec<(i64, i64)>,
    ) -> TuneSeries {
        let nab = NabFile {
            name: name.clone(),
            scores: vec![0.0; ts.len()],
            windows: nab::windows_to_rows(&ts, &windows),
        };
        let truth = windows
            .iter()
            .map(|&(start, end)| (labels.clone(), start, end))
            .collect();
        TuneSeries {
            name,
            category,
            labels,
            ts,
            values,
            truth,
            nab,
        }
    }
}

/// The figures of a search, for the terminal and the file's header.
#[derive(Debug)]
struct Report {
    lines: Vec<String>,
    header: Vec<String>,
}

impl Report {
    fn new(
        args: &TuneConfig,
        kind: Kind,
        series: &[TuneSeries],
        halves: &[usize],
        candidates: &[DetectorConfig],
        search: &Search,
    ) -> Report {
        let obj = args.objective;
        let t = &search.tallies;
        let v = |cand: usize, set: usize| t[cand][set].value(obj);
        let (default_a, default_b) = (v(0, A), v(0, B));
        // Tuned on A, scored on B; tuned on B, scored on A.
        let (held_b, held_a) = (v(search.best[A], B), v(search.best[B], A));
        let held_mean = (held_a + held_b) / 2.0;
        let default_mean = (default_a + default_b) / 2.0;
        let in_sample = v(search.best[ALL], ALL);
        let default_all = v(0, ALL);
        let count = |set: usize| halves.iter().filter(|h| **h == set).count();
        let all = t[0][ALL];
        let layout = match kind {
            Kind::Nab => "NAB layout",
            Kind::Datasets => "heal datasets",
        };
        let what = format!(
            "{} ({layout}, {} series, {} windows)",
            args.dir.display(),
            series.len(),
            all.windows
        );
        let mut lines = vec![
            format!("tuned on {what}"),
            format!(
                "objective {}; {} trials plus the defaults and the sensitive preset; seed {}",
                obj.name(),
                candidates.len() - 2,
                args.seed
            ),
            format!(
                "2-fold cross-validation, split stratified by {}: half A {} series ({} windows), half B {} series ({} windows)",
                match kind {
                    Kind::Nab => "category",
                    Kind::Datasets => "metric name",
                },
                count(A),
                t[0][A].windows,
                count(B),
                t[0][B].windows
            ),
            String::new(),
            format!("{:<36} {:>8} {:>8} {:>8}", obj.name(), "half A", "half B", "mean"),
            format!(
                "{:<36} {:>8.1} {:>8.1} {:>8.1}",
                "held-out (tuned on the other half)", held_a, held_b, held_mean
            ),
            format!(
                "{:<36} {:>8.1} {:>8.1} {:>8.1}",
                "default settings", default_a, default_b, default_mean
            ),
            format!(
                "{:<36} {:>8.1} {:>8.1}",
                "in-sample (tuned on the same half)",
                v(search.best[A], A),
                v(search.best[B], B)
            ),
            String::new(),
            format!(
                "every series: tuned {in_sample:.1} in-sample, default {default_all:.1} (the held-out mean above is the honest figure)"
            ),
        ];
        let best = t[search.best[ALL]][ALL];
        lines.push(format!(
            "  tuned: {} firings, {} windows detected of {}, NAB tp/fn/fp {}/{}/{}",
            best.fires, best.detected, best.windows, best.tp, best.fn_, best.fp
        ));
        lines.push(format!(
            "  default: {} firings, {} windows detected of {}, NAB tp/fn/fp {}/{}/{}",
            all.fires, all.detected, all.windows, all.tp, all.fn_, all.fp
        ));
        for (s, h) in series.iter().zip(halves) {
            tracing::debug!(series = %s.name, half = if *h == A { "A" } else { "B" }, "split");
        }
        let header = vec![
            "heal tune: detector settings for `heal replay --params` and `heal watch --params`"
                .to_owned(),
            format!("tuned on {what}"),
            format!(
                "objective {}, seed {}, {} trials",
                obj.name(),
                args.seed,
                candidates.len() - 2
            ),
            format!("in-sample score {in_sample:.1} (default settings {default_all:.1})"),
            format!(
                "held-out score (2-fold cross-validation): half A {held_a:.1}, half B {held_b:.1}, mean {held_mean:.1} (default settings: {default_a:.1}, {default_b:.1}, mean {default_mean:.1})"
            ),
        ];
        Report { lines, header }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let _ = writeln!(out, "{l}");
        }
        out
    }

    fn header(&self) -> Vec<String> {
        self.header.clone()
    }
}

/// The parameter file: a comment header, then one `field: value` line per
/// setting. Values are written as JSON scalars, which YAML reads as the
/// same numbers and strings; the file is read back with `deny_unknown_fields`.
fn params_yaml(cfg: &DetectorConfig, header: &[String]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    let value = serde_json::to_value(cfg).expect("detector settings serialize to JSON");
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, category: &str) -> TuneSeries {
        TuneSeries::new(
            name.to_owned(),
            category.to_owned(),
            BTreeMap::new(),
            vec![0, 1],
            vec![0.0, 0.0],
            vec![],
        )
    }

    #[test]
    fn split_is_seeded_stratified_and_balanced() {
        let all: Vec<TuneSeries> = (0..7)
            .map(|i| series(&format!("a{i}"), "a"))
            .chain((0..4).map(|i| series(&format!("b{i}"), "b")))
            .collect();
        let h = split(&all, 7);
        assert_eq!(h, split(&all, 7), "same seed, same split");
        let in_a = |range: std::ops::Range<usize>| range.filter(|&i| h[i] == A).count();
        assert_eq!(in_a(0..7), 4, "category a dealt 4/3");
        assert_eq!(in_a(7..11), 2, "category b dealt 2/2");
        let others: Vec<Vec<usize>> = (0..8).map(|s| split(&all, s)).collect();
        assert!(others.iter().any(|o| *o != h), "the seed changes the split");
    }

    #[test]
    fn candidates_are_valid_seeded_and_start_with_the_defaults() {
        let c = candidates(50, 3);
        assert_eq!(c.len(), 52);
        assert_eq!(c[0], DetectorConfig::default());
        assert_eq!(c[1], DetectorConfig::sensitive());
        for cfg in &c {
            assert!(cfg.problems().is_empty(), "{cfg:?}: {:?}", cfg.problems());
        }
        assert_eq!(c, candidates(50, 3));
        assert_ne!(c[2..], candidates(50, 4)[2..]);
    }

    #[test]
    fn tally_values() {
        let t = Tally {
            windows: 2,
            raw: 0.0,
            fires: 4,
            true_fires: 2,
            detected: 1,
            ..Tally::default()
        };
        // NAB: raw 0 is halfway between null (-2) and perfect (2).
        assert!((t.value(Objective::Standard) - 50.0).abs() < 1e-9);
        // F1 of precision 0.5 and recall 0.5.
        assert!((t.value(Objective::F1) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn sig3_rounds() {
        assert_eq!(sig3(0.123456), 0.123);
        assert_eq!(sig3(12345.0), 12300.0);
        assert_eq!(sig3(7.777), 7.78);
    }

    #[test]
    fn params_file_reads_back() {
        let cfg = candidates(3, 9).pop().expect("a candidate");
        let text = params_yaml(&cfg, &["tuned on x".to_owned()]);
        assert!(text.starts_with("# tuned on x\n"), "{text}");
        let back = remediate::runbook::detector_params_from_source(Path::new("p.yaml"), &text)
            .expect("reads back");
        assert_eq!(back, cfg);
    }
}
