//! Kafka as a log input (`ingest::kafka`): a member of a consumer group on
//! one or more topics, through librdkafka (`rdkafka`).
//!
//! One message is one log event (a multi-line event stays one message). The
//! log source polls the consumer once per slot, without blocking beyond a
//! short first wait, and takes at most [`KafkaConfig::max_per_poll`]
//! messages; the rest wait for the next slot in the broker, not in heal.
//!
//! **Offsets.** librdkafka never commits on its own here
//! (`enable.auto.commit=false`): the log source calls [`KafkaInput::commit`]
//! only after the evaluations that counted a slot's lines were handed on, so
//! a crash re-reads (at least once) and never loses.
//!
//! **The count is made of offsets**, not of increments: per partition, the
//! messages counted are the next offset to read minus the first offset of
//! the range heal is reading, plus what earlier ranges counted (both kept
//! in the log state file). A slot read again after a crash moves neither,
//! so `heal_log_lines_total` stays exact across a SIGKILL. A message
//! beyond the next offset expected (another member of the group read the
//! partition meanwhile, and heal got it back after a rebalance) closes the
//! range and starts a new one there: what the other member read is its
//! count, not heal's. This assumes dense offsets (a plain topic: no
//! compaction, no transactions); and a partition's range reaches the
//! state file with the first slot that read it, so a heal killed within
//! that slot counts that partition from where it resumes.
//!
//! **Membership.** `group` mode subscribes: the members of the consumer
//! group share the partitions, and rebalance when one comes or goes.
//! `all_partitions` mode assigns every partition of the topics to this heal
//! (offsets are still committed under the group): for one heal per group,
//! and a restart that takes its partitions back at once, with no rebalance
//! to wait for.
//!
//! **Lag** per held partition is librdkafka's own (`consumer_lag` of its
//! statistics, every second, from the high watermarks its fetches bring
//! back): no request of heal's, so a slow broker cannot make a lag query
//! time out and cost the consumer its connection (a timed-out request makes
//! librdkafka drop the connection). At most [`MAX_LAG_PARTITIONS`] are
//! kept.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::file::ReadFrom;

/// Most messages taken in one poll (one slot).
pub const DEFAULT_MAX_PER_POLL: usize = 100_000;
/// Longest message kept whole; longer ones are cut (and counted).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Partitions whose lag is fetched after each commit.
pub const MAX_LAG_PARTITIONS: usize = 64;

/// How a Kafka input gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assign {
    /// Subscribe as a consumer group member (partitions shared, rebalanced).
    #[default]
    Group,
    /// Every partition of the topics, to this heal alone.
    AllPartitions,
}

/// A Kafka input's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers.
    pub brokers: Vec<String>,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group.
    pub group: String,
    /// Static membership (`group.instance.id`): a restarted heal with the
    /// same instance takes its partitions back at once, where a new member
    /// waits for the broker to expire the old one.
    pub instance: Option<String>,
    /// Where a partition with no committed offset starts.
    pub read_from: ReadFrom,
    /// How partitions are got.
    pub assign: Assign,
    /// Most messages per poll.
    pub max_per_poll: usize,
}

impl KafkaConfig {
    /// Settings with the defaults: group `heal`, new partitions read from
    /// their end.
    pub fn new(brokers: Vec<String>, topics: Vec<String>) -> Self {
        KafkaConfig {
            brokers,
            topics,
            group: "heal".to_owned(),
            instance: None,
            read_from: ReadFrom::End,
            assign: Assign::Group,
            max_per_poll: DEFAULT_MAX_PER_POLL,
        }
    }
}

/// A Kafka input's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Messages read (this run).
    pub messages: u64,
    /// Messages longer than [`MAX_MESSAGE_BYTES`], cut.
    pub cut: u64,
    /// Consumer errors seen (broker down, and the like; librdkafka
    /// reconnects by itself).
    pub errors: u64,
    /// Commits that failed (retried with the next slot's).
    pub commit_failures: u64,
    /// Lag per held partition at the last commit: (topic, partition,
    /// messages not yet read).
    pub lag: Vec<(String, i32, i64)>,
}

