//! A detect worker (`heal detect`): one member of a consumer group on the
//! samples topic. For each partition it owns it keeps a [`SeriesScorer`] per
//! series, scores every sample into the scores topic, and checkpoints the
//! scorers that moved to the changelog topic before it commits its offsets
//! (the order that makes the guarantee in [`super`] hold).
//!
//! **Taking a partition over.** The first message of a partition the
//! worker does not hold makes it restore the partition's series from the
//! changelog (the Kafka Streams pattern): it writes a barrier message of its
//! own to the changelog partition, reads the partition from its start up to
//! that barrier (reading to a barrier needs no high watermark, which tansu
//! 0.6 under-reports), and keeps, per series, the state with the highest
//! input offset (a zombie's late checkpoint cannot roll a series back).
//! Without a changelog topic the detectors start from nothing and re-warm.
//!
//! **Giving one up.** On a rebalance librdkafka calls back before revoking:
//! the worker checkpoints and commits the revoked partitions there, so the
//! next owner restores exactly where it stopped.
//!
//! Threads: the consumer is polled on the caller's thread (the rebalance
//! callbacks run inside that poll); librdkafka's producer delivers on its
//! own. Time is read only to pace checkpoints and to time restores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use remediate::RunbookSet;
use serde::Serialize;

use super::leases::{Holder, LeaseOptions, Leases};
use super::wire::{Checkpoint, GroupKeys, SampleRecord, ScoreRecord, BARRIER_KEY};
use super::{client_config, ScaleError};
use crate::pipeline::SeriesScorer;

/// How long a flush (scores or checkpoints acknowledged) may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restore may wait for its barrier.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// A detect worker's settings.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// `host:port,...` of the brokers.
    pub brokers: String,
    /// The consumer group the workers share.
    pub group: String,
    /// Topic the samples come from (keyed by `wire::sample_key`).
    pub samples: String,
    /// Topic the scores go to (keyed by group: `wire::GroupKeys`).
    pub scores: String,
    /// The changelog topic (as many partitions as `samples`; compacted in a
    /// real Kafka); `None` to re-warm from nothing on a takeover.
    pub changelog: Option<String>,
    /// This worker's name in its scores and logs.
    pub member: String,
    /// Longest time between checkpoints (and commits).
    pub checkpoint_every: Duration,
    /// The group session: a worker silent this long loses its partitions.
    pub session_timeout: Duration,
    /// Who owns which partition: the broker's consumer group, or leases
    /// in PostgreSQL.
    pub membership: Membership,
}

/// How the workers share the samples topic's partitions.
#[derive(Debug, Clone)]
pub enum Membership {
    /// A Kafka consumer group (cooperative-sticky): the broker's group
    /// coordinator decides.
    Group,
    /// Leases in PostgreSQL (`store::PgStore::lease_*`), one per partition,
    /// `session_timeout` long, renewed every third of it: partition `p`
    /// goes to the live member `p mod n` in name order, and a dead
    /// member's partitions are taken over once its leases expire. A member
    /// that cannot renew for two thirds of a lease stops scoring. For
    /// brokers whose group coordinator cannot be trusted to reassign a
    /// dead member's partitions (tansu 0.6; see [`super`]).
    Leases { url: String },
}

/// What a worker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectStats {
    /// Samples scored (a score produced).
    pub scored: u64,
    /// Samples the sample policy dropped (a record saying so produced).
    pub dropped: u64,
    /// Samples of a signal no runbook watches, or not decodable (a record
    /// saying so produced).
    pub unwatched: u64,
    pub undecodable: u64,
    /// Samples already in a restored state (scored by the previous owner).
    pub skipped: u64,
    /// Offsets the broker never delivered (see `handle`): not scored.
    pub broker_gaps: u64,
    /// Checkpoints written and committed.
    pub checkpoints: u64,
    /// Series states written to the changelog.
    pub states_written: u64,
    /// The partitions taken over.
    pub restores: Vec<Restored>,
}

