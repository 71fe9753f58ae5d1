//! Prometheus remote-write 1.0 as a source (`ingest::remote_write`):
//! samples pushed to heal instead of pulled by it.
//!
//! A Prometheus (or an agent: Grafana Alloy, vmagent, the OpenTelemetry
//! collector's exporter) configured with `remote_write: [{url:
//! http://heal:9464/api/v1/write}]` sends batches of series, each a
//! protobuf `WriteRequest` in snappy's block format. The API edge hands
//! the body to [`decode`] and the request to [`PushSignals::accept`]; this
//! module knows nothing of HTTP.
//!
//! **When.** A sender batches, so a sample arrives seconds after its
//! timestamp: a slot is evaluated [`PUSH_LAG_MS`] after it ended, and its
//! evaluation carries the slot's time (the remote-write signals' incidents
//! open that much later than a pulled signal's would).
//!
//! **Which samples count.** A runbook signal with `remote_write: {metric,
//! match, rate}` takes the series of that metric name whose labels carry
//! every `match` pair. At each slot (the same aligned grid as the other
//! sources) [`PushSignals::evaluate`] gives one series per matching series
//! that received a sample in the slot, `(slot - interval, slot]`: its
//! latest value, or with `rate: true` the per-second increase from the
//! latest sample of an earlier slot (a counter that went down restarted
//! from zero, as Prometheus' `rate` assumes). A series that stopped
//! sending has no value: a sample is never carried into a later slot.
//!
//! **Bounded.** A body is at most [`MAX_BODY_BYTES`] compressed and
//! [`MAX_DECODED_BYTES`] decoded (snappy states the decoded length first:
//! a lie is refused before anything is allocated); a series keeps at most
//! [`MAX_LABELS`] labels, names must be Prometheus label names and values
//! are cut at [`MAX_VALUE_BYTES`]; each signal keeps at most
//! [`MAX_SERIES_PER_SIGNAL`] series (the rest are counted, not kept) and a
//! series not heard from for [`STALE_SLOTS`] slots is forgotten. A sample
//! is not checked for sense here: NaN and infinities go on to the sample
//! policy like any other source's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sources::prometheus::{Evaluation, SourceEvent, Timer};
use crate::{Labels, METRIC_NAME_LABEL};

/// Largest request body taken (snappy-compressed).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Largest decoded `WriteRequest` taken.
pub const MAX_DECODED_BYTES: usize = 64 << 20;
/// Most labels a series keeps (a longer set is refused).
pub const MAX_LABELS: usize = 64;
/// Longest label value kept; longer ones are cut.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Most series one signal keeps.
pub const MAX_SERIES_PER_SIGNAL: usize = 10_000;
/// Slots without a sample after which a series is forgotten.
pub const STALE_SLOTS: i64 = 10;
/// How long after its end a slot is evaluated: a sender batches (for
/// Prometheus, `queue_config.batch_send_deadline`, 5 s by default), so a
/// sample arrives some seconds after its timestamp; one later than this is
/// late and not taken (`heal_remote_write_samples_total{outcome="unmatched"}`).
pub const PUSH_LAG_MS: i64 = 6_000;

/// remote-write 1.0's `prometheus.WriteRequest` (fields heal reads; the
/// rest, metadata and histograms, are skipped by the decoder).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Its labels, `__name__` included, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Its samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<WireSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a body was refused (the API answers 400 or 413: a sender does not
/// retry those, which is right for a body that will never decode).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteWriteError {
    /// Larger than [`MAX_BODY_BYTES`], or decoding to more than
    /// [`MAX_DECODED_BYTES`].
    #[error("body too large: {0}")]
    TooLarge(String),
    /// Not snappy's block format.
    #[error("not snappy-compressed (block format): {0}")]
    Snappy(String),
    /// Not a `WriteRequest`.
    #[error("not a remote-write WriteRequest: {0}")]
    Protobuf(String),
}

