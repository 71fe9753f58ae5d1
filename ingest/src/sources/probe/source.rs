//! The probe loop: for every slot of the aligned grid, one HTTP request per target, and one
//! [`Evaluation`] per probe signal whose values are 1 (answered 2xx in time) or 0.
//!
//! See [`run_probe_source`] for the timing, the targets and the failure rules.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::target::UrlTemplate;
use crate::error::PromError;
use crate::series::{Labels, METRIC_NAME_LABEL};
use crate::sources::prometheus::source::ceil_to;
use crate::sources::prometheus::{
    Attempted, Evaluation, PrometheusClient, SourceEvent, SystemClock, Timer,
};

/// A probe signal: its name, the PromQL whose series are its targets, the URL to request for
/// each target, and how long a request may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSignal {
    /// The signal's name (the `__name__` of its series).
    pub name: String,
    /// PromQL whose series are the targets; their labels are the labels of the probe's series.
    pub targets: String,
    /// The URL of one target's probe.
    pub url: UrlTemplate,
    /// How long one probe may take, in ms; below the evaluation interval.
    pub timeout_ms: u64,
}

/// How one probe ended; the `result` label of `heal_probes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeResult {
    /// A 2xx answer, body included, within the timeout: value 1.
    Ok,
    /// No complete answer within the timeout (a hung service): value 0.
    Timeout,
    /// No connection (nothing listening, refused, unreachable, DNS): value 0.
    Refused,
    /// An answer that is not 2xx (redirects are not followed), or a connection that broke
    /// mid-answer: value 0.
    HttpError,
    /// Not probed: a label value used in the URL is missing or unsafe. No value.
    InvalidTarget,
}

impl ProbeResult {
    /// Every result, in label order.
    pub const ALL: [ProbeResult; 5] = [
        ProbeResult::Ok,
        ProbeResult::Timeout,
        ProbeResult::Refused,
        ProbeResult::HttpError,
        ProbeResult::InvalidTarget,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Refused => "refused",
            ProbeResult::HttpError => "http_error",
            ProbeResult::InvalidTarget => "invalid_target",
        }
    }

    /// The value of the probe's series, `None` when the target was not probed.
    pub fn value(self) -> Option<f64> {
        match self {
            ProbeResult::Ok => Some(1.0),
            ProbeResult::InvalidTarget => None,
            _ => Some(0.0),
        }
    }
}

/// Callback told of every probe's result, e.g. to count them.
pub type ProbeObserver = Arc<dyn Fn(&str, ProbeResult) + Send + Sync>;

/// Settings of a probe source beyond its signals.
#[derive(Clone)]
pub struct ProbeOptions {
    /// The evaluation interval in ms: the slot grid, shared with the Prometheus source.
    pub interval_ms: i64,
    /// Most requests in flight at once, over every signal.
    pub max_concurrent: usize,
    /// Told of every probe's result (heal counts them in `heal_probes_total`).
    pub observer: Option<ProbeObserver>,
}

impl std::fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("interval_ms", &self.interval_ms)
            .field("max_concurrent", &self.max_concurrent)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl ProbeOptions {
    /// Defaults for the interval: 256 requests in flight at once, no observer.
    pub fn new(interval_ms: i64) -> Self {
        ProbeOptions {
            interval_ms,
            max_concurrent: 256,
            observer: None,
        }
    }
}

