//! `heal replay [DATASET] [--logs FILE] --runbooks DIR [--report DIR]`: detection and rules
//! over a recorded dataset in event time, every action in dry-run
//! (`heal::replay`).

use std::path::PathBuf;

use heal::replay::ReplayConfig;

use super::error::duration_arg;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A dataset: a Parquet file in heal's long form, with its optional
    /// ground truth `<stem>.truth.json` beside it. Optional with --logs.
    #[arg(required_unless_present = "logs")]
    dataset: Option<PathBuf>,
    /// A log dataset (`heal record --log-source`), replayed with the series
    /// in event time through the runbooks' `logs:` signals; repeatable.
    #[arg(long, value_name = "FILE")]
    logs: Vec<PathBuf>,
    /// Slot of the log signals, as `heal watch --interval`: lines count in
    /// the slot their event time falls in.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    interval: String,
    /// Directory of YAML runbooks.
    #[arg(long)]
    runbooks: PathBuf,
    /// Directory to write `incidents.jsonl`, one Markdown and one HTML
    /// report (with the signal's chart) per incident, and `feed.atom` (the
    /// closed incidents) into (created if missing).
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Also write every incident and engine event to this incident store
    /// (a SQLite file, created if missing, or `postgres://user@host/db`;
    /// read it with `heal incidents`). Incident ids go on from the store's
    /// highest, so they stay unique.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Detector settings from a parameter file (as `heal tune -o` writes):
    /// they replace the detector settings of every signal that does not set
    /// its own `detector:` in its runbook. Learned sensitivity offsets come
    /// from --db (`heal incidents sensitivity`) and apply on top.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let interval = duration_arg("interval", &args.interval)?;
    Ok(heal::replay::run(ReplayConfig {
        dataset: args.dataset,
        logs: args.logs,
        interval_ms: interval.as_millis() as i64,
        runbooks: args.runbooks,
        report: args.report,
        quiet: args.quiet,
        db: args.db,
        params: args.params,
    })?)
}
