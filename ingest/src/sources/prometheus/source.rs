//! The live Prometheus source: evaluates each signal's PromQL at aligned timestamps and sends
//! what came back, or why nothing did, down a bounded channel.
//!
//! See [`run_source`] for the timing, the failure and backpressure rules and the series
//! handling; they are documented there because this module is private.

use std::future::Future;
use std::time::Duration;

pub use stdx::{Clock, SystemClock};

use tokio::sync::mpsc::Sender;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{Attempted, PrometheusClient};
use crate::error::PromError;
use crate::series::{Labels, Sample, METRIC_NAME_LABEL};

/// A wall clock a source can wait on: what time it is ([`Clock`], the one
/// wall clock of heal, `stdx::Clock`) and how to wait for a time.
///
/// Only the source reads the clock; detectors and the engine get time as a parameter. Tests
/// drive a source with a clock of their own.
pub trait Timer: Clock {
    /// Returns once [`Clock::now_ms`] is at or past `ts_ms`.
    fn sleep_until(&self, ts_ms: i64) -> impl Future<Output = ()> + Send;
}

impl Timer for SystemClock {
    async fn sleep_until(&self, ts_ms: i64) {
        // Timers run on the monotonic clock, the target is wall time: check again after waking,
        // in case the wall clock was stepped back meanwhile.
        loop {
            let now = self.now_ms();
            if now >= ts_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis((ts_ms - now) as u64)).await;
        }
    }
}

/// A signal to evaluate: its name (the `__name__` of its series) and its PromQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalQuery {
    /// The signal's name.
    pub name: String,
    /// The PromQL expression.
    pub query: String,
}

impl SignalQuery {
    /// A signal `name` evaluating `query`.
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> Self {
        SignalQuery {
            name: name.into(),
            query: query.into(),
        }
    }
}

/// One evaluation of one signal at one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The signal's name.
    pub signal: String,
    /// The slot, ms since the epoch, a multiple of the interval.
    pub ts_ms: i64,
    /// The series and their values, sorted by labels, `__name__` set to the signal; or why
    /// there is no data for this slot. Values may be NaN or ±Inf, as Prometheus computed them;
    /// the [`crate::Sanitizer`] drops those.
    pub outcome: Result<Vec<(Labels, f64)>, PromError>,
    /// How long the evaluation took, retries included, in ms.
    pub duration_ms: u64,
    /// Requests made (1 unless retried).
    pub attempts: u32,
    /// Series dropped because the signal yielded more than `max_series_per_signal`.
    pub truncated: usize,
    /// Series dropped because setting `__name__` made their labels equal to another's.
    pub duplicates: usize,
}

impl Evaluation {
    /// An evaluation that read `series` at once, with no retry, cut or
    /// duplicate: what the sources heal computes itself give (Docker, logs,
    /// remote write).
    pub fn of(signal: impl Into<String>, ts_ms: i64, series: Vec<(Labels, f64)>) -> Self {
        Evaluation {
            signal: signal.into(),
            ts_ms,
            outcome: Ok(series),
            duration_ms: 0,
            attempts: 1,
            truncated: 0,
            duplicates: 0,
        }
    }
}

/// What a source sends.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// History of one signal, sent once at start, before any evaluation.
    Backfill {
        /// The signal's name.
        signal: String,
        /// Its series, sorted by labels, `__name__` set to the signal, samples on the slot grid.
        series: Vec<(Labels, Vec<Sample>)>,
        /// Series dropped over `max_series_per_signal`.
        truncated: usize,
        /// Series dropped because setting `__name__` made their labels equal to another's.
        duplicates: usize,
    },
    /// The back-fill of one signal failed; live evaluation starts cold for it.
    BackfillFailed {
        /// The signal's name.
        signal: String,
        /// Why.
        error: PromError,
    },
    /// One signal evaluated at one slot.
    Evaluation(Evaluation),
    /// A log signal's evidence at one slot (example lines, templates that
    /// moved), sent just before its evaluation of that slot.
    Logs(crate::sources::log_source::LogExamples),
    /// The call graph's edges found by the `diagnosis.edges` queries
    /// (caller, callee), sent at each refresh that succeeded.
    Topology(Vec<(String, String)>),
    /// Slots that were not evaluated because the source fell behind (slow evaluations or a
    /// slow consumer).
    Skipped {
        /// The first skipped slot.
        first_ts_ms: i64,
        /// How many consecutive slots were skipped.
        slots: u64,
    },
}

