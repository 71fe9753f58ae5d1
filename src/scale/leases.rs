//! Partition ownership by leases in PostgreSQL, for every scale-out role
//! that consumes a topic (`heal detect` on the samples, `heal remediate` on
//! the scores): partition `p` goes to the live member `p mod n` in name
//! order; a dead member's partitions are taken over once its leases expire;
//! a member that cannot renew for two thirds of a lease gives everything
//! up. Why not the broker's consumer group: see `detect::Membership`.
//!
//! The role is a [`Holder`]: the leases tell it what to take, hand over and
//! forget, and it does the role's part (restore, checkpoint, fence).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::detect::WorkerEvent;
use super::ScaleError;

/// What a role does when the leases move.
pub(crate) trait Holder {
    /// The role's consumer's context.
    type Context: ConsumerContext;
    /// The brokers, for messages.
    fn brokers(&self) -> &str;
    /// Saves and commits partition `p` before it is handed to another
    /// member.
    fn hand_over(&self, consumer: &BaseConsumer<Self::Context>, p: i32) -> Result<(), ScaleError>;
    /// Stops working on `parts` (their state dropped).
    fn forget(&self, parts: &[i32]);
    /// Starts working on `p` (restored first, when the role keeps state).
    fn take(&self, p: i32) -> Result<(), ScaleError>;
    /// The partitions it may work on now (a message of any other is left
    /// alone).
    fn set_leased(&self, held: &BTreeSet<i32>);
    /// Reports an assignment or a revocation.
    fn event(&self, e: &WorkerEvent);
}

/// Who joins which group for which topic.
pub(crate) struct LeaseOptions<'a> {
    pub(crate) member: &'a str,
    pub(crate) group: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) brokers: &'a str,
    /// A lease's length (the session timeout).
    pub(crate) ttl: Duration,
}

/// Partition ownership by leases (see `detect::Membership::Leases`).
///
/// Two connections: a renewer thread keeps the worker's membership and its
/// partitions' leases alive every third of a lease, whatever the loop is
/// doing (a checkpoint of many series can take longer than a lease), and
/// reports leases it found taken over; the loop's rounds take and give up
/// partitions (which needs the loop: a partition is checkpointed before it
/// is given up and restored when taken).
pub(crate) struct Leases {
    store: store::PgStore,
    /// This worker's name in the leases: member, pid and start time (a
    /// restarted worker is a new member).
    instance: String,
    group: String,
    topic: String,
    partitions: i32,
    ttl: Duration,
    held: BTreeSet<i32>,
    renewer: Arc<Renewer>,
    next_round: Instant,
}

/// What the renewer thread shares with the loop.
struct Renewer {
    /// The lease keys to renew.
    keys: Mutex<BTreeSet<String>>,
    /// Keys found taken over, for the loop to drop.
    lost: Mutex<Vec<String>>,
    /// The group's live members at the last renewal.
    members: Mutex<Vec<String>>,
    /// When a renewal last reached the database.
    renewed_at: Mutex<Instant>,
    stop: AtomicBool,
}

