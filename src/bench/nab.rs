//! The NAB benchmark on a NAB-layout directory (`heal bench nab DIR`).
//!
//! Every series is scored once per configuration (the raw score each row
//! would fire with), then [`detect::nab::Sweep`] replays the excursion logic
//! at every candidate threshold. The best corpus-wide threshold is the
//! in-sample figure NAB's scoreboard reports; `--cv` adds the honest one,
//! [`detect::nab::cross_validate`]: each category scored at the threshold
//! chosen on the *other* categories (leave one category out). `--results`
//! writes every series' per-row output in NAB's results layout so that
//! NAB's own scorer can check the figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use detect::nab::{
    self, cross_validate, default_thresholds, CrossValidation, Pooled, Profile, RawSeries, Replay,
    Sweep,
};
use detect::{Detector, DetectorConfig, DetectorKind};
use ingest::{Admit, Sanitizer};

use crate::error::Context as _;
use crate::{Error, Result};

/// What to run (`heal bench nab`'s arguments).
#[derive(Debug, Clone)]
pub struct NabConfig {
    /// The corpus directory, such as `../shared/datasets/nab-dev`.
    pub dir: PathBuf,
    /// Which detector to run; `all` prints every one side by side.
    pub detector: DetectorName,
    /// Also print each file's result at the best standard threshold.
    pub per_file: bool,
    /// Also cross-validate: leave one category out, the threshold chosen on
    /// the other categories.
    pub cv: bool,
    /// Write every series' per-row output here, in NAB's results layout.
    pub results: Option<PathBuf>,
}

/// A detector configuration of the bench (and of `heal score --detector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorName {
    /// The adaptive-threshold detector with its default settings (threshold
    /// 0.4: no alarm on 100,000 samples of stationary noise).
    Adaptive,
    /// The adaptive-threshold detector with the sensitive preset (threshold
    /// 0.17, among the best corpus-wide thresholds on NAB).
    Sensitive,
    /// Bayesian online changepoint detection (`kind: changepoint`).
    Changepoint,
    /// The residual against a periodically refitted MSTL decomposition
    /// (`kind: seasonal`).
    Seasonal,
    /// The adaptive and changepoint detectors combined (`kind: ensemble`).
    Ensemble,
    /// The novelty detector (`kind: novelty`) with the sensitive preset's
    /// other settings (threshold 0.17).
    Novelty,
    /// The NAB configuration, [`DetectorConfig::nab`]: `kind: novelty` at
    /// [`DetectorConfig::NAB_THRESHOLD`].
    Nab,
    /// Every detector above, side by side.
    All,
}

impl DetectorName {
    const EACH: [DetectorName; 7] = [
        DetectorName::Adaptive,
        DetectorName::Sensitive,
        DetectorName::Changepoint,
        DetectorName::Seasonal,
        DetectorName::Ensemble,
        DetectorName::Novelty,
        DetectorName::Nab,
    ];

    /// Every name, `all` last.
    const NAMES: [DetectorName; 8] = [
        DetectorName::Adaptive,
        DetectorName::Sensitive,
        DetectorName::Changepoint,
        DetectorName::Seasonal,
        DetectorName::Ensemble,
        DetectorName::Novelty,
        DetectorName::Nab,
        DetectorName::All,
    ];

    /// The name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorName::Adaptive => "adaptive",
            DetectorName::Sensitive => "sensitive",
            DetectorName::Changepoint => "changepoint",
            DetectorName::Seasonal => "seasonal",
            DetectorName::Ensemble => "ensemble",
            DetectorName::Novelty => "novelty",
            DetectorName::Nab => "nab",
            DetectorName::All => "all",
        }
    }

    /// The one configuration this detector runs the whole corpus with
    /// (its threshold is then swept; everything else stays); `None` for
    /// `all`.
    pub fn config(self) -> Option<DetectorConfig> {
        let kind = match self {
            DetectorName::Adaptive => return Some(DetectorConfig::default()),
            DetectorName::Sensitive => return Some(DetectorConfig::sensitive()),
            DetectorName::Nab => return Some(DetectorConfig::nab()),
            DetectorName::All => return None,
            DetectorName::Changepoint => DetectorKind::Changepoint,
            DetectorName::Seasonal => DetectorKind::Seasonal,
            DetectorName::Ensemble => DetectorKind::Ensemble,
            DetectorName::Novelty => DetectorKind::Novelty,
        };
        Some(DetectorConfig {
            kind,
            ..DetectorConfig::sensitive()
        })
    }
}

