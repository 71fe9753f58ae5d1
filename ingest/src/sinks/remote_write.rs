//! heal's scores out by Prometheus remote write (`heal watch
//! --remote-write URL`), so that a dashboard plots each watched series'
//! anomaly score and normal band beside the metric.
//!
//! For every accepted sample of a watched series three samples go out at
//! its timestamp, labelled with the series' labels (its `__name__`, the
//! signal's name, moved to `signal`): `heal_anomaly_score` (the detector's
//! score, 0 to 1), `heal_band_lower` and `heal_band_upper` (the band
//! `level ± 3 sigma` the sample was judged against; left out while not
//! finite, during warm-up).
//!
//! **Never in the loop's way.** The decider hands a slot's scores over a
//! bounded channel without waiting ([`ScoreSender::offer`]); a full
//! channel drops the slot, counted. The sender batches what arrived
//! within [`FLUSH_EVERY`] (at most [`MAX_BATCH`] samples a request) and
//! posts it with the codec of [`crate::remote_write`]. A failure that a
//! retry can fix (no connection, a timeout, 5xx, 429) is retried with
//! backoff (100 ms doubling to 5 s, at most [`MAX_TRIES`] tries); a 4xx is
//! a request the receiver will never take, dropped at once. What is
//! dropped is counted by reason, never queued without bound.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::remote_write::{encode, Label, TimeSeries, WireSample, WriteRequest};
use crate::{Labels, METRIC_NAME_LABEL};

/// Most samples one request carries.
pub const MAX_BATCH: usize = 5_000;
/// A batch goes out at least this often while scores come.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Tries of one request before it is dropped.
pub const MAX_TRIES: u32 = 5;
/// Slots waiting for the sender (each one evaluation's scores).
pub const QUEUE_SLOTS: usize = 256;

/// One watched series' verdict at one timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorePoint {
    /// The series' labels (`__name__` is its signal).
    pub labels: Labels,
    /// Its timestamp, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The anomaly score.
    pub score: f64,
    /// The normal band, `(lower, upper)`.
    pub band: (f64, f64),
}

/// Counters of the sender, read by heal's telemetry.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Samples the receiver took.
    pub sent: AtomicU64,
    /// Samples dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Samples dropped after a 4xx or after [`MAX_TRIES`] failed tries.
    pub dropped_failed: AtomicU64,
    /// Requests that failed (each try).
    pub failed_requests: AtomicU64,
}

/// The decider's end: hands slots over without waiting.
#[derive(Debug, Clone)]
pub struct ScoreSender {
    tx: mpsc::Sender<Vec<ScorePoint>>,
    stats: Arc<SinkStats>,
}

impl ScoreSender {
    /// Offers one slot's scores; a full queue drops them (counted).
    pub fn offer(&self, points: Vec<ScorePoint>) {
        if points.is_empty() {
            return;
        }
        let n = points.len() as u64;
        if self.tx.try_send(points).is_err() {
            self.stats
                .dropped_queue_full
                .fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The three samples of one point (the band's sides only when finite).
pub fn series_of(point: &ScorePoint) -> Vec<TimeSeries> {
    let mut base: Vec<Label> = point
        .labels
        .iter()
        .filter(|(k, _)| *k != METRIC_NAME_LABEL && *k != "signal")
        .map(|(k, v)| Label {
            name: k.to_owned(),
            value: v.to_owned(),
        })
        .collect();
    if let Some(signal) = point.labels.name() {
        base.push(Label {
            name: "signal".into(),
            value: signal.to_owned(),
        });
    }
    let mut out = Vec::with_capacity(3);
    for (name, value) in [
        ("heal_anomaly_score", point.score),
        ("heal_band_lower", point.band.0),
        ("heal_band_upper", point.band.1),
    ] {
        if !value.is_finite() {
            continue;
        }
        let mut labels = base.clone();
        labels.push(Label {
            name: METRIC_NAME_LABEL.into(),
            value: name.into(),
        });
        // Remote write wants labels sorted by name.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(TimeSeries {
            labels,
            samples: vec![WireSample {
                value,
                timestamp: point.ts_ms,
            }],
        });
    }
    out
}

/// Where to send, and how.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// A bearer token for the receiver, if it wants one.
    pub token: Option<String>,
    /// Deadline of one request.
    pub timeout: Duration,
}

/// Starts the sender: the decider's handle, and the task to spawn (it runs
/// until `stop` is cancelled and the queue is drained, or every sender
/// handle is dropped).
pub fn remote_write_sink(
    config: SinkConfig,
    stop: CancellationToken,
) -> (
    ScoreSender,
    Arc<SinkStats>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = mpsc::channel(QUEUE_SLOTS);
    let stats = Arc::new(SinkStats::default());
    let sender = ScoreSender {
        tx,
        stats: stats.clone(),
    };
    (sender, stats.clone(), run(config, rx, stats, stop))
}

async fn run(
    config: SinkConfig,
    mut rx: mpsc::Receiver<Vec<ScorePoint>>,
    stats: Arc<SinkStats>,
    stop: CancellationToken,
) {
    let client = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "remote write out: no HTTP client; scores are not sent");
            return;
        }
    };
    let mut pending: Vec<TimeSeries> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // (still open, the tick fired)
        let (open, ticked) = tokio::select! {
            () = stop.cancelled() => (false, false),
            next = rx.recv() => match next {
                Some(points) => {
                    for p in &points {
                        pending.extend(series_of(p));
                    }
                    (true, false)
                }
                None => (false, false),
            },
            _ = tick.tick() => (true, true),
        };
        // A batch goes at each tick, when full, and at the end.
        if ticked || !open || pending.len() >= MAX_BATCH {
            while !pending.is_empty() {
                let rest = pending.split_off(pending.len().min(MAX_BATCH));
                let batch = std::mem::replace(&mut pending, rest);
                send(&client, &config, batch, &stats, &stop).await;
            }
        }
        if !open {
            return;
        }
    }
}