impl Renewer {
    fn run(&self, mut store: store::PgStore, group: &str, instance: &str, ttl: Duration) {
        let ttl_ms = ttl.as_millis() as i64;
        while !self.stop.load(Ordering::Relaxed) {
            let keys: Vec<String> = self.keys.lock().unwrap().iter().cloned().collect();
            let renewed = store
                .lease_members(group, instance, ttl_ms)
                .and_then(|members| Ok((members, store.lease_renew(&keys, instance, ttl_ms)?)));
            match renewed {
                Ok((members, kept)) => {
                    *self.renewed_at.lock().unwrap() = Instant::now();
                    *self.members.lock().unwrap() = members;
                    let mut held = self.keys.lock().unwrap();
                    let lost: Vec<String> =
                        keys.into_iter().filter(|k| !kept.contains(k)).collect();
                    for k in &lost {
                        held.remove(k);
                    }
                    self.lost.lock().unwrap().extend(lost);
                }
                Err(e) => tracing::warn!(error = %e, "leases: the database did not answer"),
            }
            // A third of a lease, in small steps so that a stop is quick.
            let until = Instant::now() + ttl / 3;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.renewer.stop.store(true, Ordering::Relaxed);
    }
}

impl Leases {
    /// Joins `group` as `member` (leases `ttl` long) to share `topic`'s
    /// partitions; `url` is the PostgreSQL holding the leases.
    pub(crate) fn open<C: ConsumerContext>(
        url: &str,
        o: &LeaseOptions<'_>,
        consumer: &BaseConsumer<C>,
    ) -> Result<Leases, ScaleError> {
        let store = store::PgStore::open_as(url, o.member)?;
        let renewing = store::PgStore::open_as(url, o.member)?;
        let metadata = consumer
            .fetch_metadata(Some(o.topic), Duration::from_secs(30))
            .map_err(|e| {
                ScaleError::kafka(format!("reading {}'s partitions", o.topic), o.brokers, e)
            })?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len()) as i32;
        if partitions == 0 {
            return Err(ScaleError::kafka(
                format!("topic {} has no partitions", o.topic),
                o.brokers,
                KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            ));
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let instance = format!("{}/{}/{started}", o.member, std::process::id());
        let renewer = Arc::new(Renewer {
            keys: Mutex::new(BTreeSet::new()),
            lost: Mutex::new(Vec::new()),
            members: Mutex::new(Vec::new()),
            renewed_at: Mutex::new(Instant::now()),
            stop: AtomicBool::new(false),
        });
        {
            let (r, group, instance, ttl) =
                (renewer.clone(), o.group.to_owned(), instance.clone(), o.ttl);
            std::thread::Builder::new()
                .name("lease-renewer".into())
                .spawn(move || r.run(renewing, &group, &instance, ttl))
                .map_err(|e| {
                    ScaleError::kafka(
                        format!("starting the lease renewer: {e}"),
                        o.brokers,
                        KafkaError::Canceled,
                    )
                })?;
        }
        Ok(Leases {
            store,
            instance,
            group: o.group.to_owned(),
            topic: o.topic.to_owned(),
            partitions,
            ttl: o.ttl,
            held: BTreeSet::new(),
            renewer,
            next_round: Instant::now(),
        })
    }

    fn key(&self, p: i32) -> String {
        format!("partition/{}/{}/{p}", self.group, self.topic)
    }

    /// Whether a round is due (every sixth of a lease).
    pub(crate) fn due(&self) -> bool {
        Instant::now() >= self.next_round
    }

    /// Drops what was taken over, gives up and takes partitions, and
    /// assigns the consumer what is held.
    pub(crate) fn round<H: Holder>(
        &mut self,
        worker: &H,
        consumer: &BaseConsumer<H::Context>,
    ) -> Result<(), ScaleError> {
        let _span = tracing::debug_span!("leases").entered();
        self.next_round = Instant::now() + self.ttl / 6;
        let before = self.held.clone();
        // Taken over (this worker was cut off for longer than a lease):
        // dropped unsaved, the new owner's now.
        let lost: Vec<String> = std::mem::take(&mut *self.renewer.lost.lock().unwrap());
        let mut forgot: Vec<i32> = self
            .held
            .iter()
            .copied()
            .filter(|&p| lost.contains(&self.key(p)))
            .collect();
        // Not renewed for two thirds of a lease: another member may hold
        // them by now, so stop scoring them.
        if self.renewer.renewed_at.lock().unwrap().elapsed() > self.ttl * 2 / 3
            && !self.held.is_empty()
        {
            tracing::warn!(
                "leases: not renewed for two thirds of a lease; giving every partition up"
            );
            forgot = self.held.iter().copied().collect();
        }
        if !forgot.is_empty() {
            tracing::warn!(partitions = ?forgot, "leases: no longer held");
            worker.forget(&forgot);
            for p in &forgot {
                self.held.remove(p);
            }
            self.publish_keys();
        }
        match self.try_round(worker, consumer) {
            Ok(()) | Err(ScaleError::Store(_)) => {}
            Err(e) => return Err(e),
        }
        if self.held != before || !forgot.is_empty() {
            // Forgotten partitions are revoked even when taken back in the
            // same round (their state was dropped and is restored again).
            let gone: Vec<i32> = before
                .iter()
                .copied()
                .filter(|p| !self.held.contains(p) || forgot.contains(p))
                .collect();
            self.assign(worker, consumer)?;
            if !gone.is_empty() {
                worker.event(&WorkerEvent::Revoked { partitions: gone });
            }
            let new: Vec<i32> = self
                .held
                .iter()
                .copied()
                .filter(|p| !before.contains(p) || forgot.contains(p))
                .collect();
            if !new.is_empty() {
                worker.event(&WorkerEvent::Assigned {
                    partitions: new.clone(),
                });
                // Restored before the first message is scored (the
                // Kafka Streams order): the takeover is done when this is.
                for p in new {
                    worker.take(p)?;
                }
            }
        }
        Ok(())
    }