/// One partition taken over.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub partition: i32,
    /// Series whose state was restored.
    pub series: usize,
    /// Changelog messages read.
    pub records: u64,
    /// How long the restore took.
    pub ms: f64,
}

/// What a worker reports as it goes (the CLI prints them as JSON lines).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The group gave this worker these partitions.
    Assigned { partitions: Vec<i32> },
    /// The group took these away (after they were checkpointed).
    Revoked { partitions: Vec<i32> },
    /// A partition's state was restored; scoring it starts now.
    Restored(Restored),
    /// A checkpoint: states written, offsets committed.
    Checkpoint {
        states: u64,
        offsets: BTreeMap<i32, i64>,
    },
}

/// Counts the messages the broker refused after librdkafka's retries.
struct Acks {
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "a message was not acknowledged");
        }
    }
}

struct SeriesEntry {
    scorer: SeriesScorer,
    /// Highest input offset in `scorer`.
    offset: i64,
    /// Moved since the last checkpoint.
    dirty: bool,
}

#[derive(Default)]
struct PartitionState {
    series: HashMap<String, SeriesEntry>,
    /// The offset to commit: one past the last message read.
    next_offset: Option<i64>,
}

struct Shared {
    owned: BTreeMap<i32, PartitionState>,
    stats: DetectStats,
}

type OnEvent = Box<dyn Fn(&WorkerEvent) + Send + Sync>;

/// The worker: reached from the loop and from librdkafka's rebalance
/// callback (which runs inside the loop's poll, on the same thread).
struct Worker {
    opts: DetectOptions,
    runbooks: RunbookSet,
    /// The scores' keys (`wire::GroupKeys`).
    groups: GroupKeys,
    producer: ThreadedProducer<Acks>,
    shared: Mutex<Shared>,
    on_event: OnEvent,
    /// A fatal error met inside a callback, for the loop to return.
    failed: Mutex<Option<ScaleError>>,
    /// With leases, the partitions this worker may score (a message of any
    /// other is left alone); `None` with a consumer group.
    leased: Mutex<Option<BTreeSet<i32>>>,
    /// The changelog's reader, made at the first restore and kept: a new
    /// client costs about half a second before its first fetch answers,
    /// once per partition taken over.
    restorer: Mutex<Option<BaseConsumer>>,
}

struct Ctx(Arc<Worker>);

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            let _span = tracing::info_span!("revoke", partitions = ?parts).entered();
            if let Err(e) = self.0.checkpoint(consumer, Some(&parts)) {
                tracing::error!(error = %e, "checkpoint before revoke failed");
                self.0.failed.lock().unwrap().get_or_insert(e);
            }
            let mut shared = self.0.shared.lock().unwrap();
            for p in &parts {
                shared.owned.remove(p);
            }
            drop(shared);
            (self.0.on_event)(&WorkerEvent::Revoked { partitions: parts });
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            (self.0.on_event)(&WorkerEvent::Assigned {
                partitions: partitions.clone(),
            });
            for p in partitions {
                if let Err(e) = self.0.take(p) {
                    tracing::error!(error = %e, partition = p, "restore failed");
                    self.0.failed.lock().unwrap().get_or_insert(e);
                }
            }
        }
    }
}

