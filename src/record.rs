//! `heal record`: record series from a Prometheus server into a dataset (the offline format,
//! `ingest::Dataset`), to replay later or to turn into a test case.
//!
//! Secrets never go on the command line (other users see it in `ps`): `--bearer-token-env` and
//! `--basic-auth-password-env` name environment variables, which the binary reads and passes
//! in [`RecordConfig::auth`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use ingest::{Auth, Dataset, PromError, PrometheusClient, PrometheusConfig, RecordQuery};

use crate::text::parse_time;
use crate::{Context, Error, Result};

/// What to record (`heal record`'s arguments, with secrets already read
/// from the environment by the binary).
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Base URL of the Prometheus server.
    pub prometheus: String,
    /// Queries, `NAME=PROMQL` or just `PROMQL`.
    pub queries: Vec<String>,
    /// Start of the range (RFC 3339, `now`, `-1h`).
    pub start: String,
    /// End of the range (inclusive), same forms.
    pub end: String,
    /// Time between samples (`15s`).
    pub step: String,
    /// Longest a single request may take (`30s`).
    pub timeout: String,
    /// Most series one query may yield.
    pub max_series: usize,
    /// The dataset file to write (Parquet).
    pub output: PathBuf,
    /// Bearer token or basic auth, if any.
    pub auth: Option<Auth>,
}

/// Records the queries and writes the dataset, printing what it wrote.
pub async fn run(args: RecordConfig, now_ms: i64) -> Result<()> {
    let step_ms = parse_duration_ms("--step", &args.step)?;
    let timeout_ms = parse_duration_ms("--timeout", &args.timeout)?;
    let start_ms = parse_time("--start", &args.start, now_ms)?;
    let end_ms = parse_time("--end", &args.end, now_ms)?;
    // On the step grid, like the live source's aligned evaluations: recordings of the same
    // range line up sample for sample.
    let start_ms = ceil_to(start_ms, step_ms);
    if end_ms < start_ms {
        return Err(Error::Usage(format!(
            "--start {:?} is after --end {:?} (once rounded up to a multiple of --step)",
            args.start, args.end
        )));
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
    config.auth = args.auth.clone();
    let client = PrometheusClient::new(config).map_err(|e| Error::Usage(e.to_string()))?;

    let dataset = ingest::record(&client, &queries, start_ms, end_ms, step_ms)
        .await
        .map_err(|e| {
            if is_usage(&e) {
                Error::Usage(e.to_string())
            } else {
                e.into()
            }
        })?;
    if dataset.series.is_empty() {
        return Err(Error::msg(format_args!(
            "recording from {}: the queries yielded no data between --start and --end; nothing written",
            args.prometheus
        )));
    }
    dataset
        .write(&args.output)
        .with_context(|| format!("writing dataset {}", args.output.display()))?;
    print_summary(&dataset, &args, step_ms);
    Ok(())
}

/// What log sources to record (`heal record --log-source`).
#[derive(Debug, Clone)]
pub struct LogRecordConfig {
    /// Directory of YAML runbooks declaring the sources.
    pub runbooks: PathBuf,
    /// The sources to record, by name.
    pub sources: Vec<String>,
    /// Read files from their beginning and Kafka topics from their earliest
    /// offset, rather than only what arrives from now on.
    pub from_start: bool,
    /// Stop after this long (ms).
    pub duration_ms: Option<i64>,
    /// Stop once no line arrived for this long (ms).
    pub idle_ms: Option<i64>,
    /// Stop at this many lines (and never hold more).
    pub max_lines: usize,
    /// Time between reads (ms).
    pub poll_ms: i64,
    /// The log dataset file to write (Parquet).
    pub output: PathBuf,
}

/// Why a log recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// `--for` ran out.
    Duration,
    /// No line for `--idle`.
    Idle,
    /// `--lines` reached.
    Lines,
    /// Interrupted (SIGINT, SIGTERM): what was read is written.
    Interrupted,
}

impl Stopped {
    fn as_str(self) -> &'static str {
        match self {
            Stopped::Duration => "its --for ran out",
            Stopped::Idle => "no line arrived for --idle",
            Stopped::Lines => "it reached --lines",
            Stopped::Interrupted => "it was interrupted",
        }
    }
}

