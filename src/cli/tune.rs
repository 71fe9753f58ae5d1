//! `heal tune DATASET_DIR`: tunes the detector's settings on labelled data,
//! cross-validated (`heal::tune`), and writes them as a parameter file for
//! `replay --params` and `watch --params`.

use std::path::PathBuf;

use heal::tune::TuneConfig;

#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// A NAB-layout directory (`data/<category>/*.csv` and
    /// `labels/combined_windows.json`), or a directory of heal datasets
    /// (`*.parquet` with their ground truth `<stem>.truth.json`, such as
    /// `heal dataset synth` writes).
    dir: PathBuf,
    /// Random configurations tried (the default settings and the
    /// `sensitive` preset are always tried as well).
    #[arg(long, default_value_t = 200)]
    trials: usize,
    /// Seed of the search and of the split into halves: the same seed on
    /// the same data gives the same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What to maximise: NAB's `standard`, `low-fp` (reward_low_FP_rate) or
    /// `low-fn` (reward_low_FN_rate) normalised score, or `f1` of the
    /// detector's firings against the labelled windows (a firing inside a
    /// window of its series is true, as `heal replay` counts incidents).
    #[arg(long, default_value = "standard")]
    objective: heal::tune::Objective,

    /// Write the tuned settings to this YAML file (the `detector:` shape of
    /// a runbook signal, with a comment header saying how they were tuned);
    /// printed to standard output when omitted.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    Ok(heal::tune::run(TuneConfig {
        dir: args.dir,
        trials: args.trials,
        seed: args.seed,
        objective: args.objective,
        output: args.output,
        quiet: args.quiet,
    })?)
}