/// Runs a detect worker until `shutdown` is set (then checkpoints and
/// leaves the group) or a fatal error.
pub fn run(
    opts: DetectOptions,
    runbooks: RunbookSet,
    shutdown: &AtomicBool,
    on_event: impl Fn(&WorkerEvent) + Send + Sync + 'static,
) -> Result<DetectStats, ScaleError> {
    let brokers = opts.brokers.clone();
    let producer: ThreadedProducer<Acks> = client_config(&brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("client.id", format!("heal-detect-{}", opts.member))
        .create_with_context(Acks {
            failed: AtomicU64::new(0),
        })
        .map_err(|e| ScaleError::kafka("creating the producer", &brokers, e))?;
    let worker = Arc::new(Worker {
        opts,
        groups: GroupKeys::new(&runbooks),
        runbooks,
        producer,
        shared: Mutex::new(Shared {
            owned: BTreeMap::new(),
            stats: DetectStats::default(),
        }),
        on_event: Box::new(on_event),
        failed: Mutex::new(None),
        leased: Mutex::new(None),
        restorer: Mutex::new(None),
    });
    let o = &worker.opts;
    let consumer: BaseConsumer<Ctx> = client_config(&brokers)
        .set("group.id", &o.group)
        .set("client.id", format!("heal-detect-{}", o.member))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Incremental, sticky rebalancing: a partition moves only when it
        // must (its state is restored only then), and the others keep
        // scoring through a rebalance. Also what works on tansu 0.6: with
        // the eager assignors, a member evicted for a missed session left
        // its partitions unowned (the coordinator re-forms the group
        // without bumping the generation, so the members that did not
        // rejoin never hear of the rebalance); cooperative metadata
        // carries the owned partitions, which bumps it.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "session.timeout.ms",
            o.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (o.session_timeout.as_millis() / 4).max(100).to_string(),
        )
        .create_with_context(Ctx(worker.clone()))
        .map_err(|e| ScaleError::kafka("creating the consumer", &brokers, e))?;
    let mut leases = match &o.membership {
        Membership::Group => {
            consumer.subscribe(&[o.samples.as_str()]).map_err(|e| {
                ScaleError::kafka(format!("subscribing to {}", o.samples), &brokers, e)
            })?;
            None
        }
        Membership::Leases { url } => {
            *worker.leased.lock().unwrap() = Some(BTreeSet::new());
            Some(Leases::open(
                url,
                &LeaseOptions {
                    member: &o.member,
                    group: &o.group,
                    topic: &o.samples,
                    brokers: &o.brokers,
                    ttl: o.session_timeout,
                },
                &consumer,
            )?)
        }
    };
    let mut last_checkpoint = Instant::now();
    loop {
        if let Some(e) = worker.failed.lock().unwrap().take() {
            return Err(e);
        }
        if let Some(l) = &mut leases {
            if l.due() {
                l.round(&*worker, &consumer)?;
            }
        }
        if shutdown.load(Ordering::Relaxed) {
            worker.checkpoint(&consumer, None)?;
            if let Some(l) = &mut leases {
                l.release_all(&*worker, &consumer);
            }
            // Leaving the group revokes (and checkpoints, again: nothing
            // moved) at once, rather than after the session times out.
            consumer.unsubscribe();
            let _ = consumer.poll(Duration::from_millis(100));
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => worker.handle(&m)?,
            Some(Err(e)) => tracing::warn!(error = %e, "consumer"),
            None => {}
        }
        if last_checkpoint.elapsed() >= o.checkpoint_every {
            worker.checkpoint(&consumer, None)?;
            last_checkpoint = Instant::now();
        }
    }
    let stats = worker.shared.lock().unwrap().stats.clone();
    Ok(stats)
}

impl Holder for Worker {
    type Context = Ctx;

    fn brokers(&self) -> &str {
        &self.opts.brokers
    }

    fn hand_over(&self, consumer: &BaseConsumer<Ctx>, p: i32) -> Result<(), ScaleError> {
        self.checkpoint(consumer, Some(&[p]))
    }

    fn forget(&self, parts: &[i32]) {
        Worker::forget(self, parts)
    }

    fn take(&self, p: i32) -> Result<(), ScaleError> {
        Worker::take(self, p)
    }

    fn set_leased(&self, held: &BTreeSet<i32>) {
        *self.leased.lock().unwrap() = Some(held.clone());
    }

    fn event(&self, e: &WorkerEvent) {
        (self.on_event)(e)
    }
}

