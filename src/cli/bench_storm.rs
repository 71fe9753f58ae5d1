//! `heal bench storm`: an action storm against the guardrails (`heal::bench::storm`).

use std::path::PathBuf;

use heal::bench::storm::StormConfig;

#[derive(Debug, clap::Args)]
pub struct StormArgs {
    /// Services.
    #[arg(long, default_value_t = 500)]
    services: u32,
    /// Instances per service.
    #[arg(long, default_value_t = 20)]
    instances: u32,
    /// Event-time span the anomalies arrive in, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Where to write the decision log (a temporary file when left out).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Also record every decision in an incident store (SQLite) at this
    /// path, one transaction per anomaly (its incident and the engine's
    /// events), inside the measured latency. The file must not exist yet.
    #[arg(long)]
    db: Option<PathBuf>,
}

pub fn run(args: StormArgs) -> anyhow::Result<()> {
    Ok(heal::bench::storm::run(StormConfig {
        services: args.services,
        instances: args.instances,
        seconds: args.seconds,
        log: args.log,
        db: args.db,
    })?)
}
