//! `heal bench nab DIR`: the NAB benchmark on a NAB-layout directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use detect::nab::{self, NabFile, Profile};
use detect::DetectorConfig;

use super::score::score_rows;
use super::UsageError;

/// Threshold settings tried between 0.05 and 0.65 for the best score.
const THRESHOLD_STEPS: usize = 120;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Score every series of a NAB-layout directory (`data/<category>/*.csv`
    /// and `labels/combined_windows.json`) online and print the NAB scores.
    Nab(NabArgs),
    /// Time to recovery on the real lab (crash, hang, errors, leak), heal
    /// against monit; actions on a clean run; heal's CPU per evaluation per
    /// 1,000 series. Takes about 25 minutes with the defaults.
    Lab(super::bench_lab::LabArgs),
    /// An action storm against the guardrails: 10,000 anomalies across 500
    /// services within one minute; checks the limits held and every
    /// suppression has a reason, and measures the decision latency.
    Storm(super::bench_storm::StormArgs),
}

#[derive(Debug, clap::Args)]
pub struct NabArgs {
    /// The corpus directory, such as `../shared/datasets/nab-dev`.
    dir: PathBuf,
    /// Which detector to run.
    #[arg(long, value_enum, default_value_t = DetectorName::Adaptive)]
    detector: DetectorName,
    /// Also print each file's result at the best standard threshold.
    #[arg(long)]
    per_file: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DetectorName {
    /// The adaptive-threshold detector with its default settings (threshold
    /// 0.4: no alarm on 100,000 samples of stationary noise).
    Adaptive,
    /// The adaptive-threshold detector with the sensitive preset (threshold
    /// 0.17, among the best corpus-wide thresholds on NAB).
    Sensitive,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Nab(args) => nab_bench(args),
        BenchCmd::Lab(args) => super::bench_lab::run(args),
        BenchCmd::Storm(args) => super::bench_storm::run(args),
    }
}

fn nab_bench(args: NabArgs) -> anyhow::Result<()> {
    let corpus = ingest::NabCorpus::open(&args.dir).map_err(|e| UsageError(e.to_string()))?;
    if corpus.files().is_empty() {
        return Err(UsageError(format!(
            "{}: no data/<category>/*.csv files",
            args.dir.display()
        ))
        .into());
    }
    let cfg = match args.detector {
        DetectorName::Adaptive => DetectorConfig::default(),
        DetectorName::Sensitive => DetectorConfig::sensitive(),
    };
    let mut series = Vec::with_capacity(corpus.files().len());
    for entry in corpus.files() {
        let file = corpus.read(entry)?;
        let ts: Vec<i64> = file.rows().iter().map(|r| r.ts_ms).collect();
        let windows = nab::windows_to_rows(&ts, corpus.windows(&entry.key));
        series.push((entry.key.clone(), file, windows));
    }
    let mut timing = Timing::default();
    let at_default = run_corpus(&series, &cfg, &mut timing);
    let corpus_points: usize = at_default.iter().map(|f| f.scores.len()).sum();
    let windows: usize = at_default.iter().map(|f| f.windows.len()).sum();
    println!(
        "NAB corpus {}: {} files, {} points, {} windows; detector {:?}",
        args.dir.display(),
        at_default.len(),
        corpus_points,
        windows,
        args.detector
    );
    // The best corpus-wide threshold. The detector fires once per excursion
    // and its hysteresis depends on the threshold, so each candidate is a
    // full online run with that threshold (and the reset threshold scaled
    // with it), not a re-thresholding of one run's scores.
    let mut best: Vec<Option<nab::ProfileScores>> = vec![None; Profile::ALL.len()];
    let mut best_runs: Vec<Vec<NabFile>> = vec![Vec::new(); Profile::ALL.len()];
    for step in 0..=THRESHOLD_STEPS {
        let t = 0.05 + 0.6 * step as f64 / THRESHOLD_STEPS as f64;
        let swept = DetectorConfig {
            threshold: t,
            reset_threshold: cfg.reset_threshold * t / cfg.threshold,
            ..cfg.clone()
        };
        let files = run_corpus(&series, &swept, &mut timing);
        for (k, profile) in Profile::ALL.iter().enumerate() {
            let s = nab::corpus_score(&files, t, *profile);
            if best[k].is_none_or(|b| s.normalized > b.normalized) {
                best[k] = Some(s);
                best_runs[k] = files.clone();
            }
        }
    }
    println!();
    println!(
        "{:<20} {:>10} {:>8} {:>14}   {:>10} {:>8} {:>14}",
        "profile", "best thr", "score", "tp/fn/fp", "default", "score", "tp/fn/fp"
    );
    for (k, profile) in Profile::ALL.iter().enumerate() {
        let best = best[k].expect("at least one threshold is tried");
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
        let b = best[0].expect("at least one threshold is tried");
        for (title, files, t) in [
            ("the best standard threshold", &best_runs[0], b.threshold),
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
    let (points, secs) = (timing.points, timing.elapsed.as_secs_f64().max(1e-9));
    println!(
        "scoring: {:.0} points/s ({:.1} ns/point, sample policy + detector, one core)",
        points as f64 / secs,
        secs * 1e9 / points.max(1) as f64
    );
    Ok(())
}

/// Time spent scoring and points scored, over every run.
#[derive(Debug, Default)]
struct Timing {
    elapsed: Duration,
    points: usize,
}

/// Scores every file of the corpus online with one configuration; times
/// the scoring alone.
fn run_corpus(
    series: &[(String, ingest::NabFile, Vec<nab::RowWindow>)],
    cfg: &DetectorConfig,
    timing: &mut Timing,
) -> Vec<NabFile> {
    series
        .iter()
        .map(|(name, file, windows)| {
            let t0 = Instant::now();
            let (scores, _) = score_rows(file.rows(), cfg);
            timing.elapsed += t0.elapsed();
            timing.points += scores.len();
            NabFile {
                name: name.clone(),
                scores,
                windows: windows.clone(),
            }
        })
        .collect()
}