/// What a source did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Slots evaluated.
    pub slots: u64,
    /// Evaluations sent (one per signal and slot).
    pub evaluations: u64,
    /// Of those, the ones whose outcome was an error.
    pub failed: u64,
    /// Slots skipped because the source fell behind.
    pub skipped_slots: u64,
}

/// Runs the source on the system clock until `shutdown` is cancelled or the receiver of `tx`
/// is dropped.
///
/// # Timing
///
/// Evaluation timestamps are aligned to the interval: `ts = k * interval_ms` (ms since the
/// epoch), the way Prometheus aligns range-query steps. Aligned timestamps make two heal
/// instances, a restart and a back-fill all see the same grid, so a detector never receives two
/// samples a fraction of an interval apart. The source sleeps until the next slot on its
/// [`Clock`], evaluates every signal at that slot (concurrently, one task per signal) and sends
/// one [`Evaluation`] per signal, in signal order.
///
/// On start it back-fills every signal over `[now - backfill_ms, now]` with range queries on the
/// same grid ([`SourceEvent::Backfill`]), so detectors are warm from the first live evaluation.
/// The last back-filled slot is the last slot at or before `now`; the first live slot is the one
/// after it, so no timestamp is sent twice.
///
/// # Failures are "no data"
///
/// An evaluation that fails (Prometheus down, slow, an HTTP or PromQL error, an answer that is
/// not JSON) is sent as an [`Evaluation`] whose `outcome` is the error: downstream it means "no
/// data for this slot", never an anomaly and never a reason to act. Requests are retried with
/// backoff ([`crate::RetryConfig`]), but no retry is started that would end after the next slot:
/// a late answer is worth less than a fresh evaluation. The loop itself never stops on an error.
///
/// # Backpressure and missed slots
///
/// Events go through a bounded channel: when the consumer is slow, the source waits for room
/// rather than buffering without bound. Waiting (or a slow evaluation) can make the source miss
/// slots. A missed slot is not evaluated late and not queued: the source moves on to the latest
/// slot whose time has come, and reports the ones it skipped in one [`SourceEvent::Skipped`]. So
/// a stall of an hour costs one event, not an hour of catch-up queries.
///
/// # Series
///
/// Every series of a signal gets `__name__` set to the signal's name: aggregations drop the
/// metric name, and datasets and runbooks match series to signals by it. Two series that differ
/// only in their original name become one label set; the first in label order is kept and the
/// others are counted in [`Evaluation::duplicates`]. Past `max_series_per_signal`, the series
/// are truncated deterministically (the first ones in label order are kept) and the number
/// dropped is carried in [`Evaluation::truncated`]: the outcome stays `Ok`, because the kept
/// series are real data, and the count makes the truncation visible.
///
/// Series come and go (a pod restarts under a new name, a label changes): each evaluation
/// carries the series that exist at its slot, and a series that vanished is simply absent. The
/// source keeps no per-series state; deciding when an absent series is gone is downstream's job.
pub async fn run_source(
    client: PrometheusClient,
    signals: Vec<SignalQuery>,
    interval_ms: i64,
    backfill_ms: Option<i64>,
    tx: Sender<SourceEvent>,
    shutdown: CancellationToken,
) -> Result<SourceStats, PromError> {
    run_source_with_clock(
        client,
        signals,
        interval_ms,
        backfill_ms,
        tx,
        shutdown,
        SystemClock,
    )
    .await
}

/// [`run_source`] on the given clock.
///
/// Fails only when `interval_ms` is not positive; everything that goes wrong while running is
/// reported in the events.
pub async fn run_source_with_clock<C: Timer>(
    client: PrometheusClient,
    signals: Vec<SignalQuery>,
    interval_ms: i64,
    backfill_ms: Option<i64>,
    tx: Sender<SourceEvent>,
    shutdown: CancellationToken,
    clock: C,
) -> Result<SourceStats, PromError> {
    if interval_ms <= 0 {
        return Err(PromError::InvalidRequest {
            reason: format!("evaluation interval must be positive, got {interval_ms} ms"),
        });
    }
    let span = tracing::info_span!("source", kind = "prometheus", url = client.url());
    run(
        client,
        signals,
        interval_ms,
        backfill_ms,
        tx,
        shutdown,
        clock,
    )
    .instrument(span)
    .await
}

