//! `heal agent --listen ADDR --config FILE`: runs allowlisted local actions
//! for a remote heal, when asked with a signed request. The daemon is
//! `daemons::agent`; this file reads the arguments and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use daemons::agent::AgentServer;

use super::error::{shutdown_signal, UsageError};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on. Loopback by default: listening on another
    /// address is a deliberate choice (`--listen 0.0.0.0:9465`).
    #[arg(long, default_value = "127.0.0.1:9465")]
    listen: SocketAddr,
    /// The agent's YAML configuration: where the key is, the audit log, and
    /// the allowlist of actions.
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    // The key (`key_env`) and the programs' `PATH` come from heal's
    // environment: read here, the daemon gets a lookup.
    let env = |name: &str| std::env::var(name).ok();
    let server = AgentServer::open(&args.config, &env, Arc::new(stdx::SystemClock))
        .map_err(|e| UsageError(e.to_string()))?;
    let runtime = super::error::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| UsageError(format!("listening on {}: {e}", args.listen)))?;
        daemons::agent::serve(Arc::new(server), listener, shutdown_signal())
            .await
            .context("serving")
    })
}
