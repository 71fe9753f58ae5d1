//! The NAB benchmark on a NAB-layout directory (`heal bench nab DIR`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use detect::nab::{self, NabFile, Profile};
use detect::{Detector, DetectorConfig, DetectorKind};
use ingest::{Admit, Sanitizer};

use crate::{Error, Result};

/// Threshold settings tried between 0.05 and 0.65 for the best score.
const THRESHOLD_STEPS: usize = 120;

/// What to run (`heal bench nab`'s arguments).
#[derive(Debug, Clone)]
pub struct NabConfig {
    /// The corpus directory, such as `../shared/datasets/nab-dev`.
    pub dir: PathBuf,
    /// Which detector to run; `all` prints every one side by side.
    pub detector: DetectorName,
    /// Also print each file's result at the best standard threshold.
    pub per_file: bool,
}

/// A detector configuration of the bench.
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
    /// Every detector above, side by side.
    All,
}

impl DetectorName {
    const EACH: [DetectorName; 5] = [
        DetectorName::Adaptive,
        DetectorName::Sensitive,
        DetectorName::Changepoint,
        DetectorName::Seasonal,
        DetectorName::Ensemble,
    ];

    /// Every name, `all` last.
    const NAMES: [DetectorName; 6] = [
        DetectorName::Adaptive,
        DetectorName::Sensitive,
        DetectorName::Changepoint,
        DetectorName::Seasonal,
        DetectorName::Ensemble,
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
            DetectorName::All => "all",
        }
    }

    /// The one configuration this detector runs the whole corpus with
    /// (its threshold is then swept; everything else stays).
    fn config(self) -> DetectorConfig {
        let kind = match self {
            DetectorName::Adaptive => return DetectorConfig::default(),
            DetectorName::Sensitive | DetectorName::All => return DetectorConfig::sensitive(),
            DetectorName::Changepoint => DetectorKind::Changepoint,
            DetectorName::Seasonal => DetectorKind::Seasonal,
            DetectorName::Ensemble => DetectorKind::Ensemble,
        };
        DetectorConfig {
            kind,
            ..DetectorConfig::sensitive()
        }
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

/// Scores the corpus and prints the NAB scores.
///
/// # Errors
///
/// A directory that is not a NAB corpus, a file that cannot be read.
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
        series.push((entry.key.clone(), file, windows));
    }
    let points: usize = series.iter().map(|(_, f, _)| f.rows().len()).sum();
    let windows: usize = series.iter().map(|(_, _, w)| w.len()).sum();
    println!(
        "NAB corpus {}: {} files, {} points, {} windows; detector {}",
        args.dir.display(),
        series.len(),
        points,
        windows,
        args.detector.as_str()
    );
    if args.detector == DetectorName::All {
        println!();
        println!(
            "{:<12} {:>6} {:>6} {:>11}   {:>6} {:>6} {:>11}   {:>6} {:>6} {:>11}   {:>9}",
            "detector",
            "std@",
            "score",
            "tp/fn/fp",
            "lowFP@",
            "score",
            "tp/fn/fp",
            "lowFN@",
            "score",
            "tp/fn/fp",
            "ns/point"
        );
        for name in DetectorName::EACH {
            let run = bench_detector(&series, &name.config());
            let cell = |s: &nab::ProfileScores| {
                format!(
                    "{:>6.3} {:>6.1} {:>11}",
                    s.threshold,
                    s.normalized,
                    format!("{}/{}/{}", s.tp, s.fn_, s.fp)
                )
            };
            println!(
                "{:<12} {}   {}   {}   {:>9.1}",
                name.as_str(),
                cell(&run.best[0]),
                cell(&run.best[1]),
                cell(&run.best[2]),
                run.ns_per_point()
            );
        }
        println!();
        println!(
            "each detector: one configuration for the whole corpus, at its best corpus-wide \
             threshold per profile; ns/point = sample policy + detector, one core"
        );
        return Ok(());
    }
    let cfg = args.detector.config();
    let run = bench_detector(&series, &cfg);
    let at_default = run.files_at(&series, &cfg, cfg.threshold);
    println!();
    println!(
        "{:<20} {:>10} {:>8} {:>14}   {:>10} {:>8} {:>14}",
        "profile", "best thr", "score", "tp/fn/fp", "default", "score", "tp/fn/fp"
    );
    for (k, profile) in Profile::ALL.iter().enumerate() {
        let best = run.best[k];
        let dflt = nab::corpus_score(&at_default, cfg.threshold, *profile);
        println!(
            "{:<20} {:>10.3} {:>8.1} {:>14}   {:>10.3} {:>8.1} {:>14}",
            profile.name,
            best.threshold,
            best.normalized,
            format!("{}/{}/{}", best.tp, best.fn_, best.fp),
            cfg.threshold,
            dflt.normalized,
            format!("{}/{}/{}", dflt.tp, dflt.fn_, dflt.fp),
        );
    }
    if args.per_file {
        let t = run.best[0].threshold;
        let best_run = run.files_at(&series, &cfg, t);
        for (title, files, t) in [
            ("the best standard threshold", &best_run, t),
            ("the default threshold", &at_default, cfg.threshold),
        ] {
            println!();
            println!("per file at {title} {t:.3}:");
            for f in files {
                let s = f.score(t, Profile::STANDARD);
                println!(
                    "  {:<58} {:>7.2}  tp {} fn {} fp {}",
                    f.name, s.score, s.tp, s.fn_, s.fp
                );
            }
        }
    }
    println!();
    println!(
        "scoring: {:.0} points/s ({:.1} ns/point, sample policy + detector, one core)",
        1e9 / run.ns_per_point().max(1e-9),
        run.ns_per_point()
    );
    Ok(())
}

