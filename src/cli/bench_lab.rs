//! `heal bench lab`: time to recovery on the real lab, heal against monit
//! (`heal::bench::lab`).

use std::path::PathBuf;

use heal::bench::lab::LabConfig;

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Injections of each fault kind, for heal and again for monit.
    #[arg(long, default_value_t = 10)]
    injections: u32,
    /// Length of the clean run (no fault) during which heal's actions are
    /// counted and its CPU time measured.
    #[arg(long, default_value_t = 10.0)]
    clean_minutes: f64,
    /// Extra gauge series the `clean` service exports and heal watches, so
    /// that the CPU figure is measured at this many series or more.
    #[arg(long, default_value_t = 1000)]
    series: u32,
    /// History the lab builds before heal starts.
    #[arg(long, default_value = "120s")]
    warmup: String,
    /// At least this long between two faults on the same service (the
    /// runbook's cooldown is 10 s and its verification waits up to 8 s).
    #[arg(long, default_value = "20s")]
    spacing: String,
    /// A fault not recovered from within this long counts as not recovered.
    #[arg(long, default_value = "60s")]
    limit: String,
    /// A runbook to use instead of the lab runbook built into heal
    /// (`lab/runbooks/lab.yaml`); its `127.0.0.1:19400` is replaced by the
    /// lab's control address.
    #[arg(long)]
    runbook: Option<PathBuf>,
    /// The Prometheus server executable.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    /// The monit executable; `monit` on PATH if not given.
    #[arg(long)]
    monit_bin: Option<PathBuf>,
    /// Write heal's whole log (`HEAL_LOG=info`) to this file after its round.
    #[arg(long)]
    heal_log: Option<PathBuf>,
    /// Leave out monit's round.
    #[arg(long)]
    no_monit: bool,
    /// Seed of the injection phases (each fault is injected at a uniformly
    /// random offset within the wall-clock second); the same seed gives
    /// heal and monit the same phases, run after run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    Ok(heal::bench::lab::run(LabConfig {
        injections: args.injections,
        clean_minutes: args.clean_minutes,
        series: args.series,
        warmup: args.warmup,
        spacing: args.spacing,
        limit: args.limit,
        runbook: args.runbook,
        prometheus_bin: args.prometheus_bin,
        monit_bin: args.monit_bin,
        heal_log: args.heal_log,
        no_monit: args.no_monit,
        seed: args.seed,
        path_env: std::env::var_os("PATH"),
    })?)
}