impl std::str::FromStr for DetectorName {
    type Err = String;

    /// The name as the command line spells it.
    fn from_str(s: &str) -> std::result::Result<DetectorName, String> {
        DetectorName::NAMES
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = DetectorName::NAMES.iter().map(|v| v.as_str()).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for DetectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of the corpus: its key, its rows (and their text, for the
/// results layout) and its windows over rows.
struct Series {
    key: String,
    file: ingest::NabFile,
    windows: Vec<nab::RowWindow>,
}

/// Where the held-out detections go under a results directory (beside the
/// category directories, which NAB's scorer reads by name).
const HELD_OUT_DIR: &str = "held-out";

/// Scores the corpus and prints the NAB scores.
///
/// # Errors
///
/// A directory that is not a NAB corpus, a file that cannot be read,
/// `--cv` on a corpus of one category, a results directory that cannot be
/// written.
pub fn run(args: NabConfig) -> Result<()> {
    let corpus = ingest::NabCorpus::open(&args.dir).map_err(|e| Error::Usage(e.to_string()))?;
    if corpus.files().is_empty() {
        return Err(Error::Usage(format!(
            "{}: no data/<category>/*.csv files",
            args.dir.display()
        )));
    }
    let mut series = Vec::with_capacity(corpus.files().len());
    for entry in corpus.files() {
        let file = corpus.read(entry)?;
        let ts: Vec<i64> = file.rows().iter().map(|r| r.ts_ms).collect();
        let windows = nab::windows_to_rows(&ts, corpus.windows(&entry.key));
        series.push(Series {
            key: entry.key.clone(),
            file,
            windows,
        });
    }
    let categories: std::collections::BTreeSet<&str> =
        series.iter().map(|s| nab::category_of(&s.key)).collect();
    if args.cv && categories.len() < 2 {
        return Err(Error::Usage(format!(
            "{}: --cv leaves one category out and needs at least two (found {})",
            args.dir.display(),
            categories.len()
        )));
    }
    if args.results.is_some() && args.cv && categories.contains(HELD_OUT_DIR) {
        return Err(Error::Usage(format!(
            "{}: a category named {HELD_OUT_DIR:?} clashes with where --results --cv writes the \
             held-out detections",
            args.dir.display()
        )));
    }
    let points: usize = series.iter().map(|s| s.file.rows().len()).sum();
    let windows: usize = series.iter().map(|s| s.windows.len()).sum();
    println!(
        "NAB corpus {}: {} files, {} points, {} windows, {} categories; detector {}",
        args.dir.display(),
        series.len(),
        points,
        windows,
        categories.len(),
        args.detector.as_str()
    );
    match args.detector.config() {
        None => run_all(&args, &series),
        Some(cfg) => run_one(&args, &series, &cfg),
    }
}

/// `--detector all`: one row per detector, then the held-out results per
/// category with `--cv`.
fn run_all(args: &NabConfig, series: &[Series]) -> Result<()> {
    let runs: Vec<(DetectorName, DetectorRun)> = DetectorName::EACH
        .iter()
        .map(|&name| {
            let cfg = name
                .config()
                .expect("every name but all has a configuration");
            (name, DetectorRun::new(series, &cfg, args.cv))
        })
        .collect();
    println!();
    if args.cv {
        println!(
            "{:<12} {:>6} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6} {:>6}   {:>6} {:>6}   {:>9}",
            "detector",
            "std@", "in", "cv", "mean",
            "lowFP@", "in", "cv", "mean",
            "lowFN@", "in", "cv", "mean",
            "own@", "std",
            "ns/point"
        );
    } else {
        println!(
            "{:<12} {:>6} {:>6} {:>11}   {:>6} {:>6} {:>11}   {:>6} {:>6} {:>11}   {:>6} {:>6}   {:>9}",
            "detector",
            "std@", "score", "tp/fn/fp",
            "lowFP@", "score", "tp/fn/fp",
            "lowFN@", "score", "tp/fn/fp",
            "own@", "std",
            "ns/point"
        );
    }
    for (name, run) in &runs {
        let cells: Vec<String> = Profile::ALL
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let best = run.best(*p);
                match &run.cv {
                    Some(cv) => format!(
                        "{:>6.3} {:>6.1} {:>6.1} {:>6.1}",
                        best.threshold,
                        norm(&best),
                        norm(&cv[k].pooled),
                        cv[k].mean
                    ),
                    None => format!(
                        "{:>6.3} {:>6.1} {:>11}",
                        best.threshold,
                        norm(&best),
                        counts(&best)
                    ),
                }
            })
            .collect();
        let own = run.own(Profile::STANDARD);
        println!(
            "{:<12} {}   {:>6.3} {:>6.1}   {:>9.1}",
            name.as_str(),
            cells.join("   "),
            run.threshold,
            norm(&own),
            run.ns_per_point()
        );
    }
    println!();
    println!(
        "each detector: one configuration for the whole corpus; in-sample at its best corpus-wide \
         threshold per profile (NAB's scoreboard figure){}; own@ = the configuration's own \
         threshold; ns/point = sample policy + detector, one core",
        if args.cv {
            "; cv = leave one category out (the threshold chosen on the other categories, each \
             category scored at its fold's choice, pooled over all windows); mean = mean over the \
             categories with windows"
        } else {
            ""
        }
    );
    if args.cv {
        for (k, profile) in Profile::ALL.iter().enumerate() {
            println!();
            println!(
                "held-out per category, {}: score at the threshold chosen on the other \
                 categories (fp = false alarms of a category without windows)",
                profile.name
            );
            let cv0 = &runs[0].1.cv.as_ref().expect("cv was asked for")[k];
            let width: Vec<usize> = cv0.folds.iter().map(|f| f.category.len().max(16)).collect();
            let mut head = format!("{:<12}", "detector");
            for (f, w) in cv0.folds.iter().zip(&width) {
                head.push_str(&format!("  {:<w$}", f.category));
            }
            println!("{}", head.trim_end());
            for (name, run) in &runs {
                let cv = &run.cv.as_ref().expect("cv was asked for")[k];
                let mut line = format!("{:<12}", name.as_str());
                for (f, w) in cv.folds.iter().zip(&width) {
                    line.push_str(&format!("  {:<w$}", held_out_cell(&f.held_out)));
                }
                println!("{}", line.trim_end());
            }
        }
    }
    if let Some(out) = &args.results {
        println!();
        for (name, run) in &runs {
            let dir = out.join(name.as_str());
            run.write_results(series, &dir)?;
            println!("{}", run.results_note(&args.dir, &dir));
        }
    }
    Ok(())
}

/// One detector: its best and own thresholds per profile, the folds with
/// `--cv`, each file with `--per-file`.
fn run_one(args: &NabConfig, series: &[Series], cfg: &DetectorConfig) -> Result<()> {
    let run = DetectorRun::new(series, cfg, args.cv);
    println!();
    println!(
        "{:<20} {:>10} {:>8} {:>14}   {:>10} {:>8} {:>14}",
        "profile", "best thr", "score", "tp/fn/fp", "default", "score", "tp/fn/fp"
    );
    for profile in Profile::ALL {
        let best = run.best(profile);
        let own = run.own(profile);
        println!(
            "{:<20} {:>10.3} {:>8.1} {:>14}   {:>10.3} {:>8.1} {:>14}",
            profile.name,
            best.threshold,
            norm(&best),
            counts(&best),
            cfg.threshold,
            norm(&own),
            counts(&own),
        );
    }
    if let Some(cvs) = &run.cv {
        println!();
        println!(
            "leave one category out: the threshold chosen on the other categories, each category \
             scored at its fold's choice"
        );
        println!(
            "{:<20} {:>10} {:>8} {:>14}   {:>10} {:>14}   {:>8}",
            "profile", "in-s. thr", "score", "tp/fn/fp", "cv", "tp/fn/fp", "cv mean"
        );
        for cv in cvs {
            println!(
                "{:<20} {:>10.3} {:>8.1} {:>14}   {:>10.1} {:>14}   {:>8.1}",
                cv.profile.name,
                cv.in_sample.threshold,
                norm(&cv.in_sample),
                counts(&cv.in_sample),
                norm(&cv.pooled),
                counts(&cv.pooled),
                cv.mean
            );
        }
        println!();
        println!(
            "held-out per category: score at the threshold chosen on the other categories \
             (fp = false alarms of a category without windows)"
        );
        let width = cvs[0]
            .folds
            .iter()
            .map(|f| f.category.len())
            .max()
            .unwrap_or(0)
            .max(8);
        let mut head = format!("{:<width$} {:>6} {:>7}", "category", "series", "windows");
        for p in Profile::ALL {
            head.push_str(&format!("   {:<26}", p.name));
        }
        println!("{}", head.trim_end());
        for (i, fold) in cvs[0].folds.iter().enumerate() {
            let mut line = format!(
                "{:<width$} {:>6} {:>7}",
                fold.category, fold.series, fold.held_out.windows
            );
            for cv in cvs {
                let f = &cv.folds[i];
                line.push_str(&format!(
                    "   {:<26}",
                    format!("{} {}", held_out_cell(&f.held_out), counts(&f.held_out))
                ));
            }
            println!("{}", line.trim_end());
        }
    }
    if args.per_file {
        let best_t = run.best(Profile::STANDARD).threshold;
        for (title, t) in [
            ("the best standard threshold", best_t),
            ("the default threshold", cfg.threshold),
        ] {
            println!();
            println!("per file at {title} {t:.3}:");
            let sweep = Sweep::new(&run.raw, &[t], run.replay);
            for (i, name) in sweep.names().iter().enumerate() {
                let s = sweep.at(0, Profile::STANDARD, |j| j == i);
                println!(
                    "  {:<58} {:>7.2}  tp {} fn {} fp {}",
                    name, s.raw, s.tp, s.fn_, s.fp
                );
            }
        }
    }
    if let Some(out) = &args.results {
        run.write_results(series, out)?;
        println!();
        println!("{}", run.results_note(&args.dir, out));
    }
    println!();
    println!(
        "scoring: {:.0} points/s ({:.1} ns/point, sample policy + detector, one core)",
        1e9 / run.ns_per_point().max(1e-9),
        run.ns_per_point()
    );
    Ok(())
}

/// A normalised score; 0 for a result without windows.
fn norm(p: &Pooled) -> f64 {
    p.normalized().unwrap_or(0.0)
}

/// `tp/fn/fp`.
fn counts(p: &Pooled) -> String {
    format!("{}/{}/{}", p.tp, p.fn_, p.fp)
}

/// `81.8 @0.175`, or `3 fp @0.190` for a category without windows.
fn held_out_cell(p: &Pooled) -> String {
    match p.normalized() {
        Some(n) => format!("{n:.1} @{:.3}", p.threshold),
        None => format!("{} fp @{:.3}", p.fp, p.threshold),
    }
}

/// One detector's run over the corpus: each file's raw scores (the score
/// every sample would fire with; NaN for rows the sample policy dropped),
/// the threshold sweep, the cross-validation per profile, and the scoring
/// time.
struct DetectorRun {
    raw: Vec<RawSeries>,
    replay: Replay,
    /// The configuration's own threshold.
    threshold: f64,
    sweep: Sweep,
    /// Per profile (in [`Profile::ALL`]'s order), with `--cv`.
    cv: Option<Vec<CrossValidation>>,
    elapsed: Duration,
    points: usize,
}

impl DetectorRun {
    /// Scores the corpus once with `cfg`'s detector (timed), then sweeps
    /// the threshold ([`Sweep`]: the excursion logic replayed at each
    /// candidate, the reset threshold scaled alike) and, with `cv`,
    /// cross-validates it.
    fn new(series: &[Series], cfg: &DetectorConfig, cv: bool) -> DetectorRun {
        let mut elapsed = Duration::ZERO;
        let mut points = 0;
        let raw: Vec<RawSeries> = series
            .iter()
            .map(|s| {
                let t0 = Instant::now();
                let raw = raw_scores(s.file.rows(), cfg);
                elapsed += t0.elapsed();
                points += raw.len();
                RawSeries {
                    name: s.key.clone(),
                    raw,
                    windows: s.windows.clone(),
                }
            })
            .collect();
        let replay = Replay::of(cfg);
        let sweep = Sweep::new(&raw, &default_thresholds(), replay);
        let cv = cv.then(|| {
            Profile::ALL
                .iter()
                .map(|p| {
                    cross_validate(std::slice::from_ref(&sweep), *p)
                        .expect("checked: at least two categories")
                })
                .collect()
        });
        DetectorRun {
            raw,
            replay,
            threshold: cfg.threshold,
            sweep,
            cv,
            elapsed,
            points,
        }
    }

