//! `heal bench nab DIR`: the NAB benchmark on a NAB-layout directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use detect::nab::{self, NabFile, Profile};
use detect::DetectorConfig;

use super::score::score_rows;
use super::UsageError;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Score every series of a NAB-layout directory (`data/<category>/*.csv`
    /// and `labels/combined_windows.json`) online and print the NAB scores.
    Nab(NabArgs),
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
    /// The adaptive-threshold detector with its default settings.
    Adaptive,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Nab(args) => nab_bench(args),
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
    };
    let mut files = Vec::with_capacity(corpus.files().len());
    let mut points = 0usize;
    let mut scoring = Duration::ZERO;
    for entry in corpus.files() {
        let file = corpus.read(entry)?;
        let t0 = Instant::now();
        let (scores, _) = score_rows(file.rows(), &cfg);
        scoring += t0.elapsed();
        points += scores.len();
        let ts: Vec<i64> = file.rows().iter().map(|r| r.ts_ms).collect();
        let windows = nab::windows_to_rows(&ts, corpus.windows(&entry.key));
        files.push(NabFile {
            name: entry.key.clone(),
            scores,
            windows,
        });
    }
    let windows: usize = files.iter().map(|f| f.windows.len()).sum();
    println!(
        "NAB corpus {}: {} files, {} points, {} windows; detector {:?}",
        args.dir.display(),
        files.len(),
        points,
        windows,
        args.detector
    );
    println!();
    println!(
        "{:<20} {:>10} {:>8} {:>14}   {:>10} {:>8} {:>14}",
        "profile", "best thr", "score", "tp/fn/fp", "default", "score", "tp/fn/fp"
    );
    let candidates = nab::candidate_thresholds(&files, 2000);
    for profile in Profile::ALL {
        let best = nab::best_threshold(&files, &candidates, profile);
        let dflt = nab::corpus_score(&files, cfg.threshold, profile);
        println!(
            "{:<20} {:>10.6} {:>8.1} {:>14}   {:>10.6} {:>8.1} {:>14}",
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
        let best = nab::best_threshold(&files, &candidates, Profile::STANDARD);
        println!();
        println!(
            "per file at the best standard threshold {:.6}:",
            best.threshold
        );
        for f in &files {
            let s = f.score(best.threshold, Profile::STANDARD);
            println!(
                "  {:<58} {:>7.2}  tp {} fn {} fp {}",
                f.name, s.score, s.tp, s.fn_, s.fp
            );
        }
    }
    println!();
    let secs = scoring.as_secs_f64().max(1e-9);
    println!(
        "scoring: {:.0} points/s ({:.1} ns/point, sample policy + detector, one core)",
        points as f64 / secs,
        secs * 1e9 / points.max(1) as f64
    );
    Ok(())
}
