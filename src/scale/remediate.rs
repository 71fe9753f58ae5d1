//! A remediate member (`heal remediate`): consumes the scores topic, runs
//! the engine (rules, guards, verification: the embedded loop's own
//! `remediate::Engine`) per partition, and begins each allowed step through
//! the action journal in PostgreSQL before its executor runs.
//!
//! **Who acts on what.** The scores are keyed by group (`wire::GroupKeys`:
//! the services that call each other), so one partition holds every
//! anomaly of a group. Partitions are leased in PostgreSQL like the detect
//! workers' (`leases`): one member at a time holds a partition, and with it
//! its groups.
//!
//! **An action is begun at most once**, whatever the members believe:
//!
//! - Its journal key is deterministic: the rule, the series and the onset
//!   of the excursion that opened the incident (event time, carried in the
//!   score), then the step. A member that takes a partition over replays
//!   the scores from the last commit with an engine of its own; the same
//!   excursion opens the same incident under the same key, and the
//!   journal's primary key refuses the second begin
//!   (`StoreError::DuplicateAction`): the step is not run again, its
//!   verification goes on.
//! - A member fences each partition it takes (`PgStore::claim`: the
//!   partition's epoch goes up) and every begin carries its fence: a member
//!   cut off from the database or paused past its lease (a zombie that
//!   still believes it holds the partition) gets `StoreError::Fenced` and
//!   runs nothing.
//! - A begin that cannot be recorded (the database is down) runs nothing:
//!   the journal comes first.
//!
//! **Incidents are stored** in the same database (`store::Store` on
//! PostgreSQL, written as the group: every member is the same writer), so `heal incidents --db
//! postgres://...` and `heal serve` show what every member opened, planned,
//! performed and verified. An incident's id is the same on every member
//! (`r-` and a hash of its journal key's rule, series and onset), so a
//! takeover updates the incident the dead member stored instead of adding
//! another, and its executions are the journal's rows under that id. The
//! engine's event log is not written by members; a write that fails is
//! logged and counted, and acting goes on (the journal is what must not
//! fail).
//!
//! **The guards' memory passes with a partition.** At each commit a member
//! saves each partition's guard state (attempts, cooldowns, rate windows,
//! flap counts) in PostgreSQL under the partition's fence, before the
//! offsets (a partition whose state was not saved, fenced or the database
//! down, is not committed: its successor replays instead); the member that
//! takes the partition over restores it before the first score, so a
//! cooldown begun by a member that died still holds.
//!
//! **Not shared between members** (yet): guards that span partitions
//! (a rate limit or `max_concurrent` counts per member and partition),
//! silences and approvals. Actions run on the member's loop, one at a time, each within
//! its timeout; the leases are renewed on a thread of their own meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use executors::Executors;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use remediate::engine::{EngineEvent, Observation, PlannedAction};
use remediate::{Engine, EngineOptions, RunbookSet};
use serde::Serialize;
use stdx::Clock;
use store::{ActionKey, Fence, PgStore, Store, StoreError};

use super::detect::WorkerEvent;
use super::leases::{Holder, LeaseOptions, Leases};
use super::wire::ScoreRecord;
use super::{client_config, ScaleError};

/// How long the engine keeps a resolved incident (event time).
const KEEP_RESOLVED_MS: i64 = 3_600_000;

/// A remediate member's settings.
#[derive(Debug, Clone)]
pub struct RemediateOptions {
    /// `host:port,...` of the brokers.
    pub brokers: String,
    /// The group the members share (leases and committed offsets).
    pub group: String,
    /// The scores topic (keyed by group).
    pub scores: String,
    /// This member's name.
    pub member: String,
    /// PostgreSQL: the leases, the fences and the action journal.
    pub db: String,
    /// A lease's length: a member silent this long loses its partitions.
    pub session_timeout: Duration,
    /// Longest time between commits of the offsets read.
    pub commit_every: Duration,
    /// Perform the allowed steps; plan them in dry-run otherwise.
    pub execute: bool,
}

