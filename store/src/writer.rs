//! [`StoreWriter`]: the store on its own thread, fed by a bounded channel.
//!
//! Why a thread rather than `spawn_blocking` per write: a SQLite connection
//! is used from one place at a time, and one long-lived owner keeps writes
//! in the order they were sent (an incident is stored before the begin of
//! its first action, because it was sent first). Why batches: whatever
//! queued up while a commit ran is written in the next single transaction,
//! so a burst of incidents costs one commit, not one each. Why bounded: if
//! the disk stalls, senders wait (back-pressure) instead of heal growing a
//! queue without limit; nothing is dropped. Why retries: a PostgreSQL
//! server that restarts or is cut off for a while (a SQLite file has no
//! such failure) costs a wait, not the batch: it is written again, whole,
//! once the server answers (up to [`RETRY_FOR`]). A batch whose `COMMIT`
//! was sent but whose answer the lost connection ate may have been
//! committed already: written again, its incidents come out the same
//! (snapshots are upserts), an event of it may be logged twice, and a begin
//! of it is answered as a duplicate, so its action does not run (at most
//! once) and is reported interrupted at the next open.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::db::{in_transaction, Db};
use crate::write::{
    power_cut_durable, put_begin, put_event, put_evidence, put_finish, put_guard_state,
    put_incident, put_process,
};
use remediate::action::ActionResult;
use remediate::engine::{EngineEvent, Incident};

use crate::{ActionKey, Mark, Marked, Store, StoreError};

/// How long a batch is tried again while the database's connection is
/// lost before its writes are given up (and their senders told).
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), StoreError>>;

#[derive(Debug)]
enum Op {
    Incident(Box<Incident>),
    Evidence(String, Box<remediate::report::Evidence>),
    GuardState(Box<remediate::engine::GuardState>),
    Event(Box<EngineEvent>),
    Begin {
        key: ActionKey,
        summary: String,
        started_ms: i64,
        reply: Reply,
    },
    Finish {
        key: ActionKey,
        result: ActionResult,
        finished_ms: i64,
        reply: Reply,
    },
    Process {
        key: ActionKey,
        process: crate::ChildProcess,
        reply: Reply,
    },
    Flush(Reply),
    /// Learning from outcomes: a sensitivity mark, answered with what it did.
    Mark {
        mark: Box<Mark>,
        reply: oneshot::Sender<Result<Marked, StoreError>>,
    },
}

/// A handle for writing to a [`Store`] owned by a background thread.
/// Cheap to clone; the thread ends when every clone is dropped.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Op>,
}

/// The writer's thread; [`WriterThread::join`] gives the store back once
/// every [`StoreWriter`] is dropped and the queue is written.
#[derive(Debug)]
pub struct WriterThread(JoinHandle<Store>);

impl WriterThread {
    /// Waits for the thread (blocking) and returns the store.
    ///
    /// # Panics
    ///
    /// If the writer thread panicked (a bug).
    pub fn join(self) -> Store {
        self.0.join().expect("the incident store writer panicked")
    }
}