/// Posts one batch, retrying what a retry can fix.
async fn send(
    client: &reqwest::Client,
    config: &SinkConfig,
    batch: Vec<TimeSeries>,
    stats: &SinkStats,
    stop: &CancellationToken,
) {
    let samples = batch.len() as u64;
    let body = encode(&WriteRequest { timeseries: batch });
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=MAX_TRIES {
        let mut req = client
            .post(&config.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header("User-Agent", concat!("heal/", env!("CARGO_PKG_VERSION")))
            .body(body.clone());
        if let Some(t) = &config.token {
            req = req.bearer_auth(t);
        }
        let retry = match req.send().await {
            Ok(r) if r.status().is_success() => {
                stats.sent.fetch_add(samples, Ordering::Relaxed);
                return;
            }
            Ok(r) => {
                stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let retry = status.is_server_error() || status.as_u16() == 429;
                tracing::warn!(stage = "export", status = status.as_u16(), answer = %text.chars().take(200).collect::<String>(), attempt, retry, "remote write out refused");
                retry
            }
            Err(e) => {
                stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stage = "export", error = %e, attempt, "remote write out failed");
                true
            }
        };
        if !retry || attempt == MAX_TRIES {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    stats.dropped_failed.fetch_add(samples, Ordering::Relaxed);
}

/// The series of `points` by output metric, for tests and tools.
pub fn by_metric(points: &[ScorePoint]) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut out: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for p in points {
        for ts in series_of(p) {
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == METRIC_NAME_LABEL)
                .map(|l| l.value.clone())
                .unwrap_or_default();
            let rest: Vec<String> = ts
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME_LABEL)
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            out.entry(name)
                .or_default()
                .push((rest.join(","), ts.samples[0].value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_becomes_score_and_band_with_the_series_labels() {
        let p = ScorePoint {
            labels: Labels::from_pairs([("__name__", "api_latency"), ("instance", "a:1")]),
            ts_ms: 1_000,
            score: 0.25,
            band: (0.1, 0.3),
        };
        let m = by_metric(std::slice::from_ref(&p));
        assert_eq!(
            m["heal_anomaly_score"],
            [("instance=a:1,signal=api_latency".to_owned(), 0.25)]
        );
        assert_eq!(m["heal_band_lower"][0].1, 0.1);
        assert_eq!(m["heal_band_upper"][0].1, 0.3);
        // Sorted by name, as remote write wants.
        let ts = &series_of(&p)[0];
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "instance", "signal"]);
        // Warm-up: no band yet, the score alone.
        let warm = ScorePoint {
            band: (f64::NEG_INFINITY, f64::INFINITY),
            ..p
        };
        assert_eq!(series_of(&warm).len(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_never_waits() {
        let stop = CancellationToken::new();
        let (sender, stats, _task) = remote_write_sink(
            SinkConfig {
                url: "http://127.0.0.1:9/api/v1/write".into(),
                token: None,
                timeout: Duration::from_millis(100),
            },
            stop,
        );
        // The task is not running: the queue fills and then drops.
        let point = ScorePoint {
            labels: Labels::metric("s"),
            ts_ms: 1,
            score: 0.0,
            band: (0.0, 1.0),
        };
        for _ in 0..QUEUE_SLOTS + 3 {
            sender.offer(vec![point.clone(), point.clone()]);
        }
        assert_eq!(stats.dropped_queue_full.load(Ordering::Relaxed), 6);
    }
}
