//! Scale-out: heal's roles as members of groups sharing Kafka topics, for
//! when one process is not enough (`heal ingest`, `heal detect`, `heal
//! remediate`). The embedded default (one `heal watch`, in-process
//! channels, SQLite) does not use any of this.
//!
//! ```text
//!  sources ──► heal ingest ──► [samples] ──► heal detect × N ──► [scores] ──► heal remediate × M
//!                  keyed by (signal, service)     │  ▲        keyed by group     │ begin once, fenced
//!                                                 ▼  │ restore on takeover       ▼
//!                                            [changelog] (one key per series)  PostgreSQL journal
//! ```
//!
//! - [`wire`]: the records and the keying rules.
//! - [`ingest`]: samples into the samples topic, keyed: from the live
//!   sources, a dataset or synthetic load.
//! - [`detect`]: a detect worker. Members of one group share the
//!   samples topic's partitions; each runs the sample policy and the
//!   detectors of its partitions' series (the very [`SeriesScorer`] the
//!   embedded pipeline runs) and produces one score per sample.
//! - [`remediate`]: a remediate member. Members share the scores topic's
//!   partitions; each runs the engine and begins each allowed step through
//!   the action journal in PostgreSQL, at most once per step whatever the
//!   members believe.
//! - `leases`: who holds which partition, for both.
//!
//! # What is guaranteed
//!
//! **Every sample produced is scored, and after de-duplication by the
//! sample's (partition, offset), exactly once, with the score an
//! uninterrupted run would give.** A worker checkpoints at most every
//! `checkpoint_every`: it waits for its scores to be acknowledged, writes
//! the state of every series that moved to the changelog, waits for that,
//! and only then commits its input offsets. A worker killed between two
//! checkpoints leaves scores the next owner produces again (from the same
//! restored state, so the same scores: duplicates, which the key removes);
//! one killed after writing the changelog but before committing leaves a
//! state newer than the committed offset, and the next owner skips the
//! samples that state already holds (their scores were acknowledged before
//! it was written). Nothing is acknowledged before it is written, so a
//! restarted broker loses nothing a worker counted on.
//!
//! **The broker must deliver every offset.** tansu 0.6's memory engine
//! answers a fetch that starts inside a batch from the next batch (its
//! dynostore lists batches by base offset), so a worker resuming at a
//! committed offset inside a batch never sees the rest of it; a worker
//! counts such gaps (`DetectStats::broker_gaps`) and logs them as errors.
//! Its libsql engine delivers every offset (what the tests run).
//!
//! **Not guaranteed:** scores arrive at least once (readers de-duplicate;
//! [`ScoreRecord`](wire::ScoreRecord) carries the key); a worker cut off
//! from the broker goes on scoring what it has fetched until its session
//! ends (its scores are duplicates of its successor's, same key, same
//! values); peers are not compared in a worker yet (samples are scored
//! one at a time); remediate members do not share their guards' memory
//! (cooldowns, rate limits), silences or approvals (see [`remediate`]).
//!
//! [`SeriesScorer`]: crate::pipeline::SeriesScorer

pub mod detect;
pub mod ingest;
mod leases;
pub mod remediate;
pub mod wire;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

/// What a scale-out role can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The broker refused or could not be reached, for longer than the
    /// client retries (boxed: librdkafka's error is large).
    #[error(transparent)]
    Kafka(Box<KafkaFailure>),
    /// The lease store (PostgreSQL) failed (boxed: the store's error is
    /// large).
    #[error(transparent)]
    Store(Box<store::StoreError>),
    /// A score or checkpoint was not acknowledged: the worker stops without
    /// committing, so that its successor scores those samples again.
    #[error("{0} messages not acknowledged by {1}; offsets not committed")]
    NotAcknowledged(u64, String),
}

/// What heal was doing with which brokers when librdkafka failed.
#[derive(Debug, thiserror::Error)]
#[error("{doing} on {brokers}: {source}")]
pub struct KafkaFailure {
    pub doing: String,
    pub brokers: String,
    #[source]
    pub source: KafkaError,
}

impl From<store::StoreError> for ScaleError {
    fn from(e: store::StoreError) -> Self {
        ScaleError::Store(Box::new(e))
    }
}

impl ScaleError {
    pub(crate) fn kafka(doing: impl Into<String>, brokers: &str, source: KafkaError) -> Self {
        ScaleError::Kafka(Box::new(KafkaFailure {
            doing: doing.into(),
            brokers: brokers.to_owned(),
            source,
        }))
    }
}

/// Hands `record` to `producer`, waiting while librdkafka's queue is full
/// (a broker slower than heal is back-pressure, not a loss).
pub(crate) fn send_waiting<C: rdkafka::producer::ProducerContext<DeliveryOpaque = ()> + 'static>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The settings every client of heal's shares (the producers add
/// `acks=all`: acknowledged by every in-sync replica).
pub(crate) fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("log_level", "4");
    c
}
