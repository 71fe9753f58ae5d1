//! `heal record`: record series from a Prometheus server into a dataset (the offline format,
//! `ingest::Dataset`), to replay later or to turn into a test case.
//!
//! Secrets never go on the command line (other users see it in `ps`): `--bearer-token-env` and
//! `--basic-auth-password-env` name environment variables, read here because only the binary
//! reads the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ingest::{Auth, Dataset, PromError, PrometheusClient, PrometheusConfig, RecordQuery};

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
    let now_ms = chrono::Utc::now().timestamp_millis();
    let step_ms = parse_duration_ms("--step", &args.step)?;
    let timeout_ms = parse_duration_ms("--timeout", &args.timeout)?;
    let start_ms = parse_time("--start", &args.start, now_ms)?;
    let end_ms = parse_time("--end", &args.end, now_ms)?;
    // On the step grid, like the live source's aligned evaluations: recordings of the same
    // range line up sample for sample.
    let start_ms = ceil_to(start_ms, step_ms);
    if end_ms < start_ms {
        return Err(UsageError(format!(
            "--start {:?} is after --end {:?} (once rounded up to a multiple of --step)",
            args.start, args.end
        ))
        .into());
    }
    let queries = args
        .queries
        .iter()
        .map(String::as_str)
        .map(parse_query)
        .collect::<Result<Vec<_>, _>>()?;

    let mut config = PrometheusConfig::new(&args.prometheus);
    config.timeout_ms = timeout_ms as u64;
    config.max_series_per_signal = args.max_series;
    config.auth = auth_from_env(&args)?;
    let client = PrometheusClient::new(config).map_err(|e| UsageError(e.to_string()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let dataset = runtime
        .block_on(ingest::record(&client, &queries, start_ms, end_ms, step_ms))
        .map_err(|e| -> anyhow::Error {
            if is_usage(&e) {
                UsageError(e.to_string()).into()
            } else {
                e.into()
            }
        })?;
    if dataset.series.is_empty() {
        anyhow::bail!(
            "recording from {}: the queries yielded no data between --start and --end; nothing written",
            args.prometheus
        );
    }
    dataset
        .write(&args.output)
        .with_context(|| format!("writing dataset {}", args.output.display()))?;
    print_summary(&dataset, &args, step_ms);
    Ok(())
}

/// Errors that are the user's query or settings, not the server's state: exit code 64.
fn is_usage(e: &PromError) -> bool {
    match e {
        PromError::Api { error_type, .. } => error_type == "bad_data",
        PromError::Config { .. }
        | PromError::InvalidRequest { .. }
        | PromError::TooManySeries { .. } => true,
        _ => false,
    }
}

fn print_summary(dataset: &Dataset, args: &RecordArgs, step_ms: i64) {
    println!(
        "wrote {} samples in {} series to {} (step {})",
        dataset.num_samples(),
        dataset.series.len(),
        args.output.display(),
        args.step
    );
    let mut per_name: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for s in &dataset.series {
        let entry = per_name.entry(s.labels.name().unwrap_or("")).or_default();
        entry.0 += 1;
        entry.1 += s.samples.len();
    }
    for (name, (series, samples)) in per_name {
        println!("  {name}: {series} series, {samples} samples");
    }
    let first = dataset
        .series
        .iter()
        .filter_map(|s| s.samples.first())
        .map(|s| s.ts_ms)
        .min();
    let last = dataset
        .series
        .iter()
        .filter_map(|s| s.samples.last())
        .map(|s| s.ts_ms)
        .max();
    if let (Some(first), Some(last)) = (first, last) {
        println!(
            "  from {} to {} ({} steps)",
            format_ms(first),
            format_ms(last),
            (last - first) / step_ms
        );
    }
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{ms} ms"))
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

/// `NAME=PROMQL` when the text before the first `=` is a metric name and the `=` is not the
/// start of `==` or `=~`; otherwise the whole argument is PromQL. (PromQL never has a bare
/// `identifier=` outside braces, so a real query is never misread as named.)
fn parse_query(arg: &str) -> Result<RecordQuery, UsageError> {
    let named = arg.split_once('=').filter(|(name, rest)| {
        is_metric_name(name) && !rest.starts_with('=') && !rest.starts_with('~')
    });
    let (name, query) = match named {
        Some((name, query)) => (Some(name.to_string()), query.trim()),
        None => (None, arg.trim()),
    };
    if query.is_empty() {
        return Err(UsageError(format!("--query {arg:?}: the PromQL is empty")));
    }
    Ok(RecordQuery {
        name,
        query: query.to_string(),
    })
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A positive duration in runbook syntax (`15s`, `1m30s`), in ms.
fn parse_duration_ms(flag: &str, s: &str) -> Result<i64, UsageError> {
    let d: remediate::Duration = s.parse().map_err(|e| UsageError(format!("{flag}: {e}")))?;
    if d.is_zero() {
        return Err(UsageError(format!(
            "{flag}: must be longer than zero, got {s:?}"
        )));
    }
    Ok(d.as_millis_i64())
}

/// `now`, `-DURATION` (before now) or RFC 3339, to ms since the epoch.
/// Every time heal reads from a user goes through here.
pub(crate) fn parse_time(flag: &str, s: &str, now_ms: i64) -> Result<i64, UsageError> {
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d: remediate::Duration = ago
            .parse()
            .map_err(|e| UsageError(format!("{flag} {s:?}: not a relative time: {e}")))?;
        return Ok(now_ms.saturating_sub(d.as_millis_i64()));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            UsageError(format!(
                "{flag} {s:?}: expected RFC 3339 (2026-01-05T00:00:00Z), \"now\" or a time before now like \"-1h\" ({e})"
            ))
        })
}

/// `ts` rounded up to a multiple of `step`.
fn ceil_to(ts: i64, step: i64) -> i64 {
    -((-ts).div_euclid(step) * step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_named_or_plain() {
        let q = |s| parse_query(s).unwrap();
        assert_eq!(
            q("latency=histogram_quantile(0.99, rate(h[5m]))"),
            RecordQuery {
                name: Some("latency".into()),
                query: "histogram_quantile(0.99, rate(h[5m]))".into()
            }
        );
        for plain in [
            r#"up{job="api"}"#,
            "x==1",
            "x == 1",
            "x!=1",
            "x>=1",
            r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))"#,
        ] {
            assert_eq!(q(plain).name, None, "{plain}");
            assert_eq!(q(plain).query, plain);
        }
        assert_eq!(
            parse_query("a=").unwrap_err().0,
            r#"--query "a=": the PromQL is empty"#
        );
    }

    #[test]
    fn times_absolute_now_and_relative() {
        let now = 1_767_571_200_000; // 2026-01-05T00:00:00Z
        assert_eq!(parse_time("--start", "now", now).unwrap(), now);
        assert_eq!(parse_time("--start", "-1h", now).unwrap(), now - 3_600_000);
        assert_eq!(
            parse_time("--start", "-1d12h", now).unwrap(),
            now - 129_600_000
        );
        assert_eq!(
            parse_time("--start", "2026-01-05T01:00:00+01:00", 0).unwrap(),
            now
        );
        assert_eq!(
            parse_time("--start", "-1x", now).unwrap_err().0,
            r#"--start "-1x": not a relative time: invalid duration "1x": unknown unit (use ms, s, m, h or d)"#
        );
        assert!(parse_time("--end", "yesterday", now)
            .unwrap_err()
            .0
            .starts_with(r#"--end "yesterday": expected RFC 3339"#));
    }

    #[test]
    fn steps_and_grid() {
        assert_eq!(parse_duration_ms("--step", "15s").unwrap(), 15_000);
        assert_eq!(
            parse_duration_ms("--step", "0s").unwrap_err().0,
            r#"--step: must be longer than zero, got "0s""#
        );
        assert_eq!(ceil_to(1_001, 1_000), 2_000);
        assert_eq!(ceil_to(2_000, 1_000), 2_000);
        assert_eq!(ceil_to(-1_500, 1_000), -1_000);
    }
}
