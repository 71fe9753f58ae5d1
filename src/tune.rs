//! `heal tune`: a seeded random search over the adaptive
//! detector's settings, with a cross-validated figure, written as a
//! parameter file that `heal replay --params` and `heal watch --params`
//! read.
//!
//! Why cross-validation: the best of 200 configurations scored on the very
//! series it was picked on is an optimistic figure (the search fits the
//! noise of those series as much as their anomalies). So the settings are
//! chosen on some series and scored on others, and the held-out scores are
//! what a new series can expect. The written configuration is the one
//! picked on every series (more data, the same procedure), shown with its
//! in-sample score next to the honest one.
//!
//! Which split: a NAB corpus with at least two categories is split as
//! `heal bench nab --cv` splits it, leave one category out
//! ([`detect::nab::cross_validate`] makes the choice for the NAB
//! objectives, each candidate a sweep at its own threshold): the settings
//! are chosen on the other categories and scored on the left-out one, which
//! asks what a new *kind* of data can expect (the part of NAB kept aside
//! from development holds categories the development part does not have).
//! Anything else (heal datasets, whose series have no categories, or a
//! corpus of one category) is split into two halves by seed, stratified by
//! metric name or category: tuned on one half, scored on the other.
//!
//! Why one core: the machine heal tunes on is usually the one it watches
//! from. A trial scores every series once (sample policy and detector, as
//! `heal bench nab` does), which is cheap enough that 200 trials over the
//! NAB development subset (24 series, about 100,000 points) take about 8 s
//! even in a debug build.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use detect::nab::{self, NabFile, Profile, RawSeries, Replay, Sweep};
use detect::{Detector, DetectorConfig};
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
    let split = Split::of(&series, kind, args.seed);
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
    let search = search(&series, &split, &candidates, args.objective, || bar.inc(1));
    bar.finish_and_clear();
    let report = Report::new(&args, kind, &series, &split, &candidates, &search);
    print!("{}", report.text());
    let best = &candidates[search.best_on(args.objective, |_| true)];
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

/// Half A and half B of the 2-fold split.
const A: usize = 0;
const B: usize = 1;

/// How the series are split for cross-validation: each series' group, and
/// what the groups are.
#[derive(Debug)]
struct Split {
    /// The group of each series (a half, or a category's index).
    group: Vec<usize>,
    kind: SplitKind,
}

#[derive(Debug, PartialEq)]
enum SplitKind {
    /// Two halves by seed (groups [`A`] and [`B`]), stratified by `by`.
    Halves { by: &'static str },
    /// Leave one category out: one group per category, in the order of
    /// [`detect::nab::cross_validate`]'s folds (sorted by name).
    Categories(Vec<String>),
}

impl Split {
    /// Leave one category out for a NAB corpus of two categories or more;
    /// two seeded halves otherwise.
    fn of(series: &[TuneSeries], kind: Kind, seed: u64) -> Split {
        let cats: std::collections::BTreeSet<&str> =
            series.iter().map(|s| s.category.as_str()).collect();
        if kind == Kind::Nab && cats.len() >= 2 {
            let names: Vec<String> = cats.iter().map(|c| (*c).to_owned()).collect();
            let group = series
                .iter()
                .map(|s| {
                    names
                        .iter()
                        .position(|c| *c == s.category)
                        .expect("every category is listed")
                })
                .collect();
            return Split {
                group,
                kind: SplitKind::Categories(names),
            };
        }
        Split {
            group: halves(series, seed),
            kind: SplitKind::Halves {
                by: match kind {
                    Kind::Nab => "category",
                    Kind::Datasets => "metric name",
                },
            },
        }
    }

    fn groups(&self) -> usize {
        match &self.kind {
            SplitKind::Halves { .. } => 2,
            SplitKind::Categories(c) => c.len(),
        }
    }
}

/// What the search found: per candidate the tally of each group of the
/// split and of every series, and, for a NAB objective on the category
/// split, its sweep at its own threshold (for `cross_validate`).
#[derive(Debug)]
struct Search {
    /// `tallies[candidate][group]`.
    tallies: Vec<Vec<Tally>>,
    sweeps: Vec<Sweep>,
}

impl Search {
    /// The candidate's tally over the groups for which `member` is true.
    fn over(&self, candidate: usize, member: impl Fn(usize) -> bool) -> Tally {
        let mut t = Tally::default();
        for (g, one) in self.tallies[candidate].iter().enumerate() {
            if member(g) {
                t.add(one);
            }
        }
        t
    }