/// How much of a probe's answer body is read: enough to know it was sent, not so much that a
/// target can make heal read a stream.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Runs the probe source on the system clock until `shutdown` is cancelled or the receiver of
/// `tx` is dropped.
///
/// # Timing
///
/// Slots are the Prometheus source's grid (`ts = k * interval_ms`), so probe and query series
/// share timestamps. The probe for slot `ts` starts at `ts - timeout`: its result is known at
/// `ts`, and a hang is seen at most one interval plus the timeout after it starts. Each probe
/// signal runs its own loop, so signals with different timeouts keep their own start times.
/// Every target gets one request per slot, all concurrently (bounded by
/// [`ProbeOptions::max_concurrent`]); a probe's deadline is measured on the source's [`Clock`]
/// (`ts`, or start + timeout when the probe started late), so a hung target never delays the
/// result of another, and the slot's [`Evaluation`] is sent by its time.
///
/// # Targets
///
/// Targets are the series of the signal's `targets` PromQL, evaluated through `client` once per
/// slot, in the background, while the previous slot's targets are probed: probing never waits
/// for Prometheus. When Prometheus is down, the last known targets keep being probed; before
/// the first successful answer there are none, and the slot's evaluation is the Prometheus error
/// ("no data", never an anomaly). Targets are never made up. Past the client's
/// `max_series_per_signal`, the first targets in label order are kept, the rest counted in
/// [`Evaluation::truncated`].
///
/// # Requests
///
/// A `GET` of the target's URL, rendered from its labels after checking each substituted value
/// ([`super::is_safe_target_value`]); a target with a bad value is not probed, logged and
/// reported as [`ProbeResult::InvalidTarget`]. A fresh connection per probe (no pooling: a
/// pooled connection to a restarted service would fail once and look like an outage), no
/// redirects followed, no proxy from the environment.
pub async fn run_probe_source(
    client: PrometheusClient,
    signals: Vec<ProbeSignal>,
    options: ProbeOptions,
    tx: Sender<SourceEvent>,
    shutdown: CancellationToken,
) -> Result<(), PromError> {
    run_probe_source_with_clock(client, signals, options, tx, shutdown, SystemClock).await
}

/// [`run_probe_source`] on the given clock.
///
/// Fails only on settings that make no sense (an interval that is not positive, a timeout of 0
/// or not below the interval, a concurrency of 0), before probing anything.
pub async fn run_probe_source_with_clock<C: Timer>(
    client: PrometheusClient,
    signals: Vec<ProbeSignal>,
    options: ProbeOptions,
    tx: Sender<SourceEvent>,
    shutdown: CancellationToken,
    clock: C,
) -> Result<(), PromError> {
    let invalid = |reason: String| Err(PromError::InvalidRequest { reason });
    if options.interval_ms <= 0 {
        return invalid(format!(
            "evaluation interval must be positive, got {} ms",
            options.interval_ms
        ));
    }
    if options.max_concurrent == 0 {
        return invalid("probe concurrency must be at least 1".into());
    }
    for s in &signals {
        if s.timeout_ms == 0 || s.timeout_ms as i64 >= options.interval_ms {
            return invalid(format!(
                "probe signal {:?}: timeout must be above 0 and below the evaluation interval ({} ms), got {} ms",
                s.name, options.interval_ms, s.timeout_ms
            ));
        }
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| PromError::Config {
            reason: format!("building the probe client: {e}"),
        })?;
    let shared = Arc::new(Shared {
        http,
        clock,
        semaphore: Arc::new(Semaphore::new(options.max_concurrent)),
        observer: options.observer,
        interval_ms: options.interval_ms,
    });
    let mut loops = JoinSet::new();
    for signal in signals {
        let span = tracing::info_span!("source", kind = "probe", signal = %signal.name);
        let run = run_signal(
            shared.clone(),
            client.clone(),
            signal,
            tx.clone(),
            shutdown.clone(),
        );
        loops.spawn(run.instrument(span));
    }
    drop(tx);
    while let Some(joined) = loops.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
    Ok(())
}

/// What every signal's loop and every probe share.
struct Shared<C> {
    http: reqwest::Client,
    clock: C,
    semaphore: Arc<Semaphore>,
    observer: Option<ProbeObserver>,
    interval_ms: i64,
}

type TargetQuery = JoinHandle<Attempted<Vec<(Labels, f64)>>>;