impl Worker {
    /// Scores one sample of the samples topic.
    fn handle(&self, m: &BorrowedMessage<'_>) -> Result<(), ScaleError> {
        let (p, o) = (m.partition(), m.offset());
        if let Some(leased) = &*self.leased.lock().unwrap() {
            if !leased.contains(&p) {
                return Ok(());
            }
        }
        // Restored when assigned; a message of a partition not restored
        // yet (assigned by a rebalance whose callback failed) restores here.
        self.take(p)?;
        let mut shared = self.shared.lock().unwrap();
        let Shared { owned, stats } = &mut *shared;
        let part = owned.get_mut(&p).expect("restored above");
        match part.next_offset {
            // Re-delivered (a re-assignment starts again from the commit):
            // what the states hold is skipped below.
            Some(next) if o < next => {
                tracing::debug!(partition = p, offset = o, expected = next, "re-delivered")
            }
            // Offsets never delivered: a broker bug (tansu 0.6's memory
            // engine starts a fetch at the next batch when asked for an
            // offset inside one). Those samples are not scored: said loudly.
            Some(next) if o > next => {
                stats.broker_gaps += (o - next) as u64;
                tracing::error!(
                    partition = p,
                    from = next,
                    to = o - 1,
                    "the broker skipped these offsets: their samples are not scored"
                );
            }
            _ => {}
        }
        part.next_offset = Some(o + 1);
        let mut out = ScoreRecord {
            partition: p,
            offset: o,
            series: String::new(),
            ts_ms: 0,
            value: f64::NAN,
            score: 0.0,
            anomalous: false,
            first: false,
            in_grace: false,
            dropped: None,
            excursion: None,
            member: self.opts.member.clone(),
        };
        // The score's key: its series' group (empty for a sample that
        // does not decode or that no signal watches).
        let mut group = String::new();
        let sample = m
            .payload()
            .ok_or_else(|| "no payload".to_owned())
            .and_then(|b| serde_json::from_slice::<SampleRecord>(b).map_err(|e| e.to_string()));
        match sample {
            Err(why) => {
                stats.undecodable += 1;
                out.dropped = Some(format!("undecodable: {why}"));
            }
            Ok(sample) => {
                let labels = sample.labels();
                out.series = labels.to_string();
                out.ts_ms = sample.ts_ms;
                out.value = sample.value;
                match labels.name().and_then(|n| self.runbooks.signal(n)) {
                    None => {
                        stats.unwatched += 1;
                        out.dropped = Some("unwatched".to_owned());
                    }
                    Some(signal) => {
                        group = self.groups.key(signal, &labels);
                        let entry =
                            part.series
                                .entry(out.series.clone())
                                .or_insert_with(|| SeriesEntry {
                                    scorer: SeriesScorer::for_signal(signal),
                                    offset: -1,
                                    dirty: false,
                                });
                        if o <= entry.offset {
                            // In the restored state already: scored, and
                            // acknowledged, by the previous owner.
                            stats.skipped += 1;
                            return Ok(());
                        }
                        match entry.scorer.admit(sample.ts_ms, sample.value) {
                            Ok(s) => {
                                let j = entry.scorer.score(s, None);
                                stats.scored += 1;
                                out.score = j.scored.score;
                                out.anomalous = j.scored.excursion.is_some();
                                out.first = j.scored.excursion.is_some_and(|e| e.first);
                                out.excursion = j.scored.excursion;
                                out.in_grace = j.in_grace;
                            }
                            Err(reason) => {
                                stats.dropped += 1;
                                out.dropped = Some(reason.as_str().to_owned());
                            }
                        }
                        entry.offset = o;
                        entry.dirty = true;
                    }
                }
            }
        }
        drop(shared);
        let payload = serde_json::to_vec(&out).expect("a score serializes");
        self.send(
            BaseRecord::to(&self.opts.scores)
                .key(group.as_bytes())
                .payload(&payload),
        );
        Ok(())
    }

    /// Restores partition `p` and starts scoring it, unless held already.
    fn take(&self, p: i32) -> Result<(), ScaleError> {
        if self.shared.lock().unwrap().owned.contains_key(&p) {
            return Ok(());
        }
        let (series, restored) = self.restore(p)?;
        let mut shared = self.shared.lock().unwrap();
        shared.stats.restores.push(restored.clone());
        shared.owned.insert(
            p,
            PartitionState {
                series,
                next_offset: None,
            },
        );
        drop(shared);
        (self.on_event)(&WorkerEvent::Restored(restored));
        Ok(())
    }

