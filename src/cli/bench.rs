//! `heal bench nab|lab|storm`: the benchmarks (`heal::bench`).

use std::path::PathBuf;

use heal::bench::nab::NabConfig;

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
    /// Which detector to run; `all` prints every one side by side.
    #[arg(long, value_enum, default_value_t = DetectorName::Adaptive)]
    detector: DetectorName,
    /// Also print each file's result at the best standard threshold.
    #[arg(long)]
    per_file: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

impl From<DetectorName> for heal::bench::nab::DetectorName {
    fn from(d: DetectorName) -> Self {
        use heal::bench::nab::DetectorName as D;
        match d {
            DetectorName::Adaptive => D::Adaptive,
            DetectorName::Sensitive => D::Sensitive,
            DetectorName::Changepoint => D::Changepoint,
            DetectorName::Seasonal => D::Seasonal,
            DetectorName::Ensemble => D::Ensemble,
            DetectorName::All => D::All,
        }
    }
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Nab(args) => Ok(heal::bench::nab::run(NabConfig {
            dir: args.dir,
            detector: args.detector.into(),
            per_file: args.per_file,
        })?),
        BenchCmd::Lab(args) => super::bench_lab::run(args),
        BenchCmd::Storm(args) => super::bench_storm::run(args),
    }
}