/// Where heal began in one partition: what its count starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionStart {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The first offset of the range heal is reading there (state files
    /// of earlier versions: the first it ever read).
    pub first: i64,
    /// Messages counted in earlier ranges, before `first` (absent in
    /// state files of earlier versions, whose `first` is then not exact:
    /// no gap is looked for until the partition is read again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_before: Option<u64>,
}

/// Why a Kafka input could not start.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
pub struct KafkaError(String);

/// Keeps the lag librdkafka's statistics report (served by `poll`).
#[derive(Clone, Default)]
struct LagContext {
    lag: Arc<Mutex<Vec<(String, i32, i64)>>>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = Vec::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal partition; a negative lag is
                // one not known yet (nothing fetched).
                if *partition >= 0 && p.fetch_state == "active" && p.consumer_lag >= 0 {
                    lag.push((topic.clone(), *partition, p.consumer_lag));
                }
            }
        }
        lag.sort();
        lag.truncate(MAX_LAG_PARTITIONS);
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }
}

impl ConsumerContext for LagContext {}

/// The count of a Kafka input, made of offsets (see the module docs): per
/// partition, the range being read (its first offset and the next to
/// read), what earlier ranges counted, and whether the first offset is the
/// exact next one expected.
#[derive(Debug, Default, Clone, PartialEq)]
struct Ranges {
    first: BTreeMap<(String, i32), i64>,
    next: BTreeMap<(String, i32), i64>,
    done: BTreeMap<(String, i32), u64>,
    exact: std::collections::BTreeSet<(String, i32)>,
}

impl Ranges {
    /// Resumes from the state file's starts.
    fn new(starts: &[PartitionStart]) -> Self {
        let key = |s: &PartitionStart| (s.topic.clone(), s.partition);
        Ranges {
            first: starts.iter().map(|s| (key(s), s.first)).collect(),
            next: BTreeMap::new(),
            done: starts
                .iter()
                .map(|s| (key(s), s.counted_before.unwrap_or(0)))
                .collect(),
            exact: starts
                .iter()
                .filter(|s| s.counted_before.is_some())
                .map(key)
                .collect(),
        }
    }

    /// Counts a message at `offset` of partition `key`: a range goes on,
    /// or a message beyond the next expected (read by another member
    /// meanwhile) closes it and starts another.
    fn advance(&mut self, key: (String, i32), offset: i64) {
        let expected = self.next.get(&key).copied().or_else(|| {
            self.exact
                .contains(&key)
                .then(|| self.first.get(&key).copied())
                .flatten()
        });
        if expected.is_some_and(|e| offset > e) {
            *self.done.entry(key.clone()).or_default() += self.range(&key);
            self.first.insert(key.clone(), offset);
        }
        // Keys are cloned only for a partition seen the first time: this
        // runs once per message.
        if !self.first.contains_key(&key) {
            self.first.insert(key.clone(), offset);
        }
        if !self.exact.contains(&key) {
            self.exact.insert(key.clone());
        }
        self.next.insert(key, offset + 1);
    }

    /// What the current range of `key` counted.
    fn range(&self, key: &(String, i32)) -> u64 {
        match (self.first.get(key), self.next.get(key)) {
            (Some(first), Some(next)) => (next - first).max(0) as u64,
            _ => 0,
        }
    }

    /// Messages counted: per partition, the current range and the earlier
    /// ones.
    fn lines(&self) -> u64 {
        self.first
            .keys()
            .map(|k| self.done.get(k).copied().unwrap_or(0) + self.range(k))
            .sum()
    }

    /// Per partition: where its count resumes and what it counted before
    /// (for the state file). A range read this run is closed at its next
    /// offset.
    fn starts(&self) -> Vec<PartitionStart> {
        self.first
            .iter()
            .map(|(k, first)| PartitionStart {
                topic: k.0.clone(),
                partition: k.1,
                // Reading again below the range's start (after a crash)
                // does not move it back: what lies before it is counted.
                first: self.next.get(k).map_or(*first, |n| (*n).max(*first)),
                counted_before: Some(self.done.get(k).copied().unwrap_or(0) + self.range(k)),
            })
            .collect()
    }
}

