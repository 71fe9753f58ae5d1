//! [`StoreWriter`]: the store on its own thread, fed by a bounded channel.
//!
//! Why a thread rather than `spawn_blocking` per write: a SQLite connection
//! is used from one place at a time, and one long-lived owner keeps writes
//! in the order they were sent (an incident is stored before the begin of
//! its first action, because it was sent first). Why batches: whatever
//! queued up while a commit ran is written in the next single transaction,
//! so a burst of incidents costs one commit, not one each. Why bounded: if
//! the disk stalls, senders wait (back-pressure) instead of heal growing a
//! queue without limit; nothing is dropped.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::write::{put_begin, put_event, put_finish, put_incident, with_full_sync};
use remediate::action::ActionResult;
use remediate::engine::{EngineEvent, Incident};

use super::{sql, Store};
use crate::{ActionKey, Mark, Marked, StoreError};

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

/// Writes `batch` in one transaction, each write in its own savepoint so
/// one refused write (a duplicate begin) leaves the others in; then answers
/// the waiting senders.
fn write_batch(store: &mut Store, batch: Vec<Op>) {
    let path = store.path.clone();
    let has_begin = batch.iter().any(|op| matches!(op, Op::Begin { .. }));
    let mut replies: Vec<(Reply, Result<(), StoreError>)> = Vec::new();
    type MarkReply = oneshot::Sender<Result<Marked, StoreError>>;
    let mut marks: Vec<(MarkReply, Result<Marked, StoreError>)> = Vec::new();
    let write = |conn: &rusqlite::Connection| -> Result<(), StoreError> {
        let mut tx = conn
            .unchecked_transaction()
            .map_err(sql(&path, "starting a write"))?;
        for op in batch {
            let sp = tx.savepoint().map_err(sql(&path, "starting a savepoint"))?;
            let (result, reply) = match op {
                Op::Incident(inc) => (
                    put_incident(&sp, &inc).map_err(sql(&path, "writing an incident")),
                    None,
                ),
                Op::GuardState(state) => (
                    super::write::put_guard_state(&sp, &state)
                        .map_err(sql(&path, "writing the guard state")),
                    None,
                ),
                Op::Evidence(id, ev) => (
                    super::write::put_evidence(&sp, &id, &ev)
                        .map_err(sql(&path, "writing an incident's evidence")),
                    None,
                ),
                Op::Event(ev) => (
                    put_event(&sp, &ev).map_err(sql(&path, "writing an engine event")),
                    None,
                ),
                Op::Begin {
                    key,
                    summary,
                    started_ms,
                    reply,
                } => (
                    put_begin(&sp, &path, &key, &summary, started_ms),
                    Some(reply),
                ),
                Op::Finish {
                    key,
                    result,
                    finished_ms,
                    reply,
                } => (
                    put_finish(&sp, &path, &key, &result, finished_ms),
                    Some(reply),
                ),
                Op::Process {
                    key,
                    process,
                    reply,
                } => (
                    super::write::put_process(&sp, &path, &key, process),
                    Some(reply),
                ),
                Op::Flush(reply) => (Ok(()), Some(reply)),
                Op::Mark { mark, reply } => {
                    let marked = super::marks::put_mark(&sp, &path, &mark);
                    let result = match &marked {
                        Ok(_) => Ok(()),
                        Err(e) => Err(StoreError::Writer(e.to_string())),
                    };
                    marks.push((reply, marked));
                    (result, None)
                }
            };
            match &result {
                Ok(()) => sp.commit().map_err(sql(&path, "releasing a savepoint"))?,
                Err(e) => {
                    if reply.is_none() {
                        tracing::error!(error = %e, "incident store write failed");
                    }
                    // Drop behaviour is rollback: undoes this write only.
                    sp.finish()
                        .map_err(sql(&path, "rolling back a savepoint"))?;
                }
            }
            if let Some(reply) = reply {
                replies.push((reply, result));
            }
        }
        tx.commit().map_err(sql(&path, "committing a batch"))
    };
    let committed = if has_begin {
        with_full_sync(&store.conn, &path, write)
    } else {
        write(&store.conn)
    };
    match committed {
        Ok(()) => {
            for (reply, result) in replies {
                let _ = reply.send(result);
            }
            for (reply, result) in marks {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "incident store batch failed");
            let message = e.to_string();
            let rolled_back = || {
                StoreError::Writer(format!(
                    "the batch holding this write was rolled back: {message}"
                ))
            };
            for (reply, _) in replies {
                let _ = reply.send(Err(rolled_back()));
            }
            for (reply, _) in marks {
                let _ = reply.send(Err(rolled_back()));
            }
        }
    }
}
