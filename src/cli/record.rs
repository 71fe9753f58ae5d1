//! `heal record`: record series from a Prometheus server into a dataset
//! (`heal::record`). Secrets never go on the command line (other users see
//! it in `ps`): `--bearer-token-env` and `--basic-auth-password-env` name
//! environment variables, read here because only the binary reads the
//! environment.

use std::path::PathBuf;

use anyhow::Context;
use heal::record::{LogRecordConfig, RecordConfig};
use ingest::Auth;

use super::error::{duration_arg, runtime, shutdown_signal};
use super::UsageError;

/// Arguments of `heal record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Base URL of the Prometheus server, e.g. `http://127.0.0.1:9090` (plain HTTP only).
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "log_sources",
        conflicts_with = "log_sources"
    )]
    prometheus: Option<String>,
    /// A query to record, `NAME=PROMQL` or just `PROMQL`; repeatable. NAME becomes the
    /// `__name__` of the query's series, which is how a runbook signal called NAME finds them
    /// in a replay. Without NAME, a series keeps the metric name Prometheus gives it (`up`
    /// stays `up`), and one without a name (`sum(...)`, `rate(...)`) is called `query_N`, N
    /// the query's position (from 1).
    #[arg(long = "query", value_name = "[NAME=]PROMQL", requires = "prometheus")]
    queries: Vec<String>,
    /// Start of the range: RFC 3339 (`2026-01-05T00:00:00Z`), `now`, or relative to now like
    /// `-1h` or `-1d12h`. Rounded up to a multiple of the step.
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        requires = "prometheus"
    )]
    start: Option<String>,
    /// End of the range (inclusive), in the same forms as `--start`.
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        requires = "prometheus"
    )]
    end: Option<String>,
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
    /// The dataset file to write (Parquet): series, or with --log-source a
    /// log dataset (`heal replay --logs FILE`).
    #[arg(short = 'o', value_name = "FILE")]
    output: PathBuf,
    /// Record this log source of the runbooks (repeatable) instead of
    /// series: its lines as they arrive, each with its event time (its own,
    /// when the source's format reads one, else when it was read).
    #[arg(long = "log-source", value_name = "NAME", requires = "runbooks")]
    log_sources: Vec<String>,
    /// Directory of YAML runbooks declaring the log sources.
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Also what the sources already hold: files from their beginning,
    /// Kafka topics from their earliest offset.
    #[arg(long, requires = "log_sources")]
    from_start: bool,
    /// Stop recording logs after this long (`10m`).
    #[arg(long = "for", value_name = "DURATION", requires = "log_sources")]
    for_: Option<String>,
    /// Stop recording logs once no line arrived for this long (`5s`): with
    /// --from-start, records what the sources hold and stops.
    #[arg(long, value_name = "DURATION", requires = "log_sources")]
    idle: Option<String>,
    /// Stop recording logs at this many lines (a recording is held in
    /// memory until written).
    #[arg(long, value_name = "N", default_value_t = 5_000_000)]
    lines: usize,
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
    if !args.log_sources.is_empty() {
        return record_logs(args);
    }
    let auth = auth_from_env(&args)?;
    let missing = |flag: &str| UsageError(format!("recording series needs {flag}"));
    if args.queries.is_empty() {
        return Err(missing("--query").into());
    }
    let config = RecordConfig {
        prometheus: args.prometheus.ok_or_else(|| missing("--prometheus"))?,
        queries: args.queries,
        start: args.start.ok_or_else(|| missing("--start"))?,
        end: args.end.ok_or_else(|| missing("--end"))?,
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

/// `heal record --log-source`: until a limit or SIGINT/SIGTERM, then the
/// log dataset is written.
fn record_logs(args: RecordArgs) -> anyhow::Result<()> {
    let ms = |name: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
        v.as_deref()
            .map(|v| duration_arg(name, v).map(|d| d.as_millis() as i64))
            .transpose()
    };
    let config = LogRecordConfig {
        runbooks: args.runbooks.clone().unwrap_or_default(),
        sources: args.log_sources.clone(),
        from_start: args.from_start,
        duration_ms: ms("for", &args.for_)?,
        idle_ms: ms("idle", &args.idle)?,
        max_lines: args.lines.max(1),
        poll_ms: 200,
        output: args.output.clone(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    runtime()?.block_on(async {
        let signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            signal.cancel();
        });
        heal::record::record_logs(config, stdx::SystemClock, stop).await
    })?;
    Ok(())
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
