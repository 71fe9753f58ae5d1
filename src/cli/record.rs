//! `heal record`: record series from a Prometheus server into a dataset
//! (`heal::record`). Secrets never go on the command line (other users see
//! it in `ps`): `--bearer-token-env` and `--basic-auth-password-env` name
//! environment variables, read here because only the binary reads the
//! environment.

use std::path::PathBuf;

use anyhow::Context;
use heal::record::RecordConfig;
use ingest::Auth;

use super::UsageError;

/// Arguments of `heal record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Base URL of the Prometheus server, e.g. `http://127.0.0.1:9090` (plain HTTP only).
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// A query to record, `NAME=PROMQL` or just `PROMQL`; repeatable. NAME becomes the
    /// `__name__` of the query's series, which is how a runbook signal called NAME finds them
    /// in a replay. Without NAME, a series keeps the metric name Prometheus gives it (`up`
    /// stays `up`), and one without a name (`sum(...)`, `rate(...)`) is called `query_N`, N
    /// the query's position (from 1).
    #[arg(long = "query", value_name = "[NAME=]PROMQL", required = true)]
    queries: Vec<String>,
    /// Start of the range: RFC 3339 (`2026-01-05T00:00:00Z`), `now`, or relative to now like
    /// `-1h` or `-1d12h`. Rounded up to a multiple of the step.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    start: String,
    /// End of the range (inclusive), in the same forms as `--start`.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    end: String,
    /// Time between samples, like `15s` or `1m`.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    step: String,
    /// Longest a single request may take, like `30s`. Long ranges are fetched in chunks of
    /// 11,000 points per series, which can take a while on a busy server.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    timeout: String,
    /// Most series one query may yield; past it the recording fails rather than drop some.
    #[arg(long, default_value_t = 10_000)]
    max_series: usize,
    /// The dataset file to write (Parquet).
    #[arg(short = 'o', value_name = "FILE")]
    output: PathBuf,
    /// Name of an environment variable holding a bearer token to send.
    #[arg(long, value_name = "VAR", conflicts_with = "basic_auth_user")]
    bearer_token_env: Option<String>,
    /// User name for HTTP basic authentication.
    #[arg(long, value_name = "USER", requires = "basic_auth_password_env")]
    basic_auth_user: Option<String>,
    /// Name of an environment variable holding the basic-auth password.
    #[arg(long, value_name = "VAR", requires = "basic_auth_user")]
    basic_auth_password_env: Option<String>,
}

/// Records the queries and writes the dataset, printing what it wrote.
pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let auth = auth_from_env(&args)?;
    let config = RecordConfig {
        prometheus: args.prometheus,
        queries: args.queries,
        start: args.start,
        end: args.end,
        step: args.step,
        timeout: args.timeout,
        max_series: args.max_series,
        output: args.output,
        auth,
    };
    let now_ms = stdx::Clock::now_ms(&stdx::SystemClock);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(heal::record::run(config, now_ms))?)
}

/// Bearer token or basic auth from the environment variables the flags name.
fn auth_from_env(args: &RecordArgs) -> anyhow::Result<Option<Auth>> {
    let read = |flag: &str, var: &str| -> anyhow::Result<String> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(UsageError(format!("{flag} {var}: the variable is empty")).into()),
            Err(_) => Err(UsageError(format!("{flag} {var}: the variable is not set")).into()),
        }
    };
    if let Some(var) = &args.bearer_token_env {
        let token = read("--bearer-token-env", var)?;
        return Ok(Some(Auth::Bearer { token }));
    }
    if let (Some(username), Some(var)) = (&args.basic_auth_user, &args.basic_auth_password_env) {
        let password = read("--basic-auth-password-env", var)?;
        return Ok(Some(Auth::Basic {
            username: username.clone(),
            password,
        }));
    }
    Ok(None)
}