/// Records the runbooks' log sources named in `args` into a log dataset
/// and writes it: each line with its event time (its own, when the
/// source's format reads one, otherwise when it was read). Files are
/// tailed and Kafka topics read from every partition by a consumer of its
/// own that commits nothing, so a running `heal watch` is not disturbed.
/// Stops at `--for`, `--idle` or `--lines`, or when `stop` is cancelled;
/// what was read is written in every case.
///
/// # Errors
///
/// Bad runbooks, an unknown source, a source that cannot be opened, a file
/// that cannot be written.
pub async fn record_logs<C: ingest::Timer>(
    args: LogRecordConfig,
    clock: C,
    stop: tokio_util::sync::CancellationToken,
) -> Result<ingest::LogDataset> {
    use ingest::log_source::{LogInput, LogRecorder};
    let runbooks =
        remediate::RunbookSet::load_dir(&args.runbooks).map_err(|e| Error::Usage(e.to_string()))?;
    if args.sources.is_empty() {
        return Err(Error::Usage(
            "name a log source to record (--log-source NAME)".into(),
        ));
    }
    let all = crate::log_sources::sources(&runbooks, crate::log_sources::Inputs::Live);
    let mut chosen = Vec::new();
    for name in &args.sources {
        let Some(mut source) = all.iter().find(|s| &s.name == name).cloned() else {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "--log-source {name:?}: the runbooks in {} declare no such log source (they declare: {})",
                args.runbooks.display(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )));
        };
        let read_from = if args.from_start {
            ingest::file::ReadFrom::Beginning
        } else {
            ingest::file::ReadFrom::End
        };
        match &mut source.input {
            LogInput::Files(tail) => tail.read_from = read_from,
            LogInput::Kafka(k) => {
                // Every partition, under a group of its own with nothing
                // committed: the running heal's group keeps its members
                // and its offsets.
                k.read_from = read_from;
                k.assign = ingest::kafka::Assign::AllPartitions;
                k.instance = None;
                k.group = format!("{}-record-{}", k.group, std::process::id());
            }
            LogInput::Recorded => {}
        }
        chosen.push(source);
    }
    let mut recorder = LogRecorder::new(chosen).map_err(|e| Error::Usage(e.to_string()))?;
    let mut dataset = ingest::LogDataset::default();
    let start = clock.now_ms();
    // The window a replay counts (quiet stretches included) is the
    // recording's when it records what arrives. With --from-start the
    // lines go back to whenever the sources began, and their own span is
    // the window.
    let window = !args.from_start;
    if window {
        dataset.start_ms = Some(start);
    }
    let mut last_line = start;
    let poll_ms = args.poll_ms.max(1);
    let mut next = start;
    let stopped = loop {
        let now = clock.now_ms();
        let (back, data, read) = tokio::task::spawn_blocking(move || {
            let mut data = dataset;
            let read = recorder.poll(now, &mut data);
            (recorder, data, read)
        })
        .await
        .map_err(|e| Error::msg(format_args!("the log reader failed: {e}")))?;
        recorder = back;
        dataset = data;
        for p in &read.problems {
            tracing::warn!(stage = "ingest", problem = %p, "log recording: not read");
        }
        if read.lines > 0 {
            last_line = now;
        }
        if dataset.lines.len() >= args.max_lines {
            dataset.lines.truncate(args.max_lines);
            break Stopped::Lines;
        }
        if args.duration_ms.is_some_and(|d| now - start >= d) {
            break Stopped::Duration;
        }
        if args.idle_ms.is_some_and(|d| now - last_line >= d) {
            break Stopped::Idle;
        }
        next += poll_ms;
        tokio::select! {
            () = stop.cancelled() => break Stopped::Interrupted,
            () = clock.sleep_until(next) => {}
        }
    };
    let end = clock.now_ms();
    if window {
        dataset.end_ms = Some(end);
    }
    dataset
        .write(&args.output)
        .with_context(|| format!("writing log dataset {}", args.output.display()))?;
    let mut summary = format!(
        "wrote {} log lines to {} ({} seconds recorded; stopped because {})",
        dataset.lines.len(),
        args.output.display(),
        (end - start) / 1000,
        stopped.as_str()
    );
    for (name, lines, stamped) in recorder.counts() {
        summary.push_str(&format!(
            "\n  {name}: {lines} lines read, {stamped} with their own event time"
        ));
    }
    if let Some((first, last)) = dataset.window() {
        summary.push_str(&format!(
            "\n  from {} to {}",
            format_ms(first),
            format_ms(last)
        ));
    }
    println!("{summary}");
    Ok(dataset)
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

fn print_summary(dataset: &Dataset, args: &RecordConfig, step_ms: i64) {
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
    remediate::time::rfc3339(ms)
}

/// `NAME=PROMQL` when the text before the first `=` is a metric name and the `=` is not the
/// start of `==` or `=~`; otherwise the whole argument is PromQL. (PromQL never has a bare
/// `identifier=` outside braces, so a real query is never misread as named.)
fn parse_query(arg: &str) -> Result<RecordQuery> {
    let named = arg.split_once('=').filter(|(name, rest)| {
        is_metric_name(name) && !rest.starts_with('=') && !rest.starts_with('~')
    });
    let (name, query) = match named {
        Some((name, query)) => (Some(name.to_string()), query.trim()),
        None => (None, arg.trim()),
    };
    if query.is_empty() {
        return Err(Error::Usage(format!(
            "--query {arg:?}: the PromQL is empty"
        )));
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
fn parse_duration_ms(flag: &str, s: &str) -> Result<i64> {
    let d: remediate::Duration = s
        .parse()
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))?;
    if d.is_zero() {
        return Err(Error::Usage(format!(
            "{flag}: must be longer than zero, got {s:?}"
        )));
    }
    Ok(d.as_millis_i64())
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
            parse_query("a=").unwrap_err().to_string(),
            r#"--query "a=": the PromQL is empty"#
        );
    }

    #[test]
    fn steps_and_grid() {
        assert_eq!(parse_duration_ms("--step", "15s").unwrap(), 15_000);
        assert_eq!(
            parse_duration_ms("--step", "0s").unwrap_err().to_string(),
            r#"--step: must be longer than zero, got "0s""#
        );
        assert_eq!(ceil_to(1_001, 1_000), 2_000);
        assert_eq!(ceil_to(2_000, 1_000), 2_000);
        assert_eq!(ceil_to(-1_500, 1_000), -1_000);
    }
}