/// What a member did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemediateStats {
    /// Scores read (each once per delivery).
    pub scores: u64,
    /// Scores skipped: a series' sample at or before one already observed
    /// (a detect worker's duplicate, or a replay).
    pub repeated: u64,
    /// Scores that reach no engine: dropped by the sample policy, in the
    /// grace after a gap, not decodable.
    pub not_observed: u64,
    /// Incidents opened (again, after a takeover: the same key).
    pub opened: u64,
    /// Steps this member began and ran.
    pub performed: u64,
    /// Of those, the ones whose executor failed.
    pub failed: u64,
    /// Steps already begun (by this member before a restart, or another):
    /// not run again.
    pub begun_elsewhere: u64,
    /// Steps refused by the fence: this member no longer held the
    /// partition.
    pub fenced: u64,
    /// Steps not run because the journal could not record their begin.
    pub not_recorded: u64,
    /// Incident snapshots written to the store.
    pub stored: u64,
    /// Incident snapshots the store did not take (logged; acting goes on).
    pub not_stored: u64,
    /// Steps planned in dry-run (without `--execute`) or held back by a
    /// guard.
    pub not_allowed: u64,
    /// Commits of the offsets read.
    pub commits: u64,
    /// Partitions taken with a predecessor's guard memory.
    pub guards_restored: u64,
}

/// What a member reports as it goes (the CLI prints them as JSON lines).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RemediateEvent {
    /// These partitions are this member's now.
    Assigned { partitions: Vec<i32> },
    /// These are not any more.
    Revoked { partitions: Vec<i32> },
    /// An incident opened.
    Opened {
        partition: i32,
        incident: String,
        rule: String,
        series: String,
        onset_ms: i64,
    },
    /// A step's fate: `performed`, `failed`, `begun_elsewhere`, `fenced`,
    /// `not_recorded`, or `not_allowed` (dry-run, a guard).
    Step {
        partition: i32,
        key: String,
        summary: String,
        outcome: &'static str,
    },
    /// Offsets committed.
    Commit { offsets: BTreeMap<i32, i64> },
    /// A partition taken with the guard memory its previous holder saved:
    /// how many attempts it remembers.
    GuardsRestored { partition: i32, attempts: usize },
}

/// One partition held.
struct PartitionState {
    engine: Engine,
    fence: Fence,
    /// Per series, the newest sample observed (event time); a series
    /// silent for [`KEEP_RESOLVED_MS`] is forgotten (memory stays bounded
    /// under series churn).
    last_ts: HashMap<String, i64>,
    /// The newest sample observed in the partition, and when the series
    /// map was last swept.
    newest_ts: i64,
    swept_ts: i64,
    next_offset: Option<i64>,
}

struct Member {
    opts: RemediateOptions,
    runbooks: RunbookSet,
    executors: Executors,
    /// Runs the executors (they are async) on the member's thread.
    rt: tokio::runtime::Runtime,
    clock: Arc<dyn Clock>,
    /// The journal and the fences (the leases have connections of their
    /// own).
    journal: Mutex<PgStore>,
    /// The incidents, in the same database.
    incidents: Mutex<Store>,
    /// Who this member is in the fences: member, pid, start time.
    instance: String,
    owned: Mutex<BTreeMap<i32, PartitionState>>,
    leased: Mutex<BTreeSet<i32>>,
    stats: Mutex<RemediateStats>,
    on_event: Box<dyn Fn(&RemediateEvent) + Send + Sync>,
}

impl Holder for Member {
    type Context = DefaultConsumerContext;

    fn brokers(&self) -> &str {
        &self.opts.brokers
    }

    fn hand_over(&self, consumer: &BaseConsumer, p: i32) -> Result<(), ScaleError> {
        self.commit(consumer, Some(p));
        Ok(())
    }

    fn forget(&self, parts: &[i32]) {
        let mut owned = self.owned.lock().unwrap();
        let mut leased = self.leased.lock().unwrap();
        for p in parts {
            owned.remove(p);
            leased.remove(p);
        }
    }