/// One signal's loop; returns on shutdown or when nobody listens any more.
async fn run_signal<C: Timer>(
    shared: Arc<Shared<C>>,
    client: PrometheusClient,
    signal: ProbeSignal,
    tx: Sender<SourceEvent>,
    shutdown: CancellationToken,
) {
    let interval = shared.interval_ms;
    let timeout = signal.timeout_ms as i64;
    // Last known targets (named, capped) and how many were dropped over the cap.
    let mut known: Option<(Vec<Labels>, usize, usize)> = None;
    let mut last_error: Option<PromError> = None;
    let mut next = ceil_to(shared.clock.now_ms() + timeout, interval);
    // Aborts the target query in flight when the loop ends.
    struct AbortOnDrop(Option<TargetQuery>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(h) = self.0.take() {
                h.abort();
            }
        }
    }
    let mut query = AbortOnDrop(Some(query_targets(
        &shared,
        &client,
        &signal,
        next - timeout,
    )));
    loop {
        let ts = next;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.clock.sleep_until(ts - timeout) => {}
        }
        // Take the newest target list if its query is done; before the first list, wait for it
        // up to the slot (there is nothing else to probe).
        let mut answer = None;
        if known.is_none() {
            if let Some(handle) = query.0.as_mut() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = shared.clock.sleep_until(ts) => {}
                    r = handle => answer = Some(r),
                }
            }
        }
        if answer.is_none() && query.0.as_ref().is_some_and(JoinHandle::is_finished) {
            if let Some(handle) = query.0.take() {
                answer = Some(handle.await);
            }
        }
        if let Some(answer) = answer {
            query.0 = None;
            match answer {
                Ok(Attempted {
                    result: Ok(series), ..
                }) => {
                    known = Some(name_and_cap(series, &signal.name, client.max_series()));
                    last_error = None;
                }
                Ok(Attempted { result: Err(e), .. }) => {
                    tracing::warn!(targets = %signal.targets, error = %e, kept = known.as_ref().map_or(0, |k| k.0.len()), "target query failed; probing the last known targets");
                    last_error = Some(e);
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        // The next slot's targets, queried while this slot probes (unless a query still runs).
        if query.0.is_none() {
            query.0 = Some(query_targets(
                &shared,
                &client,
                &signal,
                ts + interval - timeout,
            ));
        }

        let started = Instant::now();
        let evaluation = match &known {
            None => Evaluation {
                signal: signal.name.clone(),
                ts_ms: ts,
                outcome: Err(last_error.clone().unwrap_or_else(|| PromError::Timeout {
                    url: client.url().to_owned(),
                    timeout_ms: timeout as u64,
                })),
                duration_ms: started.elapsed().as_millis() as u64,
                attempts: 1,
                truncated: 0,
                duplicates: 0,
            },
            Some((targets, truncated, duplicates)) => {
                let values = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    v = probe_all(&shared, &signal, targets, ts) => v,
                };
                Evaluation {
                    signal: signal.name.clone(),
                    ts_ms: ts,
                    outcome: Ok(values),
                    duration_ms: started.elapsed().as_millis() as u64,
                    attempts: 1,
                    truncated: *truncated,
                    duplicates: *duplicates,
                }
            }
        };
        if !send(&tx, &shutdown, SourceEvent::Evaluation(evaluation)).await {
            return;
        }
        next = ts + interval;
        // A slot whose probe should have started already is skipped, not probed late.
        let earliest = ceil_to(shared.clock.now_ms() + timeout, interval);
        if earliest > next {
            let slots = ((earliest - next) / interval) as u64;
            tracing::warn!(
                first_ts_ms = next,
                slots,
                "probe source fell behind, skipping slots"
            );
            let skipped = SourceEvent::Skipped {
                first_ts_ms: next,
                slots,
            };
            if !send(&tx, &shutdown, skipped).await {
                return;
            }
            next = earliest;
        }
    }
}

/// Starts the query of a signal's targets, retried until `until_ms` on the source's clock at
/// the latest (the start of the probe that will use the answer).
fn query_targets<C: Timer>(
    shared: &Shared<C>,
    client: &PrometheusClient,
    signal: &ProbeSignal,
    until_ms: i64,
) -> TargetQuery {
    let (client, expr) = (client.clone(), signal.targets.clone());
    let now = shared.clock.now_ms();
    let deadline = Instant::now() + Duration::from_millis((until_ms - now).max(0) as u64);
    tokio::spawn(async move { client.query_attempted(&expr, now, Some(deadline)).await })
}

