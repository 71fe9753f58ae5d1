//! `heal demo`: heal healing a real lab, in one command (`heal::demo`).

use std::path::PathBuf;

use heal::demo::DemoConfig;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The fault to inject into the `web` service.
    #[arg(long, value_enum, default_value_t = FaultKind::Hang)]
    fault: FaultKind,
    /// How long the lab builds history before heal starts. `auto`: 20s for
    /// crash and errors (caught by the runbook's hard limits, which need no
    /// history), 120s for hang and leak (caught by the statistical
    /// detectors, which calibrate on about 100 one-second samples).
    #[arg(long, default_value = "auto")]
    warmup: String,
    /// The Prometheus server executable.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    /// Also print heal's log from the fault on.
    #[arg(long)]
    verbose: bool,
    /// Give up on recovery after this long.
    #[arg(long, default_value = "60s")]
    timeout: String,
}

/// The faults the demo and the bench inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    /// The process exits with status 1.
    Crash,
    /// The process lives, `/` never answers.
    Hang,
    /// 60 % of `/` answers are 500.
    Errors,
    /// Resident memory grows by 16 MiB/s until the 256 MiB limit kills it.
    Leak,
}

impl From<FaultKind> for heal::labrun::FaultKind {
    fn from(f: FaultKind) -> Self {
        match f {
            FaultKind::Crash => heal::labrun::FaultKind::Crash,
            FaultKind::Hang => heal::labrun::FaultKind::Hang,
            FaultKind::Errors => heal::labrun::FaultKind::Errors,
            FaultKind::Leak => heal::labrun::FaultKind::Leak,
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    Ok(heal::demo::run(DemoConfig {
        fault: args.fault.into(),
        warmup: args.warmup,
        prometheus_bin: args.prometheus_bin,
        verbose: args.verbose,
        timeout: args.timeout,
        path_env: std::env::var_os("PATH"),
    })?)
}