    fn take(&self, p: i32) -> Result<(), ScaleError> {
        if self.owned.lock().unwrap().contains_key(&p) {
            return Ok(());
        }
        // Fenced from here on: a begin by the previous holder (a zombie)
        // is refused by the database.
        let key = self.partition_key(p);
        let fence =
            self.journal
                .lock()
                .unwrap()
                .claim(&key, &self.instance, self.clock.now_ms())?;
        tracing::info!(partition = p, epoch = fence.epoch, "partition fenced");
        let mut engine = Engine::new(
            &self.runbooks,
            EngineOptions {
                dry_run: !self.opts.execute,
                await_actions: self.opts.execute,
            },
        );
        // The guards' memory its previous holder saved (read after the
        // claim: that holder saves nothing more).
        let saved = self.journal.lock().unwrap().load_state(&key)?;
        if let Some(text) = saved {
            match serde_json::from_str::<remediate::engine::GuardState>(&text) {
                Ok(state) => {
                    let attempts = state.attempts.len();
                    engine.restore(state);
                    self.stats.lock().unwrap().guards_restored += 1;
                    (self.on_event)(&RemediateEvent::GuardsRestored {
                        partition: p,
                        attempts,
                    });
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "saved guard state does not decode: the partition starts with none");
                }
            }
        }
        self.owned.lock().unwrap().insert(
            p,
            PartitionState {
                engine,
                fence,
                last_ts: HashMap::new(),
                newest_ts: i64::MIN,
                swept_ts: i64::MIN,
                next_offset: None,
            },
        );
        Ok(())
    }

    fn set_leased(&self, held: &BTreeSet<i32>) {
        *self.leased.lock().unwrap() = held.clone();
    }

    fn event(&self, e: &WorkerEvent) {
        match e {
            WorkerEvent::Assigned { partitions } => (self.on_event)(&RemediateEvent::Assigned {
                partitions: partitions.clone(),
            }),
            WorkerEvent::Revoked { partitions } => (self.on_event)(&RemediateEvent::Revoked {
                partitions: partitions.clone(),
            }),
            _ => {}
        }
    }
}

/// Runs a remediate member until `shutdown` is set (then commits and gives
/// its leases up) or a fatal error.
///
/// # Errors
///
/// The broker or the database could not be reached at start, or the
/// scores topic does not exist.
pub fn run(
    opts: RemediateOptions,
    runbooks: RunbookSet,
    executors: Executors,
    clock: Arc<dyn Clock>,
    shutdown: &AtomicBool,
    on_event: impl Fn(&RemediateEvent) + Send + Sync + 'static,
) -> Result<RemediateStats, ScaleError> {
    let brokers = opts.brokers.clone();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let instance = format!("{}/{}/{started}", opts.member, std::process::id());
    let journal = PgStore::open_as(&opts.db, &opts.member)?;
    // Every member of the group writes as the group: an incident is the
    // group's, updated by whichever member holds its partition.
    let incidents = Store::open_shared(&opts.db, &opts.group)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            ScaleError::kafka(
                format!("starting the executors' runtime: {e}"),
                &brokers,
                rdkafka::error::KafkaError::Canceled,
            )
        })?;
    let member = Member {
        opts,
        runbooks,
        executors,
        rt,
        clock,
        journal: Mutex::new(journal),
        incidents: Mutex::new(incidents),
        instance,
        owned: Mutex::new(BTreeMap::new()),
        leased: Mutex::new(BTreeSet::new()),
        stats: Mutex::new(RemediateStats::default()),
        on_event: Box::new(on_event),
    };
    let o = &member.opts;
    let consumer: BaseConsumer = client_config(&brokers)
        .set("group.id", &o.group)
        .set("client.id", format!("heal-remediate-{}", o.member))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| ScaleError::kafka("creating the consumer", &brokers, e))?;
    let mut leases = Leases::open(
        &o.db,
        &LeaseOptions {
            member: &o.member,
            group: &o.group,
            topic: &o.scores,
            brokers: &o.brokers,
            ttl: o.session_timeout,
        },
        &consumer,
    )?;
    let mut last_commit = Instant::now();
    loop {
        if leases.due() {
            leases.round(&member, &consumer)?;
        }
        if shutdown.load(Ordering::Relaxed) {
            member.commit(&consumer, None);
            leases.release_all(&member, &consumer);
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => member.handle(&m)?,
            Some(Err(e)) => tracing::warn!(error = %e, "consumer"),
            None => {}
        }
        if last_commit.elapsed() >= o.commit_every {
            member.commit(&consumer, None);
            last_commit = Instant::now();
        }
    }
    let stats = member.stats.lock().unwrap().clone();
    Ok(stats)
}