/// A consumer group member, polled by the log source.
pub struct KafkaInput {
    consumer: BaseConsumer<LagContext>,
    context: LagContext,
    /// What was read of each partition: the count.
    ranges: Ranges,
    /// The last offset committed per partition.
    committed: BTreeMap<(String, i32), i64>,
    stats: KafkaStats,
}

impl std::fmt::Debug for KafkaInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput")
            .field("ranges", &self.ranges)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl KafkaInput {
    /// Joins `config.group` on `config.topics` (in `group` mode the join
    /// completes in the background: the first polls may return nothing),
    /// counting from `starts` (the state file's).
    ///
    /// # Errors
    ///
    /// The settings are refused by librdkafka, the subscription fails, or
    /// (`all_partitions`) the topics' partitions cannot be listed.
    pub fn new(config: &KafkaConfig, starts: &[PartitionStart]) -> Result<Self, KafkaError> {
        let mut client = ClientConfig::new();
        // librdkafka's own debug contexts (`cgrp,fetch`), logged through
        // `tracing` at target `librdkafka`: for a group that does not form.
        if let Ok(debug) = std::env::var("HEAL_KAFKA_DEBUG") {
            client.set("debug", debug);
        }
        if let Some(instance) = &config.instance {
            client.set("group.instance.id", instance);
        }
        let context = LagContext::default();
        let consumer: BaseConsumer<LagContext> = client
            .set("bootstrap.servers", config.brokers.join(","))
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.read_from {
                    ReadFrom::Beginning => "earliest",
                    ReadFrom::End => "latest",
                },
            )
            .set("session.timeout.ms", "10000")
            .set("client.id", "heal")
            .set("statistics.interval.ms", "1000")
            .create_with_context(context.clone())
            .map_err(|e| KafkaError(format!("consumer: {e}")))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        if config.assign == Assign::AllPartitions {
            let mut tpl = TopicPartitionList::new();
            for t in &topics {
                let md = consumer
                    .fetch_metadata(Some(t), Duration::from_secs(10))
                    .map_err(|e| KafkaError(format!("metadata of {t}: {e}")))?;
                for mt in md.topics() {
                    for p in mt.partitions() {
                        tpl.add_partition_offset(t, p.id(), Offset::Stored)
                            .map_err(|e| KafkaError(e.to_string()))?;
                    }
                }
            }
            consumer
                .assign(&tpl)
                .map_err(|e| KafkaError(format!("assign {topics:?}: {e}")))?;
        } else {
            consumer
                .subscribe(&topics)
                .map_err(|e| KafkaError(format!("subscribe to {topics:?}: {e}")))?;
        }
        Ok(KafkaInput {
            consumer,
            context,
            ranges: Ranges::new(starts),
            committed: BTreeMap::new(),
            stats: KafkaStats::default(),
        })
    }

    /// Reads what is there (at most `max` messages) into `out`, one event
    /// each; returns problems to log (at most three, the rest counted).
    pub fn poll(&mut self, out: &mut Vec<String>, max: usize) -> Vec<String> {
        let mut problems = Vec::new();
        // A short first wait serves the group's join and rebalance
        // callbacks; then only what is already fetched.
        let mut wait = Duration::from_millis(100);
        for _ in 0..max {
            let Some(next) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let m = match next {
                Ok(m) => m,
                Err(e) => {
                    self.stats.errors += 1;
                    if problems.len() < 3 {
                        problems.push(e.to_string());
                    }
                    continue;
                }
            };
            let key = (m.topic().to_owned(), m.partition());
            let offset = m.offset();
            let mut payload = m.payload().unwrap_or_default();
            if payload.len() > MAX_MESSAGE_BYTES {
                payload = &payload[..MAX_MESSAGE_BYTES];
                self.stats.cut += 1;
            }
            let text = String::from_utf8_lossy(payload);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            out.push(text.strip_suffix('\r').unwrap_or(text).to_owned());
            drop(m);
            self.ranges.advance(key, offset);
            self.stats.messages += 1;
        }
        problems
    }

    /// Messages counted: per partition, the current range and the earlier
    /// ones.
    pub fn lines(&self) -> u64 {
        self.ranges.lines()
    }

    /// Per partition: where its count resumes and what it counted before
    /// (for the state file).
    pub fn starts(&self) -> Vec<PartitionStart> {
        self.ranges.starts()
    }

    /// Commits the offsets after the messages read so far (the partitions
    /// read since the last commit), then takes the lag librdkafka last
    /// reported. Call only once the slot's evaluations were handed on.
    pub fn commit(&mut self) -> Result<(), KafkaError> {
        let moved: Vec<(&(String, i32), &i64)> = self
            .ranges
            .next
            .iter()
            .filter(|(k, next)| self.committed.get(*k) != Some(*next))
            .collect();
        if !moved.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &moved {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(**next))
                    .map_err(|e| KafkaError(e.to_string()))?;
            }
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                self.stats.commit_failures += 1;
                return Err(KafkaError(format!("commit: {e}")));
            }
            let done: Vec<((String, i32), i64)> =
                moved.into_iter().map(|(k, v)| (k.clone(), *v)).collect();
            self.committed.extend(done);
        }
        self.stats.lag = self.lag();
        Ok(())
    }

    /// Lag of the held partitions, as librdkafka's last statistics gave it.
    fn lag(&self) -> Vec<(String, i32, i64)> {
        self.context
            .lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters.
    pub fn stats(&self) -> KafkaStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> (String, i32) {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_range_read_again_counts_nothing_twice_and_a_gap_is_someone_elses() {
        let mut r = Ranges::new(&[]);
        for o in 0..100 {
            r.advance(key(0), o);
        }
        assert_eq!(r.lines(), 100);
        // Read again (a crash before the commit): nothing more.
        for o in 90..100 {
            r.advance(key(0), o);
        }
        assert_eq!(r.lines(), 100);
        // Another member read 100..150; this one gets it back at 150.
        for o in 150..160 {
            r.advance(key(0), o);
        }
        assert_eq!(r.lines(), 110);
        // Saved and resumed: the count comes back at once, and a gap right
        // after the restart is still someone else's.
        let starts = r.starts();
        assert_eq!(
            starts,
            [PartitionStart {
                topic: "t".into(),
                partition: 0,
                first: 160,
                counted_before: Some(110)
            }]
        );
        let mut again = Ranges::new(&starts);
        assert_eq!(again.lines(), 110);
        again.advance(key(0), 160);
        assert_eq!(again.lines(), 111);
        let mut jumped = Ranges::new(&starts);
        jumped.advance(key(0), 200);
        assert_eq!(jumped.lines(), 111);
        // Killed before the commit: the restart reads again from 150, and a
        // checkpoint written halfway through that keeps the range's start.
        let mut reread = Ranges::new(&starts);
        for o in 150..155 {
            reread.advance(key(0), o);
        }
        assert_eq!(reread.lines(), 110);
        let mid = reread.starts();
        assert_eq!((mid[0].first, mid[0].counted_before), (160, Some(110)));
        let mut resumed = Ranges::new(&mid);
        for o in 155..170 {
            resumed.advance(key(0), o);
        }
        assert_eq!(resumed.lines(), 120, "150..160 counted once");
    }

    #[test]
    fn an_earlier_state_file_counts_from_its_first_offset() {
        // `first` was the first offset ever read, with no count before it:
        // the first message after a restart is no gap.
        let old = PartitionStart {
            topic: "t".into(),
            partition: 1,
            first: 10,
            counted_before: None,
        };
        let mut r = Ranges::new(&[old]);
        assert_eq!(r.lines(), 0);
        r.advance(key(1), 50);
        assert_eq!(r.lines(), 41);
        let text = r#"{"topic":"t","partition":1,"first":10}"#;
        let parsed: PartitionStart = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.counted_before, None);
    }
}
