//! What every subcommand shares at the command line: the two error kinds
//! that choose an exit code, and how a long-running command gets its
//! runtime and its end.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

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

/// A program or service heal needs is not there (such as Prometheus for
/// `heal demo`): exit code 69 (`EX_UNAVAILABLE`), with how to get it.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A duration argument (`15s`, `1m`), or a usage error naming the flag.
pub fn duration_arg(name: &str, v: &str) -> anyhow::Result<Duration> {
    remediate::Duration::from_str(v)
        .map(|d| Duration::from_millis(d.as_millis_i64().max(0) as u64))
        .map_err(|e| UsageError(format!("--{name} {v:?}: {e}")).into())
}

/// The API token from the environment variable `--api-token-env` names;
/// `None` without the flag, a usage error when the variable is unset or
/// empty.
pub fn api_token(var: Option<&str>) -> Result<Option<String>, UsageError> {
    var.map(|var| {
        std::env::var(var)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UsageError(format!("--api-token-env: {var} is not set")))
    })
    .transpose()
}

/// The async runtime of a long-running command: two worker threads (the
/// machine heal is sized for has two cores).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on SIGINT or SIGTERM, or once `run_for` has passed when
/// given (`--run-for`, for demos and tests): a daemon's end either way.
pub async fn shutdown_or_after(run_for: Option<std::time::Duration>) {
    match run_for {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shutdown_signal() => {}
            }
        }
        None => shutdown_signal().await,
    }
}

/// Resolves on SIGINT or SIGTERM: the end of a daemon, passed to the
/// library as its shutdown.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
