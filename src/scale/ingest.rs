//! Samples into the samples topic (`heal ingest`), keyed by
//! [`sample_key`](super::wire::sample_key): the live sources' evaluations
//! ([`run_live`]: Prometheus, probes, logs, Docker, remote write and
//! Alertmanager pushed to heal's API), a recorded dataset replayed in event
//! time, or [`Synthetic`] load for `heal bench scale`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingest::Labels;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use remediate::RunbookSet;
use serde::Serialize;

use super::wire::{sample_key, SampleRecord};
use super::{client_config, ScaleError};
use crate::telemetry::Telemetry;

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
    /// heal's own metrics, when a live ingest serves them.
    telemetry: Option<Arc<Telemetry>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        let outcome = match result {
            Ok(m) => {
                *self
                    .partitions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(m.partition())
                    .or_default() += 1;
                "acknowledged"
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stage = "ingest", error = %e, "a sample was not acknowledged");
                "failed"
            }
        };
        if let Some(t) = &self.telemetry {
            t.add("heal_ingest_samples_total", &[("outcome", outcome)], 1.0);
        }
    }
}

/// The samples topic's producer: each sample keyed by
/// [`sample_key`], acknowledged by every in-sync replica, idempotent.
pub struct SampleProducer {
    producer: ThreadedProducer<Acks>,
    brokers: String,
    topic: String,
    /// Samples handed to the producer.
    sent: u64,
    /// Samples of signals no runbook watches (not sent).
    unwatched: u64,
}

impl std::fmt::Debug for SampleProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleProducer")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("sent", &self.sent)
            .finish()
    }
}