    fn try_round<H: Holder>(
        &mut self,
        worker: &H,
        consumer: &BaseConsumer<H::Context>,
    ) -> Result<(), ScaleError> {
        let ttl_ms = self.ttl.as_millis() as i64;
        let members = self.renewer.members.lock().unwrap().clone();
        let Some(me) = members.iter().position(|m| *m == self.instance) else {
            // Not renewed yet: not a member as far as the others know.
            return Ok(());
        };
        let n = members.len();
        let desired: BTreeSet<i32> = (0..self.partitions)
            .filter(|p| *p as usize % n == me)
            .collect();
        // Hand over what is another member's now (one joined): saved and
        // committed first, so that it restores exactly here.
        let extra: Vec<i32> = self.held.difference(&desired).copied().collect();
        for p in extra {
            worker.hand_over(consumer, p)?;
            worker.forget(&[p]);
            self.held.remove(&p);
            self.publish_keys();
            self.store.lease_release(&self.key(p), &self.instance)?;
        }
        // Take what is this worker's and free (or expired).
        for p in desired.difference(&self.held.clone()) {
            if self
                .store
                .lease_acquire(&self.key(*p), &self.instance, ttl_ms)?
                .is_some()
            {
                self.held.insert(*p);
                self.publish_keys();
            }
        }
        Ok(())
    }

    /// Tells the renewer which leases to renew.
    fn publish_keys(&self) {
        *self.renewer.keys.lock().unwrap() = self.held.iter().map(|&p| self.key(p)).collect();
    }

    /// Points the consumer at the held partitions, each from its committed
    /// offset.
    fn assign<H: Holder>(
        &self,
        worker: &H,
        consumer: &BaseConsumer<H::Context>,
    ) -> Result<(), ScaleError> {
        worker.set_leased(&self.held);
        let mut tpl = TopicPartitionList::new();
        for &p in &self.held {
            tpl.add_partition_offset(&self.topic, p, Offset::Stored)
                .expect("a valid offset");
        }
        consumer.assign(&tpl).map_err(|e| {
            ScaleError::kafka(format!("assigning {}", self.topic), worker.brokers(), e)
        })
    }

    /// On shutdown (after the final checkpoint): every lease given up, so
    /// the others take the partitions at once rather than at expiry.
    pub(crate) fn release_all<H: Holder>(
        &mut self,
        worker: &H,
        consumer: &BaseConsumer<H::Context>,
    ) {
        self.renewer.stop.store(true, Ordering::Relaxed);
        for p in std::mem::take(&mut self.held) {
            let _ = self.store.lease_release(&self.key(p), &self.instance);
        }
        let _ = self.assign(worker, consumer);
    }
}