/// Decodes a remote-write body: snappy block format, then protobuf.
///
/// # Errors
///
/// See [`RemoteWriteError`].
pub fn decode(body: &[u8]) -> Result<WriteRequest, RemoteWriteError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(RemoteWriteError::TooLarge(format!(
            "{} bytes, at most {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let len =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if len > MAX_DECODED_BYTES {
        return Err(RemoteWriteError::TooLarge(format!(
            "decodes to {len} bytes, at most {MAX_DECODED_BYTES}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| RemoteWriteError::Protobuf(e.to_string()))
}

/// Encodes a `WriteRequest` as a remote-write body (what a sender posts).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// A runbook signal fed by remote write.
#[derive(Debug, Clone, PartialEq)]
pub struct PushWatch {
    /// The signal's name (`__name__` of its series).
    pub name: String,
    /// The metric name taken.
    pub metric: String,
    /// Labels a series must carry, with these values.
    pub matchers: BTreeMap<String, String>,
    /// Per-second increase of a counter instead of its value.
    pub rate: bool,
}

/// What one request brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Samples in the request.
    pub samples: u64,
    /// Samples some signal took.
    pub matched: u64,
    /// Series refused: too many labels, a bad label name, or a signal full.
    pub refused_series: u64,
}

/// Most samples a series holds for slots not yet evaluated (the oldest
/// go first): a sender ahead of the lag cannot grow memory.
pub const MAX_PENDING: usize = 256;

#[derive(Debug, Clone, Default)]
struct PushSeries {
    /// Samples received for slots not evaluated yet, oldest first.
    pending: std::collections::VecDeque<(i64, f64)>,
    /// The newest sample of an earlier slot (`rate`'s other end).
    before: Option<(i64, f64)>,
    /// The slot that last had a sample.
    last_slot: i64,
}

/// Every remote-write signal's series: filled by [`Self::accept`] as
/// requests come, read at each slot by [`Self::evaluate`].
#[derive(Debug, Default)]
pub struct PushSignals {
    watches: Vec<PushWatch>,
    series: Vec<HashMap<Labels, PushSeries>>,
    /// The last slot evaluated: samples at or before it belong to it.
    evaluated: i64,
}

use crate::series::is_label_name;

/// A label value cut at [`MAX_VALUE_BYTES`] on a character boundary (a
/// pushed value, or an alert's, is bounded like a scraped one).
pub(crate) fn cut(value: &str) -> &str {
    let mut end = value.len().min(MAX_VALUE_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

impl PushSignals {
    /// The signals to fill.
    pub fn new(watches: Vec<PushWatch>) -> Self {
        let series = watches.iter().map(|_| HashMap::new()).collect();
        PushSignals {
            watches,
            series,
            evaluated: i64::MIN,
        }
    }

    /// Whether any signal is fed by remote write.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Takes what `request` holds for the signals. Samples older than the
    /// last slot evaluated are late and not taken (counted as unmatched).
    pub fn accept(&mut self, request: &WriteRequest) -> Accepted {
        let mut out = Accepted::default();
        for ts in &request.timeseries {
            out.samples += ts.samples.len() as u64;
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == METRIC_NAME_LABEL)
                .map(|l| l.value.as_str());
            let Some(name) = name else { continue };
            let wanted: Vec<usize> = self
                .watches
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    w.metric == name
                        && w.matchers
                            .iter()
                            .all(|(k, v)| ts.labels.iter().any(|l| &l.name == k && &l.value == v))
                })
                .map(|(i, _)| i)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            if ts.labels.len() > MAX_LABELS
                || ts
                    .labels
                    .iter()
                    .any(|l| l.name != METRIC_NAME_LABEL && !is_label_name(&l.name))
            {
                out.refused_series += 1;
                continue;
            }
            let fresh: Vec<(i64, f64)> = ts
                .samples
                .iter()
                .filter(|s| s.timestamp > self.evaluated)
                .map(|s| (s.timestamp, s.value))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            for i in wanted {
                let labels = Labels::from_pairs(
                    ts.labels
                        .iter()
                        .filter(|l| l.name != METRIC_NAME_LABEL)
                        .map(|l| (l.name.clone(), cut(&l.value).to_owned())),
                )
                .with(METRIC_NAME_LABEL, self.watches[i].name.clone());
                let map = &mut self.series[i];
                if !map.contains_key(&labels) && map.len() >= MAX_SERIES_PER_SIGNAL {
                    out.refused_series += 1;
                    continue;
                }
                let s = map.entry(labels).or_default();
                for &(t, v) in &fresh {
                    // In order almost always; a sample out of order goes
                    // to its place.
                    let at = s.pending.partition_point(|(pt, _)| *pt <= t);
                    s.pending.insert(at, (t, v));
                }
                while s.pending.len() > MAX_PENDING {
                    s.pending.pop_front();
                }
                out.matched += fresh.len() as u64;
            }
        }
        out
    }

    /// The evaluations of slot `ts_ms` (one per signal), the slot being
    /// `(ts_ms - interval_ms, ts_ms]`; then the slot is closed: later
    /// samples at or before it are late.
    pub fn evaluate(&mut self, ts_ms: i64, interval_ms: i64) -> Vec<Evaluation> {
        let from = ts_ms - interval_ms;
        let mut out = Vec::with_capacity(self.watches.len());
        for (w, map) in self.watches.iter().zip(self.series.iter_mut()) {
            let mut series = Vec::new();
            map.retain(|_, s| {
                !s.pending.is_empty() || ts_ms - s.last_slot <= STALE_SLOTS * interval_ms
            });
            for (labels, s) in map.iter_mut() {
                // This slot's newest sample; everything up to the slot's
                // end is then done with (older ones were late).
                let taken = s
                    .pending
                    .iter()
                    .rev()
                    .find(|(t, _)| *t > from && *t <= ts_ms)
                    .copied();
                while s.pending.front().is_some_and(|(t, _)| *t <= ts_ms) {
                    s.pending.pop_front();
                }
                let Some((t, v)) = taken else { continue };
                let value = if w.rate {
                    match s.before {
                        Some((t0, v0)) if t > t0 => {
                            let increase = if v >= v0 { v - v0 } else { v };
                            Some(increase * 1000.0 / (t - t0) as f64)
                        }
                        _ => None,
                    }
                } else {
                    Some(v)
                };
                s.before = Some((t, v));
                s.last_slot = ts_ms;
                if let Some(value) = value {
                    series.push((labels.clone(), value));
                }
            }
            series.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(Evaluation::of(w.name.clone(), ts_ms, series));
        }
        self.evaluated = self.evaluated.max(ts_ms);
        out
    }

    /// Series kept, over every signal.
    pub fn series(&self) -> usize {
        self.series.iter().map(HashMap::len).sum()
    }
}

/// The shared handle: the API edge accepts into it, the slot task reads it.
pub type SharedPush = Arc<Mutex<PushSignals>>;

/// Signals filled from outside between slots (remote write's samples,
/// Alertmanager's alerts) and read once per slot.
pub trait SlotSignals: Send + 'static {
    /// The evaluations of slot `ts_ms`, one per signal.
    fn evaluate(&mut self, ts_ms: i64, interval_ms: i64) -> Vec<Evaluation>;
}

impl SlotSignals for PushSignals {
    fn evaluate(&mut self, ts_ms: i64, interval_ms: i64) -> Vec<Evaluation> {
        PushSignals::evaluate(self, ts_ms, interval_ms)
    }
}

/// Runs a pushed source until `stop` is cancelled or `tx` closes: for
/// every slot (multiples of `interval_ms` on `clock`), `lag_ms` after it
/// ended ([`PUSH_LAG_MS`] for remote write, 0 for alerts), one
/// [`SourceEvent::Evaluation`] per signal, stamped with the slot's time.
pub async fn run_push_source<S: SlotSignals, C: Timer>(
    push: Arc<Mutex<S>>,
    interval_ms: i64,
    lag_ms: i64,
    tx: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
    clock: C,
) {
    let interval_ms = interval_ms.max(1);
    let lag_ms = lag_ms.max(0);
    let mut next = ((clock.now_ms() - lag_ms) / interval_ms + 1) * interval_ms;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(next + lag_ms) => {}
        }
        let evaluations = push
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evaluate(next, interval_ms);
        for ev in evaluations {
            if tx.send(SourceEvent::Evaluation(ev)).await.is_err() {
                return;
            }
        }
        next += interval_ms;
        let now = clock.now_ms() - lag_ms;
        if next <= now {
            next = (now / interval_ms + 1) * interval_ms;
        }
    }
}