    fn ns_per_point(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / self.points.max(1) as f64
    }

    /// The best corpus-wide threshold under `profile`, with its result.
    fn best(&self, profile: Profile) -> Pooled {
        self.sweep.best(profile, |_| true).1
    }

    /// The result at the configuration's own threshold.
    fn own(&self, profile: Profile) -> Pooled {
        Sweep::new(&self.raw, &[self.threshold], self.replay).at(0, profile, |_| true)
    }

    /// Writes every series' per-row output at the best standard threshold
    /// to `dir/<category>/<file>.csv` (NAB's results layout), and with
    /// `--cv` the held-out detections (1 where the series fires at its
    /// fold's threshold, 0 elsewhere) to `dir/held-out/<category>/<file>.csv`.
    fn write_results(&self, series: &[Series], dir: &Path) -> Result<()> {
        let t = self.best(Profile::STANDARD).threshold;
        let fold_t = |key: &str| {
            self.cv.as_ref().map(|cvs| {
                cvs[0]
                    .folds
                    .iter()
                    .find(|f| f.category == nab::category_of(key))
                    .expect("every category has a fold")
                    .threshold
            })
        };
        for (s, raw) in series.iter().zip(&self.raw) {
            write_one(
                &dir.join(nab::results_path(&s.key)),
                &s.file,
                &self.replay.fire(&raw.raw, t),
            )?;
            if let Some(ft) = fold_t(&s.key) {
                let fired: Vec<f64> = self
                    .replay
                    .fire(&raw.raw, ft)
                    .iter()
                    .map(|&x| if x >= ft { 1.0 } else { 0.0 })
                    .collect();
                write_one(
                    &dir.join(HELD_OUT_DIR).join(nab::results_path(&s.key)),
                    &s.file,
                    &fired,
                )?;
            }
        }
        Ok(())
    }