    /// The best candidate over the groups for which `member` is true (ties
    /// go to the earlier candidate, so the defaults win a tie).
    fn best_on(&self, objective: Objective, member: impl Fn(usize) -> bool) -> usize {
        let mut best = 0;
        let mut best_value = f64::NEG_INFINITY;
        for c in 0..self.tallies.len() {
            let v = self.over(c, &member).value(objective);
            if v > best_value {
                (best, best_value) = (c, v);
            }
        }
        best
    }

    /// The candidate chosen without each group: by
    /// [`detect::nab::cross_validate`] for a NAB objective on the category
    /// split (as `heal bench nab --cv` chooses), by the objective on the
    /// other groups otherwise.
    fn held_out_choice(&self, split: &Split, objective: Objective) -> Vec<usize> {
        if let (SplitKind::Categories(_), false) = (&split.kind, self.sweeps.is_empty()) {
            let cv = nab::cross_validate(&self.sweeps, objective.profile())
                .expect("two categories or more");
            return cv.folds.iter().map(|f| f.config).collect();
        }
        (0..split.groups())
            .map(|g| self.best_on(objective, |h| h != g))
            .collect()
    }
}

/// Scores every candidate on every series once and sums per group.
fn search(
    series: &[TuneSeries],
    split: &Split,
    candidates: &[DetectorConfig],
    objective: Objective,
    mut tick: impl FnMut(),
) -> Search {
    let sweeps_wanted =
        matches!(split.kind, SplitKind::Categories(_)) && objective != Objective::F1;
    let mut tallies = Vec::with_capacity(candidates.len());
    let mut sweeps = Vec::new();
    for cfg in candidates {
        let replay = Replay::of(cfg);
        let mut t = vec![Tally::default(); split.groups()];
        let mut raws = Vec::new();
        for (s, group) in series.iter().zip(&split.group) {
            let raw = raw_scores(s, cfg);
            t[*group].add(&score_series(s, &raw, cfg, replay, objective.profile()));
            if sweeps_wanted {
                raws.push(RawSeries {
                    name: s.nab.name.clone(),
                    raw,
                    windows: s.nab.windows.clone(),
                });
            }
        }
        tallies.push(t);
        if sweeps_wanted {
            sweeps.push(Sweep::new(&raws, &[cfg.threshold], replay));
        }
        tick();
    }
    Search { tallies, sweeps }
}

/// Every row's raw score (what it would fire with), through the sample
/// policy and a fresh detector; NaN for a row the policy drops.
fn raw_scores(s: &TuneSeries, cfg: &DetectorConfig) -> Vec<f64> {
    let mut sanitizer = Sanitizer::default();
    let mut detector = Detector::scores_only(cfg.clone());
    s.ts.iter()
        .zip(&s.values)
        .map(|(&ts, &v)| match sanitizer.admit(ts, v) {
            Admit::Accept { sample, .. } => detector.update(sample.ts_ms, sample.value).score,
            Admit::Drop(_) => f64::NAN,
        })
        .collect()
}

/// Scores one series' firings at the configuration's threshold (the rows
/// whose excursion fired: what opens an incident; the excursion logic
/// replayed over the raw scores, exactly what an online run reports)
/// against its windows, both as NAB does and as `heal replay` evaluates
/// incidents.
fn score_series(
    s: &TuneSeries,
    raw: &[f64],
    cfg: &DetectorConfig,
    replay: Replay,
    profile: Profile,
) -> Tally {
    let fired: Vec<usize> = replay
        .fire(raw, cfg.threshold)
        .iter()
        .enumerate()
        .filter(|(_, &x)| x >= cfg.threshold && x > 0.0)
        .map(|(row, _)| row)
        .collect();
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
        diagnosis: None,
    }
}

