//! `heal demo`: heal healing a real lab, in one command (`heal::demo`).

use std::path::PathBuf;

use heal::demo::DemoConfig;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The fault to inject into the `web` service: `crash` (the process
    /// exits with status 1), `hang` (the process lives, `/` never answers),
    /// `errors` (60 % of `/` answers are 500) or `leak` (resident memory
    /// grows by 16 MiB/s until the 256 MiB limit kills it).
    #[arg(long, default_value = "hang")]
    fault: heal::labrun::FaultKind,
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

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    Ok(heal::demo::run(DemoConfig {
        fault: args.fault,
        warmup: args.warmup,
        prometheus_bin: args.prometheus_bin,
        verbose: args.verbose,
        timeout: args.timeout,
        path_env: std::env::var_os("PATH"),
    })?)
}