    /// Stops scoring partitions `parts` (their state is dropped: saved by a
    /// checkpoint before, or no longer this worker's to save).
    fn forget(&self, parts: &[i32]) {
        let mut shared = self.shared.lock().unwrap();
        for p in parts {
            shared.owned.remove(p);
        }
        if let Some(leased) = &mut *self.leased.lock().unwrap() {
            for p in parts {
                leased.remove(p);
            }
        }
    }

    /// Hands a message to the producer, waiting while its queue is full.
    fn send(&self, record: BaseRecord<'_, [u8], [u8]>) {
        if let Err(e) = super::send_waiting(&self.producer, record) {
            tracing::warn!(error = %e, "a message could not be queued");
            self.producer
                .context()
                .failed
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self, what: &str) -> Result<(), ScaleError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| ScaleError::kafka(format!("waiting for {what}"), &self.opts.brokers, e))?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(ScaleError::NotAcknowledged(
                failed,
                self.opts.brokers.clone(),
            ));
        }
        Ok(())
    }

    /// Scores acknowledged, then the states that moved written and
    /// acknowledged, then the offsets committed: for `parts`, or every
    /// partition held.
    fn checkpoint(
        &self,
        consumer: &BaseConsumer<Ctx>,
        parts: Option<&[i32]>,
    ) -> Result<(), ScaleError> {
        let _span = tracing::debug_span!("checkpoint").entered();
        self.flush("the scores")?;
        let mut states = 0;
        let mut offsets = BTreeMap::new();
        {
            let mut shared = self.shared.lock().unwrap();
            for (&p, part) in shared.owned.iter_mut() {
                if parts.is_some_and(|ps| !ps.contains(&p)) {
                    continue;
                }
                if let Some(next) = part.next_offset {
                    offsets.insert(p, next);
                }
                let Some(changelog) = &self.opts.changelog else {
                    continue;
                };
                for (key, entry) in part.series.iter_mut().filter(|(_, e)| e.dirty) {
                    let value = Checkpoint::encode_ref(entry.offset, &entry.scorer);
                    self.send(
                        BaseRecord::to(changelog)
                            .partition(p)
                            .key(key.as_bytes())
                            .payload(&value),
                    );
                    entry.dirty = false;
                    states += 1;
                }
            }
            shared.stats.states_written += states;
        }
        if states > 0 {
            self.flush("the changelog")?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &offsets {
            tpl.add_partition_offset(&self.opts.samples, p, Offset::Offset(next))
                .expect("a valid offset");
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.shared.lock().unwrap().stats.checkpoints += 1;
                (self.on_event)(&WorkerEvent::Checkpoint { states, offsets });
            }
            // The group moved on (a rebalance): the next owner starts from
            // the last commit and skips what the states just written hold.
            Err(e) => tracing::warn!(error = %e, "commit refused"),
        }
        Ok(())
    }

    /// The series of partition `p` as the changelog has them.
    fn restore(&self, p: i32) -> Result<(HashMap<String, SeriesEntry>, Restored), ScaleError> {
        let _span = tracing::info_span!("restore", partition = p).entered();
        let started = Instant::now();
        let mut series = HashMap::new();
        let Some(changelog) = &self.opts.changelog else {
            return Ok((
                series,
                Restored {
                    partition: p,
                    series: 0,
                    records: 0,
                    ms: 0.0,
                },
            ));
        };
        let brokers = &self.opts.brokers;
        let nonce = format!("{}/{}/{:?}", self.opts.member, std::process::id(), started);
        self.send(
            BaseRecord::to(changelog)
                .partition(p)
                .key(BARRIER_KEY)
                .payload(nonce.as_bytes()),
        );
        self.flush("the restore barrier")?;
        let mut restorer = self.restorer.lock().unwrap();
        let reader = match &mut *restorer {
            Some(reader) => reader,
            None => restorer.insert(
                client_config(brokers)
                    .set("group.id", format!("{}-restore", self.opts.group))
                    .set("enable.auto.commit", "false")
                    // Do not wait for more than is there: a restore reads to
                    // its barrier and stops.
                    .set("fetch.wait.max.ms", "10")
                    .create()
                    .map_err(|e| ScaleError::kafka("creating the restore consumer", brokers, e))?,
            ),
        };
        // The assignment replaces the last restore's: read from the start.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, p, Offset::Beginning)
            .expect("a valid offset");
        reader
            .assign(&tpl)
            .map_err(|e| ScaleError::kafka(format!("reading {changelog}/{p}"), brokers, e))?;
        let mut records = 0u64;
        loop {
            if started.elapsed() > RESTORE_TIMEOUT {
                return Err(ScaleError::kafka(
                    format!("restoring {changelog}/{p}: its barrier never came back"),
                    brokers,
                    KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut),
                ));
            }
            let m = match reader.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "restore read");
                    continue;
                }
                // Only this partition's messages count (one left from an
                // earlier restore of another would be that one's).
                Some(Ok(m)) if m.partition() == p => m,
                Some(Ok(_)) => continue,
            };
            records += 1;
            let (Some(key), Some(value)) = (m.key(), m.payload()) else {
                continue;
            };
            if key == BARRIER_KEY {
                if value == nonce.as_bytes() {
                    break;
                }
                continue;
            }
            match Checkpoint::decode(value) {
                Ok(c) => {
                    let key = String::from_utf8_lossy(key).into_owned();
                    let newer = series
                        .get(&key)
                        .is_none_or(|e: &SeriesEntry| e.offset <= c.offset);
                    if newer {
                        series.insert(
                            key,
                            SeriesEntry {
                                scorer: c.scorer,
                                offset: c.offset,
                                dirty: false,
                            },
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    offset = m.offset(),
                    error = %e,
                    "a changelog message is not a checkpoint; skipped"
                ),
            }
        }
        // Nothing fetched for a partition no longer read.
        let _ = reader.unassign();
        let restored = Restored {
            partition: p,
            series: series.len(),
            records,
            ms: started.elapsed().as_secs_f64() * 1e3,
        };
        Ok((series, restored))
    }
}

