//! Subcommands of `heal`, one file each. Each `run` returns `anyhow::Result`
//! and prints its own output; `main` maps errors to exit codes.

mod bench;
mod dataset;
mod record;
mod replay;
mod runbooks;
mod score;
mod watch;

use clap::{Parser, Subcommand};

/// heal keeps services healthy: it watches their metrics, detects anomalies,
/// and remediates them from YAML runbooks.
#[derive(Debug, Parser)]
#[command(name = "heal", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score a NAB-style CSV (`timestamp,value`) online with the default detector.
    Score(score::ScoreArgs),
    /// Benchmarks: `heal bench nab DIR` scores a NAB-layout corpus.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Watch a live Prometheus: evaluate the runbooks' signals, detect, and act.
    Watch(watch::WatchArgs),
    /// Replay a recorded dataset through detection and runbooks, every action in dry-run.
    Replay(replay::ReplayArgs),
    /// Record a period of a live Prometheus as a dataset, for replay and tuning.
    Record(record::RecordArgs),
    /// Import, inspect and synthesise datasets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// Validate runbooks and print their JSON Schema.
    #[command(subcommand)]
    Runbooks(runbooks::RunbooksCmd),
}

/// An error that is the user's input or configuration: exit code 64
/// (`EX_USAGE` in sysexits.h) rather than 1.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit code for an error: 64 for bad usage or configuration, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.is::<UsageError>() || c.is::<runbooks::CheckFailed>())
    {
        64
    } else {
        1
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Score(a) => score::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Watch(a) => watch::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Record(a) => record::run(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Runbooks(c) => runbooks::run(c),
    }
}