impl Member {
    /// Observes one score: the engine's events, and each allowed step
    /// begun through the journal and run.
    fn handle(&self, m: &BorrowedMessage<'_>) -> Result<(), ScaleError> {
        let (p, o) = (m.partition(), m.offset());
        if !self.leased.lock().unwrap().contains(&p) {
            return Ok(());
        }
        Holder::take(self, p)?;
        let mut stats = self.stats.lock().unwrap();
        stats.scores += 1;
        let record = m
            .payload()
            .and_then(|b| serde_json::from_slice::<ScoreRecord>(b).ok());
        let mut owned = self.owned.lock().unwrap();
        let part = owned.get_mut(&p).expect("taken above");
        part.next_offset = Some(o + 1);
        let Some(record) = record.filter(|r| r.dropped.is_none() && !r.in_grace) else {
            stats.not_observed += 1;
            return Ok(());
        };
        let Ok(labels) = record.series.parse::<ingest::Labels>() else {
            stats.not_observed += 1;
            return Ok(());
        };
        // A detect worker's duplicate (the same sample scored twice after a
        // takeover) or a replay: observed once.
        match part.last_ts.get(&record.series) {
            Some(&last) if record.ts_ms <= last => {
                stats.repeated += 1;
                return Ok(());
            }
            _ => {
                part.last_ts.insert(record.series.clone(), record.ts_ms);
            }
        }
        let Some(signal) = labels.name().map(str::to_owned) else {
            stats.not_observed += 1;
            return Ok(());
        };
        let map: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let events = part.engine.observe(&Observation {
            signal: &signal,
            labels: &map,
            ts_ms: record.ts_ms,
            value: record.value,
            scored: detect::Scored {
                score: record.score,
                excursion: record.excursion,
            },
        });
        drop(stats);
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for event in events {
            touched.insert(event.incident().to_owned());
            match event {
                EngineEvent::Opened {
                    incident,
                    rule,
                    series,
                    ..
                } => {
                    self.stats.lock().unwrap().opened += 1;
                    let (onset_ms, stored) = part
                        .engine
                        .incident(&incident)
                        .map_or((record.ts_ms, incident), |i| (i.onset_ms, stored_id(i)));
                    (self.on_event)(&RemediateEvent::Opened {
                        partition: p,
                        incident: stored,
                        rule,
                        series,
                        onset_ms,
                    });
                }
                EngineEvent::Planned { incident, action } => {
                    self.step(p, part, &incident, &action, record.ts_ms);
                }
                _ => {}
            }
        }
        for id in &touched {
            self.store_incident(part, id);
        }
        // Memory stays bounded: resolved incidents go after an hour, and
        // so do series silent for that long (swept once a minute).
        part.engine.forget_resolved(record.ts_ms - KEEP_RESOLVED_MS);
        part.newest_ts = part.newest_ts.max(record.ts_ms);
        if part.newest_ts.saturating_sub(part.swept_ts) >= 60_000 {
            let horizon = part.newest_ts - KEEP_RESOLVED_MS;
            part.last_ts.retain(|_, ts| *ts >= horizon);
            part.swept_ts = part.newest_ts;
        }
        Ok(())
    }

