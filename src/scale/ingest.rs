//! Samples into the samples topic (`heal ingest`), keyed by
//! [`sample_key`](super::wire::sample_key): a recorded dataset replayed in
//! event time, or [`Synthetic`] load for `heal bench scale`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ingest::Labels;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use remediate::RunbookSet;
use serde::Serialize;

use super::wire::{sample_key, SampleRecord};
use super::{client_config, ScaleError};

/// What a publish did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Published {
    /// Samples the broker acknowledged.
    pub produced: u64,
    /// Samples of signals no runbook watches (not sent).
    pub unwatched: u64,
    /// Samples per partition, as the broker acknowledged them.
    pub partitions: BTreeMap<i32, u64>,
    /// Wall time, s.
    pub secs: f64,
}

struct Acks {
    failed: AtomicU64,
    partitions: std::sync::Mutex<BTreeMap<i32, u64>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(m) => {
                *self
                    .partitions
                    .lock()
                    .unwrap()
                    .entry(m.partition())
                    .or_default() += 1
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a sample was not acknowledged");
            }
        }
    }
}

/// Produces `samples` to `topic`, each keyed by its signal's service, at
/// most `rate` per second when given; returns once every one was
/// acknowledged (or fails saying how many were not).
pub fn publish(
    brokers: &str,
    topic: &str,
    runbooks: &RunbookSet,
    samples: impl IntoIterator<Item = (Labels, i64, f64)>,
    rate: Option<f64>,
) -> Result<Published, ScaleError> {
    let _span = tracing::info_span!("ingest", topic).entered();
    let producer: ThreadedProducer<Acks> = client_config(brokers)
        .set("acks", "all")
        // Retried batches neither reorder nor repeat a series' samples
        // (the sample policy would drop a reordered one).
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("client.id", "heal-ingest")
        .create_with_context(Acks {
            failed: AtomicU64::new(0),
            partitions: Default::default(),
        })
        .map_err(|e| ScaleError::kafka("creating the producer", brokers, e))?;
    let started = Instant::now();
    let mut out = Published::default();
    let mut sent = 0u64;
    for (labels, ts_ms, value) in samples {
        let name = labels.name().unwrap_or("").to_owned();
        let Some(signal) = runbooks.signal(&name) else {
            out.unwatched += 1;
            continue;
        };
        let key = sample_key(signal, &labels);
        let payload = serde_json::to_vec(&SampleRecord::new(&labels, ts_ms, value))
            .expect("a sample serializes");
        let record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        super::send_waiting(&producer, record)
            .map_err(|e| ScaleError::kafka(format!("producing to {topic}"), brokers, e))?;
        sent += 1;
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| ScaleError::kafka(format!("waiting for {topic}"), brokers, e))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(ScaleError::NotAcknowledged(failed, brokers.to_owned()));
    }
    out.partitions = producer.context().partitions.lock().unwrap().clone();
    out.produced = out.partitions.values().sum();
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Synthetic load: `series` series of `signal` (`instance` i, `service`
/// i / `replicas`), `steps` timestamps `step_ms` apart, timestamp-major
/// (every series' sample at a time, then the next time), as a scrape
/// gives them. Values are a slow wave (amplitude 5) with seeded noise;
/// every 17th series steps up by 80 in its last fifth (a fault to find).
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub signal: String,
    pub series: usize,
    pub replicas: usize,
    pub steps: usize,
    pub start_ms: i64,
    pub step_ms: i64,
    pub seed: u64,
}

impl Synthetic {
    /// The value of series `i` at step `t` (pure: the same every time).
    pub fn value(&self, i: usize, t: usize) -> f64 {
        let h = splitmix(self.seed ^ splitmix(i as u64 ^ splitmix(t as u64).rotate_left(17)));
        let noise = (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let base = 100.0 + (i % 13) as f64 + 5.0 * (t as f64 * 0.05 + i as f64).sin() + noise;
        if i % 17 == 0 && t >= self.steps * 4 / 5 {
            base + 80.0
        } else {
            base
        }
    }

    /// The labels of series `i`.
    pub fn labels(&self, i: usize) -> Labels {
        Labels::metric(self.signal.clone())
            .with("service", format!("svc-{}", i / self.replicas.max(1)))
            .with("instance", format!("i-{i}"))
    }

    /// Every sample, timestamp-major.
    pub fn samples(self) -> impl Iterator<Item = (Labels, i64, f64)> {
        let labels: std::sync::Arc<Vec<Labels>> =
            std::sync::Arc::new((0..self.series).map(|i| self.labels(i)).collect());
        let this = std::sync::Arc::new(self);
        (0..this.steps).flat_map(move |t| {
            let ts = this.start_ms + t as i64 * this.step_ms;
            let (labels, this) = (labels.clone(), this.clone());
            (0..this.series).map(move |i| (labels[i].clone(), ts, this.value(i, t)))
        })
    }
}

/// SplitMix64's finalizer: a seeded, stateless hash of one word.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