    /// What was written and how to re-score it.
    fn results_note(&self, corpus: &Path, dir: &Path) -> String {
        let t = self.best(Profile::STANDARD).threshold;
        let mut note = format!(
            "results at threshold {t:.3} (the best standard, in-sample) written to {d}; \
             re-score: nab_score.py {c} {d} --fixed {t:.3}",
            d = dir.display(),
            c = corpus.display()
        );
        if self.cv.is_some() {
            let held = dir.join(HELD_OUT_DIR);
            note.push_str(&format!(
                "\nheld-out detections (1 at each firing, at its standard fold's threshold) written to \
                 {h}; re-score the standard cv figure: nab_score.py {c} {h} --fixed 1",
                h = held.display(),
                c = corpus.display()
            ));
        }
        note
    }
}

/// One series in NAB's results layout ([`nab::write_results_csv`]).
fn write_one(path: &Path, file: &ingest::NabFile, scores: &[f64]) -> Result<()> {
    let mut text = String::with_capacity(file.rows().len() * 40);
    nab::write_results_csv(
        &mut text,
        file.rows().iter().map(|r| {
            file.row_text(r)
                .split_once(',')
                .unwrap_or((file.row_text(r), ""))
        }),
        scores,
    )
    .expect("writing to a String does not fail");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    stdx::write_atomically(path, text.as_bytes())?;
    Ok(())
}

/// Every row's raw score, online, in file order; NaN for the rows the
/// sample policy drops (they never reach the detector).
fn raw_scores(rows: &[ingest::NabRow], cfg: &DetectorConfig) -> Vec<f64> {
    let mut sanitizer = Sanitizer::default();
    let mut detector = Detector::scores_only(cfg.clone());
    rows.iter()
        .map(|r| match sanitizer.admit(r.ts_ms, r.value) {
            Admit::Accept { sample, .. } => detector.update(sample.ts_ms, sample.value).score,
            Admit::Drop(_) => f64::NAN,
        })
        .collect()
}
