//! `heal watch --prometheus URL --runbooks DIR`: heal's main job, the live
//! loop (`heal::live`). This file reads the arguments and the environment
//! (tokens, the Prometheus password, the executors' environment), binds
//! the listener and passes SIGINT/SIGTERM (or `--run-for`) as the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use executors::supervisor::SupervisorClient;
use executors::Executors;
use heal::live::LiveConfig;
use ingest::{Auth, PrometheusConfig};
use remediate::RunbookSet;

use super::error::{duration_arg, runtime, UsageError};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Prometheus base URL, such as `http://127.0.0.1:9090`.
    #[arg(long)]
    prometheus: String,
    /// Directory of YAML runbooks: their signals are evaluated, their rules act.
    #[arg(long)]
    runbooks: PathBuf,
    /// Evaluation interval (`1s`, `15s`, `1m`); evaluations happen at
    /// multiples of it.
    #[arg(long, default_value = "15s")]
    interval: String,
    /// How far back to back-fill the detectors at start (`0s` for none).
    #[arg(long, default_value = "1h")]
    backfill: String,
    /// Timeout of one Prometheus query.
    #[arg(long, default_value = "5s")]
    query_timeout: String,
    /// Address of heal's own `/metrics` and `/healthz`.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Perform the actions the guards allow. Without it every action is
    /// planned and recorded in dry-run.
    #[arg(long)]
    execute: bool,
    /// Name of an environment variable holding a bearer token for Prometheus.
    #[arg(long)]
    bearer_token_env: Option<String>,
    /// Basic auth for Prometheus: the user name; the password is read from
    /// the environment variable `HEAL_PROMETHEUS_PASSWORD`.
    #[arg(long)]
    basic_auth_user: Option<String>,
    /// Stop after this long (for demos and tests); runs until a signal otherwise.
    #[arg(long)]
    run_for: Option<String>,
    /// Base URL of `heal supervise`'s control API, such as
    /// `http://127.0.0.1:9465`: `restart`, `scale` and `rollback` steps on
    /// targets `supervisor/NAME` are sent there.
    #[arg(long)]
    supervisor: Option<String>,
    /// Name of an environment variable holding the supervisor's bearer token.
    #[arg(long, requires = "supervisor")]
    supervisor_token_env: Option<String>,
    /// The Docker Engine's socket, such as `/var/run/docker.sock`: `docker`
    /// steps, and `restart`, `scale` and `rollback` on `docker/...` targets,
    /// are sent to its API. The socket must exist at start.
    #[arg(long, value_name = "SOCKET")]
    docker: Option<String>,
    /// File where the guards' memory is kept (attempts, the last minute's
    /// actions, flap history, silences, incident numbering), so cooldowns
    /// and limits hold across restarts of heal. Written atomically after
    /// every change; read at start.
    #[arg(long)]
    state: Option<PathBuf>,
    /// File where the log sources' file offsets, line counters and
    /// templates are kept (written atomically after every evaluation), so
    /// that a restart of heal, a rotation, or both lose no line and keep the
    /// template ids. Without it a restart reads every log file from its end.
    #[arg(long, value_name = "FILE")]
    log_state: Option<PathBuf>,
    /// Name of an environment variable holding the bearer token that the
    /// API's changing endpoints (silences, approvals) require. Without it
    /// they are disabled.
    #[arg(long)]
    api_token_env: Option<String>,
    /// Send each watched series' anomaly score and normal band to this
    /// Prometheus remote-write receiver (`heal_anomaly_score`,
    /// `heal_band_lower`, `heal_band_upper`, with the series' labels and
    /// `signal`), e.g. `http://prometheus:9090/api/v1/write` (Prometheus
    /// takes it with `--web.enable-remote-write-receiver`).
    #[arg(long, value_name = "URL")]
    remote_write: Option<String>,
    /// Name of an environment variable holding a bearer token for
    /// `--remote-write`.
    #[arg(long, value_name = "VAR", requires = "remote_write")]
    remote_write_token_env: Option<String>,
    /// Record every incident, engine event and action (begun, finished) in
    /// this incident store: a SQLite file (created if missing) or a
    /// PostgreSQL database (`postgres://user@host/db`, migrated if needed);
    /// read it with `heal incidents`. Off unless given.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Detector settings from a parameter file (as `heal tune -o` writes):
    /// they replace the detector settings of every signal that does not set
    /// its own `detector:` in its runbook. With --db, each signal's learned
    /// threshold offset (`heal incidents sensitivity`) applies on top.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// Forget a series that has not reported for this long (its detector
    /// state and evidence ring are evicted; back, it warms up afresh).
    #[arg(long, default_value = "10m")]
    series_stale: String,
    /// Most live series per signal; new series beyond it are refused,
    /// counted (`heal_series_refused_total`) and logged until older ones go
    /// stale.
    #[arg(long, default_value_t = 10_000)]
    max_series: usize,
}

