//! `heal supervise --config FILE`: heal runs and watches the services of a
//! configuration itself and serves their control API (the daemon is
//! `daemons::supervisor`); this file reads the arguments and the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use daemons::supervisor::{Supervisor, SupervisorConfig};

use super::error::{duration_arg, UsageError};

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// The services to run (YAML): README.md, "heal supervise", has a complete, commented
    /// services.yaml.
    #[arg(long)]
    config: PathBuf,
    /// Address of the control API. Anything but loopback needs `--token-env`.
    #[arg(long, default_value = "127.0.0.1:9465")]
    listen: SocketAddr,
    /// Directory of the release state file and the children's logs.
    #[arg(long, default_value = "supervisor-state")]
    state_dir: PathBuf,
    /// Name of an environment variable holding the bearer token that the
    /// control API's mutating endpoints require (off without it).
    #[arg(long)]
    token_env: Option<String>,
    /// Stop after this long (for tests); runs until SIGINT or SIGTERM otherwise.
    #[arg(long)]
    run_for: Option<String>,
}

pub fn run(args: SuperviseArgs) -> anyhow::Result<()> {
    let config = SupervisorConfig::load(&args.config).map_err(|e| UsageError(e.to_string()))?;
    let token = match &args.token_env {
        Some(var) => {
            let t = std::env::var(var)
                .map_err(|_| UsageError(format!("--token-env: {var} is not set")))?;
            if t.len() < 16 {
                return Err(UsageError(format!(
                    "--token-env: the token in {var} is shorter than 16 characters"
                ))
                .into());
            }
            Some(t)
        }
        None => None,
    };
    if !args.listen.ip().is_loopback() && token.is_none() {
        return Err(UsageError(format!(
            "--listen {}: a control API off loopback needs --token-env",
            args.listen
        ))
        .into());
    }
    let run_for = args
        .run_for
        .as_deref()
        .map(|v| duration_arg("run-for", v))
        .transpose()?;
    let runtime = super::error::runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| UsageError(format!("listening on {}: {e}", args.listen)))?;
        let services = config.services.len();
        let supervisor = Supervisor::start(config, &args.state_dir, Arc::new(stdx::SystemClock))
            .await
            .map_err(|e| UsageError(e.to_string()))?;
        eprintln!(
            "heal supervise: {services} services; state in {}; control API on http://{}{}",
            supervisor.state_file().display(),
            listener.local_addr()?,
            if token.is_some() {
                ""
            } else {
                " (read-only: no --token-env)"
            }
        );
        // SIGINT and SIGTERM stop the children and exit 0, with or
        // without --run-for.
        let stop = super::error::shutdown_or_after(run_for);
        daemons::supervisor::serve(supervisor, token, listener, stop)
            .await
            .context("serving the control API")
    })
}