impl SampleProducer {
    /// A producer to `topic` on `brokers`; with `telemetry`, each
    /// acknowledgement (or failure) is counted in
    /// `heal_ingest_samples_total`.
    ///
    /// # Errors
    ///
    /// librdkafka refused the configuration.
    pub fn new(
        brokers: &str,
        topic: &str,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Result<Self, ScaleError> {
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
                telemetry,
            })
            .map_err(|e| ScaleError::kafka("creating the producer", brokers, e))?;
        Ok(SampleProducer {
            producer,
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            sent: 0,
            unwatched: 0,
        })
    }

    /// Sends one sample of the signal named by `labels`' `__name__`, keyed
    /// by its service; a sample of a signal no runbook watches is counted
    /// and not sent. Waits while librdkafka's queue is full.
    ///
    /// # Errors
    ///
    /// librdkafka refused the message (not a full queue: that is waited
    /// out).
    pub fn send(
        &mut self,
        runbooks: &RunbookSet,
        labels: &Labels,
        ts_ms: i64,
        value: f64,
    ) -> Result<(), ScaleError> {
        let Some(signal) = labels.name().and_then(|name| runbooks.signal(name)) else {
            self.unwatched += 1;
            return Ok(());
        };
        let key = sample_key(signal, labels);
        let payload = serde_json::to_vec(&SampleRecord::new(labels, ts_ms, value))
            .expect("a sample serializes");
        let record = BaseRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        super::send_waiting(&self.producer, record).map_err(|e| {
            ScaleError::kafka(format!("producing to {}", self.topic), &self.brokers, e)
        })?;
        self.sent += 1;
        Ok(())
    }

    /// Samples handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Waits (at most `timeout`) until every sample sent was acknowledged
    /// or failed, and says what happened to them.
    ///
    /// # Errors
    ///
    /// Some were still waiting at `timeout`, or some were not
    /// acknowledged ([`ScaleError::NotAcknowledged`]).
    pub fn flush(&self, timeout: Duration) -> Result<Published, ScaleError> {
        self.producer.flush(timeout).map_err(|e| {
            ScaleError::kafka(format!("waiting for {}", self.topic), &self.brokers, e)
        })?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(ScaleError::NotAcknowledged(failed, self.brokers.clone()));
        }
        let partitions = self
            .producer
            .context()
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Published {
            produced: partitions.values().sum(),
            unwatched: self.unwatched,
            partitions,
            secs: 0.0,
        })
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
    let mut producer = SampleProducer::new(brokers, topic, None)?;
    let started = Instant::now();
    for (labels, ts_ms, value) in samples {
        producer.send(runbooks, &labels, ts_ms, value)?;
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(producer.sent() as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let mut out = producer.flush(Duration::from_secs(120))?;
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}

/// What a live ingest needs, read and checked by the caller (the binary
/// reads the command line and the environment; nothing here does).
pub struct LiveIngest {
    /// Brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The samples topic.
    pub topic: String,
    /// The runbooks: which signals are read, and each one's key.
    pub runbooks: RunbookSet,
    /// Where Prometheus is (for `query:` and `probe:` signals).
    pub prometheus: Option<ingest::PrometheusConfig>,
    /// Evaluations happen at multiples of this.
    pub interval: Duration,
    /// How far back to back-fill the `query:` signals at start.
    pub backfill: Duration,
    /// Where the log sources keep their offsets (`--log-state`).
    pub log_state: Option<std::path::PathBuf>,
    /// The bearer token pushes (remote write, Alertmanager) must carry.
    pub api_token: Option<String>,
    /// Wall time (for `/healthz`).
    pub clock: Arc<dyn stdx::Clock>,
}

impl std::fmt::Debug for LiveIngest {
    /// The token is not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIngest")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("prometheus", &self.prometheus.as_ref().map(|p| &p.url))
            .field("interval", &self.interval)
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// What a live ingest did, reported when it stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveStats {
    /// Evaluations received from the sources.
    pub evaluations: u64,
    /// Evaluations that had no data (a source failed: nothing produced).
    pub failed_evaluations: u64,
    /// Samples handed to the producer (back-fill included).
    pub sent: u64,
    /// Sources' events this role does not carry over the topic (log
    /// examples, call-graph edges): the detect workers score samples only.
    pub not_carried: u64,
    /// What the broker acknowledged.
    pub published: Published,
}

/// Runs the live sources (the very ones `heal watch` runs) until
/// `shutdown` resolves, producing every sample of every evaluation to the
/// samples topic, keyed; serves `/metrics`, `/healthz`, remote write and
/// Alertmanager's webhook on `listener` when given. A failed evaluation
/// produces nothing (no data is never a sample); a broker that is down is
/// waited for (librdkafka retries, then counts the sample as failed in
/// `heal_ingest_samples_total{outcome="failed"}`), and a full producer
/// queue slows the sources, which then skip slots rather than grow memory.
///
/// # Errors
///
/// Bad configuration (reported before anything runs), or samples still
/// not acknowledged when the producer was flushed at the end.
pub async fn run_live(
    cfg: LiveIngest,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::Result<LiveStats> {
    use ingest::SourceEvent;
    let sources = crate::live::sources::prepare(crate::live::sources::SourceSettings {
        runbooks: &cfg.runbooks,
        interval: cfg.interval,
        backfill: cfg.backfill,
        log_state: cfg.log_state.as_deref(),
        prometheus: cfg.prometheus.as_ref(),
        docker: None,
        command: "heal ingest",
    })?;
    let telemetry = Arc::new(Telemetry::default());
    let producer = SampleProducer::new(&cfg.brokers, &cfg.topic, Some(telemetry.clone()))
        .map_err(|e| crate::Error::Scale(Box::new(e)))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let last_produced = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let server = listener.map(|listener| {
        tokio::spawn(crate::api::serve_ingest(
            listener,
            crate::api::IngestApi {
                token: cfg.api_token.clone(),
                telemetry: telemetry.clone(),
                last_produced: last_produced.clone(),
                interval: cfg.interval,
                clock: cfg.clock.clone(),
                push: sources.push(),
                alerts: sources.alerts(),
            },
            stop.clone(),
        ))
    });
    tracing::info!(
        stage = "ingest",
        topic = %cfg.topic,
        signals = cfg.runbooks.signals().len(),
        "ingest started"
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SourceEvent>(64);
    let tasks = sources.start(&telemetry, tx, &stop);
    // The producer's own thread: a send waits while librdkafka's queue is
    // full, which must not stall the runtime the sources and the API run on.
    let (runbooks, clock, t) = (cfg.runbooks, cfg.clock, telemetry.clone());
    let produce = tokio::task::spawn_blocking(move || {
        let _span = tracing::info_span!("ingest").entered();
        let mut producer = producer;
        let mut stats = LiveStats::default();
        let send = |producer: &mut SampleProducer, labels: &Labels, ts: i64, v: f64| {
            if let Err(e) = producer.send(&runbooks, labels, ts, v) {
                // Not a full queue (that is waited out): a message the
                // client refused. Counted; the loop goes on.
                t.add("heal_ingest_samples_total", &[("outcome", "refused")], 1.0);
                tracing::warn!(stage = "ingest", error = %e, "a sample was refused");
            }
        };
        while let Some(event) = rx.blocking_recv() {
            match event {
                SourceEvent::Evaluation(ev) => {
                    stats.evaluations += 1;
                    t.add("heal_evaluations_total", &[("signal", &ev.signal)], 1.0);
                    match ev.outcome {
                        Ok(series) => {
                            t.add(
                                "heal_samples_total",
                                &[("signal", &ev.signal)],
                                series.len() as f64,
                            );
                            for (labels, value) in series {
                                // The signal names the series, whatever
                                // the source called it.
                                let labels =
                                    labels.with(ingest::METRIC_NAME_LABEL, ev.signal.clone());
                                send(&mut producer, &labels, ev.ts_ms, value);
                            }
                        }
                        Err(e) => {
                            stats.failed_evaluations += 1;
                            t.add(
                                "heal_evaluation_failures_total",
                                &[("signal", &ev.signal), ("reason", e.kind())],
                                1.0,
                            );
                        }
                    }
                    last_produced.store(clock.now_ms(), Ordering::Relaxed);
                }
                SourceEvent::Backfill { signal, series, .. } => {
                    for (labels, samples) in series {
                        let labels = labels.with(ingest::METRIC_NAME_LABEL, signal.clone());
                        for s in samples {
                            send(&mut producer, &labels, s.ts_ms, s.value);
                        }
                    }
                }
                SourceEvent::BackfillFailed { signal, error } => {
                    tracing::warn!(stage = "ingest", %signal, %error, "back-fill failed");
                    t.add(
                        "heal_evaluation_failures_total",
                        &[("signal", &signal), ("reason", error.kind())],
                        1.0,
                    );
                }
                SourceEvent::Skipped { first_ts_ms, slots } => {
                    tracing::warn!(
                        stage = "ingest",
                        first_ts_ms,
                        slots,
                        "slots skipped: ingest fell behind"
                    );
                    t.add("heal_evaluation_slots_skipped_total", &[], slots as f64);
                }
                SourceEvent::Logs(_) | SourceEvent::Topology(_) => stats.not_carried += 1,
            }
        }
        stats.sent = producer.sent();
        let flushed = producer.flush(Duration::from_secs(30));
        (stats, flushed)
    });
    shutdown.await;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let (mut stats, flushed) = produce
        .await
        .map_err(|e| crate::Error::Usage(format!("the producer thread failed: {e}")))?;
    if let Some(server) = server {
        let _ = server.await;
    }
    stats.published = flushed.map_err(|e| crate::Error::Scale(Box::new(e)))?;
    tracing::info!(
        stage = "ingest",
        sent = stats.sent,
        produced = stats.published.produced,
        "ingest stopped"
    );
    Ok(stats)
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