async fn run<C: Timer>(
    client: PrometheusClient,
    signals: Vec<SignalQuery>,
    interval_ms: i64,
    backfill_ms: Option<i64>,
    tx: Sender<SourceEvent>,
    shutdown: CancellationToken,
    clock: C,
) -> Result<SourceStats, PromError> {
    let mut stats = SourceStats::default();
    let now = clock.now_ms();
    let mut next = match backfill_ms.filter(|b| *b > 0) {
        Some(backfill) => {
            let last = floor_to(now, interval_ms);
            let first = ceil_to(now - backfill, interval_ms);
            let stopped = tokio::select! {
                _ = shutdown.cancelled() => true,
                r = backfill_all(&client, &signals, first, last, interval_ms, &tx) => r.is_err(),
            };
            if stopped {
                return Ok(stats);
            }
            last + interval_ms
        }
        None => ceil_to(now, interval_ms),
    };

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(stats),
            _ = clock.sleep_until(next) => {}
        }
        let ts = next;
        // Retries stop before the next slot: past it, a fresh evaluation is worth more.
        let until_next_slot = (ts + interval_ms - clock.now_ms()).max(0) as u64;
        let deadline = Instant::now() + Duration::from_millis(until_next_slot);
        let evaluations = tokio::select! {
            _ = shutdown.cancelled() => return Ok(stats),
            e = evaluate_all(&client, &signals, ts, deadline) => e,
        };
        stats.slots += 1;
        for evaluation in evaluations {
            stats.evaluations += 1;
            if let Err(e) = &evaluation.outcome {
                stats.failed += 1;
                tracing::warn!(signal = %evaluation.signal, ts_ms = ts, attempts = evaluation.attempts, error = %e, "evaluation failed, no data for this slot");
            } else if evaluation.truncated > 0 {
                tracing::warn!(signal = %evaluation.signal, ts_ms = ts, truncated = evaluation.truncated, cap = client.max_series(), "signal yields too many series, truncated");
            }
            if !send(&tx, &shutdown, SourceEvent::Evaluation(evaluation)).await {
                return Ok(stats);
            }
        }
        next = ts + interval_ms;
        let latest = floor_to(clock.now_ms(), interval_ms);
        if latest > next {
            let slots = ((latest - next) / interval_ms) as u64;
            stats.skipped_slots += slots;
            tracing::warn!(
                first_ts_ms = next,
                slots,
                "source fell behind, skipping slots"
            );
            let skipped = SourceEvent::Skipped {
                first_ts_ms: next,
                slots,
            };
            if !send(&tx, &shutdown, skipped).await {
                return Ok(stats);
            }
            next = latest;
        }
    }
}

/// Sends one event, waiting for room; false when the source must stop (shutdown, or nobody is
/// listening any more).
async fn send(tx: &Sender<SourceEvent>, shutdown: &CancellationToken, event: SourceEvent) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        r = tx.send(event) => r.is_ok(),
    }
}

/// Back-fills every signal (concurrently) and sends the events in signal order; `Err` when the
/// receiver is gone.
async fn backfill_all(
    client: &PrometheusClient,
    signals: &[SignalQuery],
    first: i64,
    last: i64,
    step: i64,
    tx: &Sender<SourceEvent>,
) -> Result<(), ()> {
    if first > last {
        return Ok(());
    }
    let mut tasks = JoinSet::new();
    for (i, signal) in signals.iter().enumerate() {
        let (client, query) = (client.clone(), signal.query.clone());
        tasks.spawn(async move {
            let r = client
                .query_range_attempted(&query, first, last, step, None)
                .await;
            (i, r)
        });
    }
    let mut results = join_in_order(tasks, signals.len()).await;
    for (signal, attempted) in signals.iter().zip(results.drain(..)) {
        let event = match attempted.result {
            Ok(series) => {
                let shaped = shape(series, &signal.name, client.max_series());
                tracing::info!(signal = %signal.name, series = shaped.series.len(), truncated = shaped.truncated, "back-filled");
                SourceEvent::Backfill {
                    signal: signal.name.clone(),
                    series: shaped.series,
                    truncated: shaped.truncated,
                    duplicates: shaped.duplicates,
                }
            }
            Err(error) => {
                tracing::warn!(signal = %signal.name, error = %error, "back-fill failed, starting cold");
                SourceEvent::BackfillFailed {
                    signal: signal.name.clone(),
                    error,
                }
            }
        };
        tx.send(event).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Evaluates every signal at `ts` (concurrently), in signal order.
async fn evaluate_all(
    client: &PrometheusClient,
    signals: &[SignalQuery],
    ts: i64,
    deadline: Instant,
) -> Vec<Evaluation> {
    let mut tasks = JoinSet::new();
    for (i, signal) in signals.iter().enumerate() {
        let (client, query) = (client.clone(), signal.query.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            let r = client.query_attempted(&query, ts, Some(deadline)).await;
            (i, (r, started.elapsed().as_millis() as u64))
        });
    }
    let results = join_in_order(tasks, signals.len()).await;
    signals
        .iter()
        .zip(results)
        .map(|(signal, (attempted, duration_ms))| {
            let Attempted { result, attempts } = attempted;
            let (outcome, truncated, duplicates) = match result {
                Ok(series) => {
                    let s = shape(series, &signal.name, client.max_series());
                    (Ok(s.series), s.truncated, s.duplicates)
                }
                Err(e) => (Err(e), 0, 0),
            };
            Evaluation {
                signal: signal.name.clone(),
                ts_ms: ts,
                outcome,
                duration_ms,
                attempts,
                truncated,
                duplicates,
            }
        })
        .collect()
}

/// Waits for all tasks and returns their results by index.
///
/// # Panics
///
/// Re-raises the panic of a task (a bug, not a Prometheus problem).
async fn join_in_order<T: Send + 'static>(mut tasks: JoinSet<(usize, T)>, n: usize) -> Vec<T> {
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, r)) => slots[i] = Some(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    slots
        .into_iter()
        .map(|s| s.expect("every task reports its index once"))
        .collect()
}

