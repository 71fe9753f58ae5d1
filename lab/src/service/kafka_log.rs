//! `--kafka BROKERS`: the service's log lines also go to a Kafka topic, one
//! message per line, through librdkafka's threaded producer (it sends in
//! the background; a full queue drops the line and counts it rather than
//! slow a request down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::error::{Error, Result};

/// A producer of log lines to one topic.
pub struct KafkaLog {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    dropped: AtomicU64,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("topic", &self.topic)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// A producer to `brokers` (`host:port,...`) for `topic`.
    ///
    /// # Errors
    ///
    /// librdkafka refuses the settings.
    pub fn new(brokers: &str, topic: &str) -> Result<KafkaLog> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| Error::usage(format!("--kafka {brokers}: {e}")))?;
        Ok(KafkaLog {
            producer,
            topic: topic.to_owned(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues one line.
    pub fn send(&self, line: &str) {
        let record = BaseRecord::<(), str>::to(&self.topic).payload(line);
        if self.producer.send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(2));
    }
}