/// A slot's evaluations as `labels value` lines, for the tests of every
/// [`SlotSignals`].
#[cfg(test)]
pub(crate) fn values(e: &[Evaluation]) -> Vec<String> {
    e.iter()
        .flat_map(|e| e.outcome.as_ref().unwrap().iter())
        .map(|(l, v)| format!("{l} {v}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|(t, v)| WireSample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
        }
    }

    #[test]
    fn a_body_round_trips_and_garbage_is_refused_before_allocating() {
        let req = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "up"), ("job", "api")],
                &[(1000, 1.0)],
            )],
        };
        assert_eq!(decode(&encode(&req)).unwrap(), req);
        assert!(matches!(
            decode(b"not snappy at all"),
            Err(RemoteWriteError::Snappy(_) | RemoteWriteError::Protobuf(_))
        ));
        // Snappy that is not a WriteRequest.
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff])
            .unwrap();
        assert!(matches!(decode(&junk), Err(RemoteWriteError::Protobuf(_))));
        // A header claiming 2^32 bytes: refused from its varint alone.
        let liar = [0x80, 0x80, 0x80, 0x80, 0x10, 0x00];
        assert!(matches!(
            decode(&liar),
            Err(RemoteWriteError::TooLarge(_) | RemoteWriteError::Snappy(_))
        ));
    }

    #[test]
    fn slots_take_the_latest_sample_of_matching_series_and_rates_of_counters() {
        let mut push = PushSignals::new(vec![
            PushWatch {
                name: "api_latency".into(),
                metric: "lab_request_latency_seconds".into(),
                matchers: BTreeMap::from([("service".into(), "api".into())]),
                rate: false,
            },
            PushWatch {
                name: "api_requests".into(),
                metric: "lab_requests_total".into(),
                matchers: BTreeMap::new(),
                rate: true,
            },
        ]);
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "lab_request_latency_seconds"),
                        ("service", "api"),
                    ],
                    &[(9_200, 0.1), (9_700, 0.3)],
                ),
                series(
                    &[
                        ("__name__", "lab_request_latency_seconds"),
                        ("service", "web"),
                    ],
                    &[(9_700, 9.0)],
                ),
                series(
                    &[("__name__", "lab_requests_total"), ("service", "api")],
                    &[(9_500, 100.0)],
                ),
                series(&[("__name__", "other")], &[(9_500, 1.0)]),
            ],
        };
        let a = push.accept(&req);
        assert_eq!((a.samples, a.matched, a.refused_series), (5, 3, 0));
        assert_eq!(
            values(&push.evaluate(10_000, 1_000)),
            [r#"api_latency{service="api"} 0.3"#],
            "the counter's first slot has no rate yet"
        );
        // Next slot: the counter went up 50 in 1 s; the latency series
        // sent nothing and has no value (never carried over).
        push.accept(&WriteRequest {
            timeseries: vec![series(
                &[("__name__", "lab_requests_total"), ("service", "api")],
                &[(10_500, 150.0)],
            )],
        });
        assert_eq!(
            values(&push.evaluate(11_000, 1_000)),
            [r#"api_requests{service="api"} 50"#]
        );
        // A restart: the counter starts again from zero.
        push.accept(&WriteRequest {
            timeseries: vec![series(
                &[("__name__", "lab_requests_total"), ("service", "api")],
                &[(11_500, 10.0)],
            )],
        });
        assert_eq!(
            values(&push.evaluate(12_000, 1_000)),
            [r#"api_requests{service="api"} 10"#]
        );
        // Late: a sample of a closed slot is not taken.
        let late = push.accept(&WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", "lab_request_latency_seconds"),
                    ("service", "api"),
                ],
                &[(11_900, 5.0)],
            )],
        });
        assert_eq!(late.matched, 0);
        assert!(values(&push.evaluate(13_000, 1_000)).is_empty());
    }

    #[test]
    fn samples_ahead_of_the_slot_evaluated_wait_for_their_own() {
        // Evaluated with a lag: three slots' samples are there at once.
        let mut push = PushSignals::new(vec![PushWatch {
            name: "g".into(),
            metric: "m".into(),
            matchers: BTreeMap::new(),
            rate: false,
        }]);
        push.accept(&WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m")],
                &[(500, 1.0), (1_500, 2.0), (2_200, 3.0), (2_900, 4.0)],
            )],
        });
        assert_eq!(values(&push.evaluate(1_000, 1_000)), ["g 1"]);
        assert_eq!(values(&push.evaluate(2_000, 1_000)), ["g 2"]);
        assert_eq!(values(&push.evaluate(3_000, 1_000)), ["g 4"]);
        assert!(values(&push.evaluate(4_000, 1_000)).is_empty());
    }

    #[test]
    fn hostile_series_are_bounded() {
        let mut push = PushSignals::new(vec![PushWatch {
            name: "s".into(),
            metric: "m".into(),
            matchers: BTreeMap::new(),
            rate: false,
        }]);
        let long = "x".repeat(100_000);
        let many: Vec<(String, String)> = (0..100).map(|i| (format!("l{i}"), "v".into())).collect();
        let mut too_many = series(&[("__name__", "m")], &[(500, 1.0)]);
        too_many.labels.extend(many.iter().map(|(n, v)| Label {
            name: n.clone(),
            value: v.clone(),
        }));
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "m"), ("a", &long)], &[(500, 1.0)]),
                series(&[("__name__", "m"), ("bad-name", "v")], &[(500, 1.0)]),
                too_many,
            ],
        };
        let a = push.accept(&req);
        assert_eq!(a.refused_series, 2);
        let e = push.evaluate(1_000, 1_000);
        let (labels, _) = &e[0].outcome.as_ref().unwrap()[0];
        assert_eq!(labels.get("a").unwrap().len(), MAX_VALUE_BYTES);
        // At most MAX_SERIES_PER_SIGNAL series.
        let flood = WriteRequest {
            timeseries: (0..MAX_SERIES_PER_SIGNAL + 5)
                .map(|i| series(&[("__name__", "m"), ("i", &i.to_string())], &[(1_500, 1.0)]))
                .collect(),
        };
        assert!(push.accept(&flood).refused_series >= 5);
        assert!(push.series() <= MAX_SERIES_PER_SIGNAL);
    }
}