/// A signal's series after naming and capping.
#[derive(Debug, PartialEq)]
pub(crate) struct Shaped<T> {
    pub(crate) series: Vec<(Labels, T)>,
    pub(crate) truncated: usize,
    pub(crate) duplicates: usize,
}

/// Sets `__name__` to `name` on every series, drops the series whose labels then equal an
/// earlier one's (in original label order), and keeps the first `cap` in label order.
pub(crate) fn shape<T>(mut series: Vec<(Labels, T)>, name: &str, cap: usize) -> Shaped<T> {
    // Sorting by the original labels first makes the survivor of a collision deterministic.
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let before = series.len();
    let mut named: Vec<(Labels, T)> = Vec::with_capacity(before);
    for (mut labels, value) in series {
        labels.set(METRIC_NAME_LABEL, name);
        named.push((labels, value));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0)); // stable: among equals the first original stays first
    named.dedup_by(|later, earlier| later.0 == earlier.0);
    let duplicates = before - named.len();
    let truncated = named.len().saturating_sub(cap);
    named.truncate(cap);
    Shaped {
        series: named,
        truncated,
        duplicates,
    }
}

/// The slot at or before `ts` on the grid of `step` ms (the probe source
/// shares it, so both sources see one grid).
pub(crate) fn floor_to(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

/// The slot at or after `ts` on the grid of `step` ms.
pub(crate) fn ceil_to(ts: i64, step: i64) -> i64 {
    -floor_to(-ts, step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_toward_the_grid() {
        assert_eq!(floor_to(1_999, 1_000), 1_000);
        assert_eq!(floor_to(2_000, 1_000), 2_000);
        assert_eq!(floor_to(-1, 1_000), -1_000);
        assert_eq!(ceil_to(1_001, 1_000), 2_000);
        assert_eq!(ceil_to(2_000, 1_000), 2_000);
        assert_eq!(ceil_to(-1_500, 1_000), -1_000);
    }

    fn l(s: &str) -> Labels {
        s.parse().unwrap()
    }

    #[test]
    fn shape_names_dedups_and_caps_deterministically() {
        let input = vec![
            (l(r#"b{i="2"}"#), 2),
            (l(r#"a{i="2"}"#), 1),
            (l(r#"{i="3"}"#), 3),
            (l(r#"{i="1"}"#), 0),
        ];
        let s = shape(input.clone(), "sig", 10);
        assert_eq!(
            s.series,
            vec![
                (l(r#"sig{i="1"}"#), 0),
                (l(r#"sig{i="2"}"#), 1), // a{i="2"} sorts before b{i="2"}
                (l(r#"sig{i="3"}"#), 3),
            ]
        );
        assert_eq!((s.truncated, s.duplicates), (0, 1));
        let mut reversed = input;
        reversed.reverse();
        let capped = shape(reversed, "sig", 2);
        assert_eq!(
            capped.series,
            vec![(l(r#"sig{i="1"}"#), 0), (l(r#"sig{i="2"}"#), 1)]
        );
        assert_eq!((capped.truncated, capped.duplicates), (1, 1));
    }
}