/// The seeded split into halves A (0) and B (1), stratified by category:
/// each category's series are shuffled and dealt alternately, the deal
/// going on from one category to the next so the halves differ in size by
/// at most one.
fn halves(series: &[TuneSeries], seed: u64) -> Vec<usize> {
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
        split: &Split,
        candidates: &[DetectorConfig],
        search: &Search,
    ) -> Report {
        let obj = args.objective;
        let v = |t: Tally| t.value(obj);
        let best_all = search.best_on(obj, |_| true);
        let in_sample = v(search.over(best_all, |_| true));
        let default_all = v(search.over(0, |_| true));
        let all = search.over(0, |_| true);
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
        ];
        // Per group: the held-out result (the choice made without it), the
        // default settings, and the in-sample choice.
        let choice = search.held_out_choice(split, obj);
        let held: Vec<Tally> = (0..split.groups())
            .map(|g| search.tallies[choice[g]][g])
            .collect();
        let default: Vec<Tally> = (0..split.groups()).map(|g| search.tallies[0][g]).collect();
        let fitted: Vec<Tally> = (0..split.groups())
            .map(|g| search.tallies[best_all][g])
            .collect();
        let pooled = |ts: &[Tally]| {
            let mut t = Tally::default();
            ts.iter().for_each(|x| t.add(x));
            v(t)
        };
        // The mean over groups with windows (a group without any has no
        // scale: its NAB result is only the cost of its false alarms).
        let mean = |ts: &[Tally]| {
            let with: Vec<f64> = ts.iter().filter(|t| t.windows > 0).map(|t| v(*t)).collect();
            with.iter().sum::<f64>() / with.len().max(1) as f64
        };
        let split_line;
        let held_line;
        match &split.kind {
            SplitKind::Halves { by } => {
                let count = |set: usize| split.group.iter().filter(|h| **h == set).count();
                split_line = format!(
                    "split: 2-fold cross-validation, halves stratified by {by}: half A {} series ({} windows), half B {} series ({} windows){}",
                    count(A),
                    default[A].windows,
                    count(B),
                    default[B].windows,
                    if kind == Kind::Nab {
                        " (one category: nothing to leave out)"
                    } else {
                        ""
                    }
                );
                let (held_a, held_b) = (v(held[A]), v(held[B]));
                let held_mean = (held_a + held_b) / 2.0;
                let (default_a, default_b) = (v(default[A]), v(default[B]));
                let default_mean = (default_a + default_b) / 2.0;
                lines.push(split_line.clone());
                lines.push(String::new());
                lines.push(format!(
                    "{:<36} {:>8} {:>8} {:>8}",
                    obj.name(),
                    "half A",
                    "half B",
                    "mean"
                ));
                lines.push(format!(
                    "{:<36} {:>8.1} {:>8.1} {:>8.1}",
                    "held-out (tuned on the other half)", held_a, held_b, held_mean
                ));
                lines.push(format!(
                    "{:<36} {:>8.1} {:>8.1} {:>8.1}",
                    "default settings", default_a, default_b, default_mean
                ));
                lines.push(format!(
                    "{:<36} {:>8.1} {:>8.1}",
                    "in-sample (tuned on the same half)",
                    v(search.over(search.best_on(obj, |g| g == A), |g| g == A)),
                    v(search.over(search.best_on(obj, |g| g == B), |g| g == B)),
                ));
                lines.push(String::new());
                lines.push(format!(
                    "every series: tuned {in_sample:.1} in-sample, default {default_all:.1} (the held-out mean above is the honest figure)"
                ));
                held_line = format!(
                    "held-out score (2-fold cross-validation): half A {held_a:.1}, half B {held_b:.1}, mean {held_mean:.1} (default settings: {default_a:.1}, {default_b:.1}, mean {default_mean:.1})"
                );
            }
            SplitKind::Categories(names) => {
                split_line = format!(
                    "split: leave one category out ({} categories, as `heal bench nab --cv`): settings chosen on the other categories, scored on the left-out one",
                    names.len()
                );
                lines.push(split_line.clone());
                lines.push(String::new());
                let widths: Vec<usize> = names.iter().map(|n| n.len().max(8)).collect();
                let row = |label: &str, ts: &[Tally]| {
                    let mut line = format!("{label:<44}");
                    for (t, w) in ts.iter().zip(&widths) {
                        line.push_str(&format!(" {:>w$.1}", v(*t)));
                    }
                    line.push_str(&format!(" {:>8.1} {:>8.1}", pooled(ts), mean(ts)));
                    line
                };
                let mut head = format!("{:<44}", obj.name());
                for (n, w) in names.iter().zip(&widths) {
                    head.push_str(&format!(" {n:>w$}"));
                }
                head.push_str(&format!(" {:>8} {:>8}", "pooled", "mean"));
                lines.push(head);
                lines.push(row("held-out (tuned on the other categories)", &held));
                lines.push(row("default settings", &default));
                lines.push(row("in-sample (tuned on every category)", &fitted));
                if held.iter().any(|t| t.windows == 0) && obj != Objective::F1 {
                    lines.push(
                        "(a category without windows scores its raw NAB result, the cost of its false alarms; the mean leaves it out)"
                            .to_owned(),
                    );
                }
                lines.push(String::new());
                lines.push(format!(
                    "every series: tuned {in_sample:.1} in-sample, default {default_all:.1} (the held-out pooled figure above is the honest one)"
                ));
                held_line = format!(
                    "held-out score (leave one category out): pooled {:.1}, mean {:.1} (default settings: pooled {:.1}, mean {:.1})",
                    pooled(&held),
                    mean(&held),
                    pooled(&default),
                    mean(&default)
                );
            }
        }
        let best = search.over(best_all, |_| true);
        lines.push(format!(
            "  tuned: {} firings, {} windows detected of {}, NAB tp/fn/fp {}/{}/{}",
            best.fires, best.detected, best.windows, best.tp, best.fn_, best.fp
        ));
        lines.push(format!(
            "  default: {} firings, {} windows detected of {}, NAB tp/fn/fp {}/{}/{}",
            all.fires, all.detected, all.windows, all.tp, all.fn_, all.fp
        ));
        for (s, g) in series.iter().zip(&split.group) {
            tracing::debug!(series = %s.name, group = g, "split");
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
            split_line,
            format!("in-sample score {in_sample:.1} (default settings {default_all:.1})"),
            held_line,
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

    /// A series of `n` five-minute samples of seeded noise with spikes of
    /// `size` spreads at `spikes`, each in a window of 21 rows.
    fn spiky(name: &str, seed: u64, spikes: &[usize], size: f64) -> TuneSeries {
        let n = 1200;
        let mut rng = SplitMix64::new(seed);
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 300_000).collect();
        let values = (0..n)
            .map(|i| 10.0 + rng.noise() + if spikes.contains(&i) { size } else { 0.0 })
            .collect();
        let windows = spikes.iter().map(|&i| (ts[i - 10], ts[i + 10])).collect();
        let category = nab::category_of(name).to_owned();
        TuneSeries::new(
            name.to_owned(),
            category,
            BTreeMap::new(),
            ts,
            values,
            windows,
        )
    }

    #[test]
    fn held_out_figures_match_cross_validate_for_nab_objectives() {
        // The table is summed from per-category tallies; for a NAB
        // objective on the category split the choice is
        // `detect::nab::cross_validate`'s, and the tallies must give its
        // held-out figures exactly.
        let series = vec![
            spiky("a/1.csv", 1, &[500, 900], 4.0),
            spiky("a/2.csv", 2, &[700], 6.0),
            spiky("b/1.csv", 3, &[400, 1000], 8.0),
            spiky("c/1.csv", 4, &[], 0.0),
        ];
        let split = Split::of(&series, Kind::Nab, 1);
        assert_eq!(
            split.kind,
            SplitKind::Categories(vec!["a".into(), "b".into(), "c".into()])
        );
        let cands = candidates(6, 2);
        for objective in [Objective::Standard, Objective::LowFp, Objective::LowFn] {
            let search = search(&series, &split, &cands, objective, || {});
            let cv = nab::cross_validate(&search.sweeps, objective.profile()).unwrap();
            let choice = search.held_out_choice(&split, objective);
            let mut pooled = Tally::default();
            for (g, fold) in cv.folds.iter().enumerate() {
                assert_eq!(choice[g], fold.config);
                let t = search.tallies[fold.config][g];
                pooled.add(&t);
                let want = fold.held_out.normalized().unwrap_or(fold.held_out.raw);
                assert!((t.value(objective) - want).abs() < 1e-9, "{objective}: {g}");
                assert_eq!(
                    (t.tp, t.fn_, t.fp),
                    (fold.held_out.tp, fold.held_out.fn_, fold.held_out.fp)
                );
            }
            let want = cv.pooled.normalized().unwrap();
            assert!((pooled.value(objective) - want).abs() < 1e-9, "{objective}");
            assert_eq!(search.best_on(objective, |_| true), cv.in_sample_config);
        }
        // F1 is not a NAB profile: chosen on the tallies of the other
        // categories, no sweeps.
        let search = search(&series, &split, &cands, Objective::F1, || {});
        assert!(search.sweeps.is_empty());
        let choice = search.held_out_choice(&split, Objective::F1);
        assert_eq!(choice.len(), 3);
        assert_eq!(choice[0], search.best_on(Objective::F1, |g| g != 0));
    }

    #[test]
    fn split_is_seeded_stratified_and_balanced() {
        let all: Vec<TuneSeries> = (0..7)
            .map(|i| series(&format!("a{i}"), "a"))
            .chain((0..4).map(|i| series(&format!("b{i}"), "b")))
            .collect();
        let h = halves(&all, 7);
        assert_eq!(h, halves(&all, 7), "same seed, same split");
        let in_a = |range: std::ops::Range<usize>| range.filter(|&i| h[i] == A).count();
        assert_eq!(in_a(0..7), 4, "category a dealt 4/3");
        assert_eq!(in_a(7..11), 2, "category b dealt 2/2");
        let others: Vec<Vec<usize>> = (0..8).map(|s| halves(&all, s)).collect();
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