pub fn run(args: WatchArgs) -> anyhow::Result<()> {
    let runbooks = RunbookSet::load_dir(&args.runbooks).map_err(|e| UsageError(e.to_string()))?;
    let interval = duration_arg("interval", &args.interval)?;
    let backfill = duration_arg("backfill", &args.backfill)?;
    let timeout = duration_arg("query-timeout", &args.query_timeout)?;
    let stale = duration_arg("series-stale", &args.series_stale)?;
    if stale.is_zero() || args.max_series == 0 {
        return Err(UsageError("--series-stale and --max-series must be above zero".into()).into());
    }
    let series = heal::live::SeriesPolicy {
        stale,
        max_per_signal: args.max_series,
    };
    let run_for = args
        .run_for
        .as_deref()
        .map(|v| duration_arg("run-for", v))
        .transpose()?;
    if interval.is_zero() {
        return Err(UsageError("--interval must be more than 0s".into()).into());
    }
    let supervisor = match &args.supervisor {
        Some(url) => {
            let token = match &args.supervisor_token_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    UsageError(format!("--supervisor-token-env: {var} is not set"))
                })?),
                None => None,
            };
            Some(
                SupervisorClient::new(url, token)
                    .map_err(|e| UsageError(format!("--supervisor: {e}")))?,
            )
        }
        None => None,
    };
    let clock = Arc::new(stdx::SystemClock);
    // Webhook secrets, the agent key and the programs' PATH come from
    // heal's environment: read here, the executors get a lookup.
    let env: executors::EnvLookup = Arc::new(|name: &str| std::env::var(name).ok());
    let mut executors = Executors::new(env, clock.clone());
    if let Some(client) = supervisor {
        executors = executors.with_supervisor(client);
    }
    if let Some(socket) = &args.docker {
        let client = executors::docker::DockerClient::connect(socket)
            .map_err(|e| UsageError(format!("--docker: {e}")))?;
        executors = executors.with_docker(client);
    }
    let prometheus = prometheus_config(
        &args.prometheus,
        timeout,
        args.bearer_token_env.as_deref(),
        args.basic_auth_user.as_deref(),
    )?;
    let api_token = super::error::api_token(args.api_token_env.as_deref())?;
    let remote_write = match &args.remote_write {
        Some(url) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| UsageError(format!("--remote-write {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(UsageError(format!(
                    "--remote-write {url:?}: give an http:// or https:// URL"
                ))
                .into());
            }
            let token = match &args.remote_write_token_env {
                Some(var) => Some(
                    std::env::var(var)
                        .ok()
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| {
                            UsageError(format!("--remote-write-token-env: {var} is not set"))
                        })?,
                ),
                None => None,
            };
            Some(ingest::sinks::remote_write::SinkConfig {
                url: url.clone(),
                token,
                timeout: std::time::Duration::from_secs(5),
            })
        }
        None => None,
    };
    let config = LiveConfig {
        remote_write,
        runbooks,
        prometheus,
        interval,
        backfill,
        execute: args.execute,
        state: args.state,
        db: args.db,
        log_state: args.log_state,
        params: args.params,
        api_token,
        executors,
        series,
        clock,
    };
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| UsageError(format!("listening on {}: {e}", args.listen)))?;
        // SIGINT and SIGTERM end the watch gracefully whether or not
        // --run-for is given (a supervisor stopping a demo must not lose
        // the store's tail).
        let stop = super::error::shutdown_or_after(run_for);
        Ok(heal::live::run(config, listener, stop).await?)
    })
}

/// Prometheus at `url`, asked with `timeout` per query, authenticated by
/// a bearer token from the environment variable `bearer_token_env` or as
/// `basic_auth_user` (its password from `HEAL_PROMETHEUS_PASSWORD`).
pub(super) fn prometheus_config(
    url: &str,
    timeout: std::time::Duration,
    bearer_token_env: Option<&str>,
    basic_auth_user: Option<&str>,
) -> anyhow::Result<PrometheusConfig> {
    let auth = match (bearer_token_env, basic_auth_user) {
        (Some(var), None) => Some(Auth::Bearer {
            token: std::env::var(var)
                .map_err(|_| UsageError(format!("--bearer-token-env: {var} is not set")))?,
        }),
        (None, Some(user)) => Some(Auth::Basic {
            username: user.to_owned(),
            password: std::env::var("HEAL_PROMETHEUS_PASSWORD").unwrap_or_default(),
        }),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(
                UsageError("use either --bearer-token-env or --basic-auth-user".into()).into(),
            )
        }
    };
    let mut prometheus = PrometheusConfig::new(url.to_owned());
    prometheus.timeout_ms = timeout.as_millis() as u64;
    prometheus.auth = auth;
    Ok(prometheus)
}