    /// One planned step: begun through the journal (fenced), run, finished.
    fn step(
        &self,
        p: i32,
        part: &mut PartitionState,
        incident: &str,
        action: &PlannedAction,
        ts_ms: i64,
    ) {
        let Some(inc) = part.engine.incident(incident) else {
            return;
        };
        // The same excursion gives the same key on every member.
        let key = ActionKey::new(stored_id(inc), action.step, 1);
        let report = |outcome: &'static str| {
            (self.on_event)(&RemediateEvent::Step {
                partition: p,
                key: key.to_string(),
                summary: action.summary.clone(),
                outcome,
            })
        };
        let (true, Some(rendered)) = (action.decision.allowed, action.rendered.as_ref()) else {
            self.stats.lock().unwrap().not_allowed += 1;
            report("not_allowed");
            return;
        };
        let begun = self.journal.lock().unwrap().begin_action(
            &key,
            &action.summary,
            self.clock.now_ms(),
            Some(&part.fence),
        );
        match begun {
            Ok(()) => {}
            Err(StoreError::DuplicateAction { .. }) => {
                self.stats.lock().unwrap().begun_elsewhere += 1;
                report("begun_elsewhere");
                // Its verification goes on here, from now.
                part.engine.action_finished(incident, action.step, ts_ms);
                return;
            }
            Err(e @ StoreError::Fenced { .. }) => {
                tracing::error!(error = %e, partition = p, "fenced: this member no longer holds the partition; step not run");
                self.stats.lock().unwrap().fenced += 1;
                report("fenced");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "the journal did not record the begin; step not run");
                self.stats.lock().unwrap().not_recorded += 1;
                report("not_recorded");
                return;
            }
        }
        let timeout = Duration::from_millis(
            action
                .timeout
                .map_or(remediate::engine::DEFAULT_STEP_TIMEOUT_MS, |t| {
                    t.as_millis_i64()
                })
                .max(1) as u64,
        );
        let _span = tracing::info_span!("action", key = %key).entered();
        let result = self.rt.block_on(
            self.executors
                .perform_observed(rendered, timeout, false, None),
        );
        if let Err(e) =
            self.journal
                .lock()
                .unwrap()
                .finish_action(&key, &result, self.clock.now_ms())
        {
            tracing::error!(error = %e, "the journal did not record the result");
        }
        {
            let mut stats = self.stats.lock().unwrap();
            stats.performed += 1;
            if !result.ok {
                stats.failed += 1;
            }
        }
        report(if result.ok { "performed" } else { "failed" });
        part.engine.action_finished(incident, action.step, ts_ms);
    }

    /// Writes the engine's incident `id` as it is now, under its stored id.
    fn store_incident(&self, part: &PartitionState, id: &str) {
        let Some(inc) = part.engine.incident(id) else {
            return;
        };
        let mut stored = inc.clone();
        stored.id = stored_id(inc);
        let written = self.incidents.lock().unwrap().record_incident(&stored);
        let mut stats = self.stats.lock().unwrap();
        match written {
            Ok(()) => stats.stored += 1,
            Err(e) => {
                stats.not_stored += 1;
                tracing::warn!(stage = "store", incident = %stored.id, error = %e, "incident not stored; acting goes on");
            }
        }
    }

    /// The group key of partition `p`: its fence, its saved state.
    fn partition_key(&self, p: i32) -> String {
        format!("remediate/{}/{}/{p}", self.opts.group, self.opts.scores)
    }

    /// Saves partition `p`'s guard memory under its fence; whether it was
    /// saved.
    fn save_guards(&self, p: i32, part: &PartitionState) -> bool {
        let state = part.engine.guard_state(part.newest_ts.max(0));
        let text = match serde_json::to_string(&state) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(partition = p, error = %e, "guard state does not encode");
                return false;
            }
        };
        match self
            .journal
            .lock()
            .unwrap()
            .save_state(&part.fence, &text, self.clock.now_ms())
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    partition = p,
                    "fenced: guard state not saved, offsets not committed"
                );
                false
            }
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "guard state not saved, offsets not committed");
                false
            }
        }
    }

    /// Commits the offsets read: of partition `only`, or of every one held,
    /// each after its guard memory was saved (one not saved is not
    /// committed). A refused commit is logged: the next holder replays a
    /// little more (the journal refuses what was begun).
    fn commit(&self, consumer: &BaseConsumer, only: Option<i32>) {
        let offsets: BTreeMap<i32, i64> = self
            .owned
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| only.is_none_or(|o| o == **p))
            .filter_map(|(p, s)| Some((*p, s.next_offset?, s)))
            .filter(|(p, _, s)| self.save_guards(*p, s))
            .map(|(p, next, _)| (p, next))
            .collect();
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &offsets {
            tpl.add_partition_offset(&self.opts.scores, p, Offset::Offset(next))
                .expect("a valid offset");
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.stats.lock().unwrap().commits += 1;
                (self.on_event)(&RemediateEvent::Commit { offsets });
            }
            Err(e) => tracing::warn!(error = %e, "commit refused"),
        }
    }
}

/// An incident's id in the store and the journal, the same on every member:
/// `r-` and the FNV-1a hash of its rule, series and excursion onset (what
/// a member that replays the scores sees again).
pub(crate) fn stored_id(inc: &remediate::engine::Incident) -> String {
    let identity = format!(
        "{}/{}/{}",
        inc.rule,
        remediate::engine::series_selector(&inc.series),
        inc.onset_ms
    );
    format!("r-{:016x}", stdx::fnv1a64(identity.as_bytes()))
}