impl StoreWriter {
    /// Moves `store` onto a new thread; `capacity` writes may wait in the
    /// queue before senders wait.
    pub fn spawn(store: Store, capacity: usize) -> Result<(StoreWriter, WriterThread), StoreError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("heal-store".into())
            .spawn(move || run(store, rx))
            .map_err(|e| StoreError::Writer(format!("starting the writer thread: {e}")))?;
        Ok((StoreWriter { tx }, WriterThread(thread)))
    }

    /// Queues a snapshot of `incident` (see [`Store::record_incident`]).
    /// Waits only while the queue is full; a write error is logged.
    pub async fn incident(&self, incident: Incident) -> Result<(), StoreError> {
        self.send(Op::Incident(Box::new(incident))).await
    }

    /// Queues the guard state (see [`Store::record_guard_state`]).
    pub async fn guard_state(
        &self,
        state: remediate::engine::GuardState,
    ) -> Result<(), StoreError> {
        self.send(Op::GuardState(Box::new(state))).await
    }

    /// Queues an incident's evidence (see [`Store::record_evidence`]).
    pub async fn evidence(
        &self,
        incident: String,
        evidence: remediate::report::Evidence,
    ) -> Result<(), StoreError> {
        self.send(Op::Evidence(incident, Box::new(evidence))).await
    }

    /// Queues an engine event (see [`Store::record_event`]).
    pub async fn event(&self, event: EngineEvent) -> Result<(), StoreError> {
        self.send(Op::Event(Box::new(event))).await
    }

    /// [`Store::begin_action`]: returns once the begin is committed, so the
    /// executor may run; everything sent before it is committed too.
    pub async fn begin_action(
        &self,
        key: ActionKey,
        summary: String,
        started_ms: i64,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Begin {
            key,
            summary,
            started_ms,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Store::finish_action`]: returns once the result is committed.
    pub async fn finish_action(
        &self,
        key: ActionKey,
        result: ActionResult,
        finished_ms: i64,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Finish {
            key,
            result,
            finished_ms,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Store::record_process`]: returns once the process is committed.
    pub async fn process(
        &self,
        key: ActionKey,
        process: crate::ChildProcess,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Process {
            key,
            process,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Store::mark_sensitivity`]: returns once the mark is committed,
    /// with the adjustment made (after everything sent before it).
    pub async fn mark(&self, mark: Mark) -> Result<Marked, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Mark {
            mark: Box::new(mark),
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Returns once everything sent before is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Flush(reply)).await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.send(op).await.map_err(|_| StoreError::WriterGone)
    }
}

fn run(mut store: Store, mut rx: mpsc::Receiver<Op>) -> Store {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(&mut store, batch);
    }
    store
}

/// What one write did, answered once its batch is committed.
enum Done {
    Write(Result<(), StoreError>),
    Mark(Result<Marked, StoreError>),
}

/// Writes `batch` in one transaction, each write in its own savepoint so
/// one refused write (a duplicate begin) leaves the others in; then answers
/// the waiting senders. While the connection is lost (PostgreSQL), the
/// whole batch is tried again with backoff.
fn write_batch(store: &mut Store, batch: Vec<Op>) {
    let has_begin = batch.iter().any(|op| matches!(op, Op::Begin { .. }));
    let writer = store.writer.clone();
    let deadline = Instant::now() + RETRY_FOR;
    let mut backoff = Duration::from_millis(100);
    // First every write straight in the batch's transaction; only if one
    // fails (not merely refused: a refusal writes nothing) is the batch
    // written again with each write in a savepoint of its own, so the
    // failure is undone alone. (A savepoint is two more round trips per
    // write to PostgreSQL: most batches never need them.)
    let mut careful = false;
    let committed = loop {
        let db = store.db();
        let write = |db: &dyn Db| {
            in_transaction(db, "writing a batch", |db| {
                batch
                    .iter()
                    .map(|op| {
                        if careful {
                            in_savepoint(db, op, writer.as_deref())
                        } else {
                            let done = apply(db, op, writer.as_deref());
                            match done.failure() {
                                Some(e) => Err(StoreError::Writer(e.to_string())),
                                None => Ok(done),
                            }
                        }
                    })
                    .collect::<Result<Vec<Done>, StoreError>>()
            })
        };
        let result = if has_begin {
            power_cut_durable(db, write)
        } else {
            write(db)
        };
        match result {
            Err(e) if db.lost() && Instant::now() < deadline => {
                tracing::warn!(stage = "store", error = %e, retry_in_ms = backoff.as_millis() as u64, "incident store: connection lost; writing the batch again");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(_) if !careful => careful = true,
            other => break other,
        }
    };
    match committed {
        Ok(done) => {
            for (op, done) in batch.into_iter().zip(done) {
                answer(op, done);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "incident store batch failed");
            let message = e.to_string();
            for op in batch {
                let rolled_back = StoreError::Writer(format!(
                    "the batch holding this write was rolled back: {message}"
                ));
                let done = match op {
                    Op::Mark { .. } => Done::Mark(Err(rolled_back)),
                    _ => Done::Write(Err(rolled_back)),
                };
                answer(op, done);
            }
        }
    }
}

impl Done {
    /// The error of a write that failed, as opposed to one refused
    /// (a duplicate begin, a finish of what is not in flight: nothing
    /// written, answered to its sender).
    fn failure(&self) -> Option<&StoreError> {
        let e = match self {
            Done::Write(r) => r.as_ref().err(),
            Done::Mark(r) => r.as_ref().err(),
        }?;
        (!matches!(
            e,
            StoreError::DuplicateAction { .. } | StoreError::NotInFlight { .. }
        ))
        .then_some(e)
    }
}

/// One write, straight.
fn apply(db: &dyn Db, op: &Op, writer: Option<&str>) -> Done {
    match op {
        Op::Incident(inc) => Done::Write(put_incident(db, inc, writer)),
        Op::GuardState(state) => Done::Write(put_guard_state(db, state)),
        Op::Evidence(id, ev) => Done::Write(put_evidence(db, id, ev)),
        Op::Event(ev) => Done::Write(put_event(db, ev)),
        Op::Begin {
            key,
            summary,
            started_ms,
            ..
        } => Done::Write(put_begin(db, key, summary, *started_ms, writer)),
        Op::Finish {
            key,
            result,
            finished_ms,
            ..
        } => Done::Write(put_finish(db, key, result, *finished_ms)),
        Op::Process { key, process, .. } => Done::Write(put_process(db, key, *process)),
        Op::Flush(_) => Done::Write(Ok(())),
        Op::Mark { mark, .. } => Done::Mark(crate::marks::put_mark(db, mark)),
    }
}

/// One write in its own savepoint: a write that fails or is refused is
/// undone alone and answered with its error; only a failure of the
/// savepoint itself (the connection) fails the batch.
fn in_savepoint(db: &dyn Db, op: &Op, writer: Option<&str>) -> Result<Done, StoreError> {
    db.batch("starting a savepoint", "SAVEPOINT op")?;
    let done = apply(db, op, writer);
    let failed = match &done {
        Done::Write(r) => r.as_ref().err(),
        Done::Mark(r) => r.as_ref().err(),
    };
    match failed {
        None => db.batch("releasing a savepoint", "RELEASE SAVEPOINT op")?,
        Some(e) => {
            if db.lost() {
                // Not this write's fault: the batch is tried again whole.
                return Err(StoreError::Writer(e.to_string()));
            }
            if !matches!(
                op,
                Op::Begin { .. }
                    | Op::Finish { .. }
                    | Op::Process { .. }
                    | Op::Flush(_)
                    | Op::Mark { .. }
            ) {
                tracing::error!(error = %e, "incident store write failed");
            }
            db.batch(
                "rolling back a savepoint",
                "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op",
            )?;
        }
    }
    Ok(done)
}

/// Sends a write's result to whoever waits for it.
fn answer(op: Op, done: Done) {
    match (op, done) {
        (
            Op::Begin { reply, .. }
            | Op::Finish { reply, .. }
            | Op::Process { reply, .. }
            | Op::Flush(reply),
            Done::Write(result),
        ) => {
            let _ = reply.send(result);
        }
        (Op::Mark { reply, .. }, Done::Mark(result)) => {
            let _ = reply.send(result);
        }
        // Incidents, events, evidence and guard state have no one waiting:
        // a failure was logged where it happened.
        _ => {}
    }
}