/// A worker's event lines read back (`heal bench scale` and the tests
/// follow their workers through them).
pub mod events {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    /// The events among `text`'s lines (other lines are skipped).
    pub fn parse(text: &str) -> Vec<Value> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The partitions held after `events` (assigned minus revoked).
    pub fn held(events: &[Value]) -> BTreeSet<i64> {
        let mut held = BTreeSet::new();
        for e in events {
            let parts: Vec<i64> = e["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            match e["event"].as_str() {
                Some("assigned") => held.extend(parts),
                Some("revoked") => held.retain(|p| !parts.contains(p)),
                _ => {}
            }
        }
        held
    }

    /// The highest offset committed per partition by `events`' checkpoints.
    pub fn committed<'a>(events: impl IntoIterator<Item = &'a Value>) -> BTreeMap<i64, u64> {
        let mut out: BTreeMap<i64, u64> = BTreeMap::new();
        for e in events.into_iter().filter(|e| e["event"] == "checkpoint") {
            for (p, o) in e["offsets"].as_object().into_iter().flatten() {
                if let (Ok(p), Some(o)) = (p.parse::<i64>(), o.as_u64()) {
                    let c = out.entry(p).or_default();
                    *c = (*c).max(o);
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn held_and_committed_follow_the_events() {
            let log = r#"{"event":"assigned","partitions":[0,1,2]}
not json
{"event":"checkpoint","states":3,"offsets":{"0":5,"1":7}}
{"event":"revoked","partitions":[1]}
{"event":"assigned","partitions":[3]}
{"event":"checkpoint","states":1,"offsets":{"0":9,"1":6}}"#;
            let events = parse(log);
            assert_eq!(events.len(), 5);
            assert_eq!(held(&events), BTreeSet::from([0, 2, 3]));
            assert_eq!(committed(&events), BTreeMap::from([(0, 9), (1, 7)]));
        }
    }
}