type Series = [(String, ingest::NabFile, Vec<nab::RowWindow>)];

/// One detector's run over the corpus: each file's raw scores (the score
/// every sample would fire with; NaN for rows the sample policy dropped),
/// the best threshold per profile, and the scoring time.
struct DetectorRun {
    raw: Vec<Vec<f64>>,
    best: Vec<nab::ProfileScores>,
    elapsed: Duration,
    points: usize,
}

impl DetectorRun {
    fn ns_per_point(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / self.points.max(1) as f64
    }

    /// What the detector reports at threshold `t` (the reset threshold
    /// scaled with it), file by file: the excursion logic replayed over the
    /// raw scores, exactly what a full online run at `t` gives (see
    /// `detect::fire_once`).
    fn files_at(&self, series: &Series, cfg: &DetectorConfig, t: f64) -> Vec<NabFile> {
        let reset = cfg.reset_threshold * t / cfg.threshold;
        series
            .iter()
            .zip(&self.raw)
            .map(|((name, _, windows), raw)| NabFile {
                name: name.clone(),
                scores: detect::fire_once(raw, t, reset, cfg.reset_samples),
                windows: windows.clone(),
            })
            .collect()
    }
}

/// Scores the corpus once with `cfg`'s detector (timed), then sweeps the
/// threshold for the best corpus-wide score of each profile. The detector
/// fires once per excursion and its hysteresis depends on the threshold,
/// so each candidate replays the excursion logic at that threshold (with
/// the reset threshold scaled alike) rather than re-thresholding scores.
fn bench_detector(series: &Series, cfg: &DetectorConfig) -> DetectorRun {
    let mut elapsed = Duration::ZERO;
    let mut points = 0;
    let raw: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, file, _)| {
            let t0 = Instant::now();
            let raw = raw_scores(file.rows(), cfg);
            elapsed += t0.elapsed();
            points += raw.len();
            raw
        })
        .collect();
    let mut run = DetectorRun {
        raw,
        best: Vec::new(),
        elapsed,
        points,
    };
    let mut best: Vec<Option<nab::ProfileScores>> = vec![None; Profile::ALL.len()];
    for step in 0..=THRESHOLD_STEPS {
        let t = 0.05 + 0.6 * step as f64 / THRESHOLD_STEPS as f64;
        let files = run.files_at(series, cfg, t);
        for (k, profile) in Profile::ALL.iter().enumerate() {
            let s = nab::corpus_score(&files, t, *profile);
            if best[k].is_none_or(|b| s.normalized > b.normalized) {
                best[k] = Some(s);
            }
        }
    }
    run.best = best
        .into_iter()
        .map(|b| b.expect("at least one threshold is tried"))
        .collect();
    run
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