/// Probes every target (concurrently) and returns the values of the probed ones, sorted by
/// labels.
async fn probe_all<C: Timer>(
    shared: &Arc<Shared<C>>,
    signal: &ProbeSignal,
    targets: &[Labels],
    ts: i64,
) -> Vec<(Labels, f64)> {
    let mut tasks = JoinSet::new();
    let mut out = Vec::with_capacity(targets.len());
    for labels in targets {
        let url = match signal.url.render(labels) {
            Ok(url) => url,
            Err(bad) => {
                tracing::warn!(target = %labels, reason = %bad, "target not probed");
                observe(shared, &signal.name, ProbeResult::InvalidTarget);
                continue;
            }
        };
        let (shared, labels, timeout) = (shared.clone(), labels.clone(), signal.timeout_ms);
        tasks.spawn(async move {
            let result = probe_one(&shared, url, timeout, ts).await;
            (labels, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((labels, result)) => {
                observe(shared, &signal.name, result);
                if let Some(value) = result.value() {
                    out.push((labels, value));
                }
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn observe<C>(shared: &Shared<C>, signal: &str, result: ProbeResult) {
    if let Some(observer) = &shared.observer {
        observer(signal, result);
    }
}

/// One probe, ended at `ts` on the source's clock (or `timeout_ms` after it started, when it
/// started late).
async fn probe_one<C: Timer>(
    shared: &Shared<C>,
    url: reqwest::Url,
    timeout_ms: u64,
    ts: i64,
) -> ProbeResult {
    let Ok(_permit) = shared.semaphore.clone().acquire_owned().await else {
        return ProbeResult::Timeout; // never closed
    };
    let deadline = ts.max(shared.clock.now_ms() + timeout_ms as i64);
    // The reqwest timeout is a backstop on the monotonic clock; the deadline on the source's
    // clock is what ties the result to the slot.
    let request = shared
        .http
        .get(url)
        .timeout(Duration::from_millis(timeout_ms))
        .send();
    tokio::select! {
        _ = shared.clock.sleep_until(deadline) => ProbeResult::Timeout,
        r = async {
            match request.await {
                Ok(response) => read_answer(response).await,
                Err(e) => classify(&e),
            }
        } => r,
    }
}

/// Reads (part of) the body, so a target that sends headers and then hangs is not a success.
async fn read_answer(mut response: reqwest::Response) -> ProbeResult {
    let ok = response.status().is_success();
    let mut read = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read >= MAX_BODY_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return classify(&e),
        }
    }
    if ok {
        ProbeResult::Ok
    } else {
        ProbeResult::HttpError
    }
}

fn classify(e: &reqwest::Error) -> ProbeResult {
    if e.is_timeout() {
        ProbeResult::Timeout
    } else if e.is_connect() {
        ProbeResult::Refused
    } else {
        ProbeResult::HttpError
    }
}

/// Sets `__name__` to the signal on every target, drops duplicates, keeps the first `cap` in
/// label order: `(targets, truncated, duplicates)`.
fn name_and_cap(series: Vec<(Labels, f64)>, name: &str, cap: usize) -> (Vec<Labels>, usize, usize) {
    let mut labels: Vec<Labels> = series.into_iter().map(|(l, _)| l).collect();
    labels.sort();
    let before = labels.len();
    for l in &mut labels {
        l.set(METRIC_NAME_LABEL, name);
    }
    labels.sort();
    labels.dedup();
    let duplicates = before - labels.len();
    let truncated = labels.len().saturating_sub(cap);
    labels.truncate(cap);
    (labels, truncated, duplicates)
}

async fn send(tx: &Sender<SourceEvent>, shutdown: &CancellationToken, event: SourceEvent) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        r = tx.send(event) => r.is_ok(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn results_have_values_and_labels() {
        let values: Vec<_> = ProbeResult::ALL.iter().map(|r| r.value()).collect();
        assert_eq!(values, [Some(1.0), Some(0.0), Some(0.0), Some(0.0), None]);
        let names: Vec<_> = ProbeResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["ok", "timeout", "refused", "http_error", "invalid_target"]
        );
    }

    #[test]
    fn targets_are_named_deduplicated_and_capped() {
        let l = |s: &str| -> Labels { s.parse().unwrap() };
        let series = vec![
            (l(r#"up{a="2"}"#), 1.0),
            (l(r#"other{a="2"}"#), 1.0),
            (l(r#"up{a="1"}"#), 1.0),
            (l(r#"up{a="3"}"#), 1.0),
        ];
        let (targets, truncated, duplicates) = name_and_cap(series, "probe", 2);
        assert_eq!(targets, [l(r#"probe{a="1"}"#), l(r#"probe{a="2"}"#)]);
        assert_eq!((truncated, duplicates), (1, 1));
    }
}
