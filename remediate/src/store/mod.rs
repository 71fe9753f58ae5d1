//! The incident store: incidents, anomalies, actions and their outcomes in
//! one SQLite file, durable across restarts and crashes of heal.
//!
//! # Why SQLite, and how it is opened
//!
//! One embedded file (the `bundled` build: no system library, the same
//! SQLite everywhere), transactions, indexes for the report feed's filters,
//! and readers that do not block the writer. It is opened in WAL mode with
//! `synchronous=NORMAL`: a commit survives heal being killed (SIGKILL, OOM,
//! panic), and a power cut loses at most the last commits but never
//! corrupts the file. The one write that must survive a power cut too, the
//! begin of an action ([`Store::begin_action`]), is committed with
//! `synchronous=FULL`. A busy timeout lets `heal incidents list` read while
//! `heal watch` writes.
//!
//! # Layout
//!
//! - `schema.rs`: the migrations, applied in order at open (`PRAGMA
//!   user_version` is the count applied). A file from a newer heal is
//!   refused ([`StoreError::TooNew`]).
//! - `write.rs`: incidents as the engine holds them (upserted whole, so the
//!   last snapshot wins), the event log, and the two-phase action journal.
//! - `read.rs`: an incident read back, and the paginated list with filters.
//! - `writer.rs`: [`StoreWriter`], a thread that owns the store and takes
//!   writes from async code over a bounded channel, batching what queued up
//!   into one transaction.
//!
//! # Idempotent actions
//!
//! Every performed action has an [`ActionKey`] (incident, step, attempt).
//! [`Store::begin_action`] records it *before* the executor runs and
//! refuses a key already recorded ([`StoreError::DuplicateAction`]);
//! [`Store::finish_action`] records the result. If heal dies in between, the
//! next [`Store::open`] marks the action `interrupted` and returns it: heal
//! cannot know whether it ran, so it says so and never runs it again
//! blindly. An action the engine allowed but that was never begun (heal
//! died between deciding and acting) is marked `abandoned` the same way: it
//! certainly did not run, and it will not run late.
//!
//! The store never reads the clock: every time is a parameter, event time
//! for what the engine decided, wall time (the caller's) for executions.
//!
//! ```
//! use remediate::actions::ActionResult;
//! use remediate::store::{ActionKey, IncidentFilter, Store, StoreError};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let opened = Store::open(dir.path().join("heal.db")).unwrap();
//! assert!(opened.interrupted.is_empty()); // nothing left over from a crash
//! let mut store = opened.store;
//! assert_eq!(store.next_incident_seq().unwrap(), 1);
//!
//! let key = ActionKey::new("inc-000001", 1, 1);
//! store.begin_action(&key, "exec heal-lab restart web", 1_000).unwrap();
//! // ... the executor runs ...
//! let result = ActionResult {
//!     ok: true,
//!     retryable: false,
//!     summary: "exit status 0".into(),
//!     output: String::new(),
//!     duration: std::time::Duration::from_millis(180),
//! };
//! store.finish_action(&key, &result, 1_180).unwrap();
//! // Never twice:
//! assert!(matches!(
//!     store.begin_action(&key, "exec heal-lab restart web", 2_000),
//!     Err(StoreError::DuplicateAction { .. })
//! ));
//! assert!(store.list(&IncidentFilter::default()).unwrap().incidents.is_empty());
//! ```

mod error;
mod read;
mod schema;
// Learning from outcomes: threshold offsets per signal and their history.
mod sensitivity;
mod write;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::actions::ActionResult;

pub use error::StoreError;
pub use read::{IncidentFilter, IncidentPage, IncidentRecord, IncidentSummary, DEFAULT_LIMIT};
pub use sensitivity::{
    step_offset, Adjustment, Mark, Marked, Reason as SensitivityReason, OFFSET_MAX, OFFSET_MIN,
};
pub use writer::{StoreWriter, WriterThread};

/// How long a connection waits for another one's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The durable record of what heal saw and did. See the module docs.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// A store opened for writing, with what the last run left unfinished.
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: Store,
    /// Actions an earlier run left unfinished, which the caller reports:
    /// begun but never finished (killed between begin and finish), now
    /// [`ExecutionState::Interrupted`]: they may or may not have run; and
    /// allowed but never begun (killed between deciding and acting), now
    /// [`ExecutionState::Abandoned`]: they did not run.
    pub interrupted: Vec<ActionRecord>,
}

/// Identity of one execution of one planned step: the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ActionKey {
    /// Incident id.
    pub incident: String,
    /// 1-based step in the rule's chain.
    pub step: usize,
    /// 1-based attempt of that step (a retry is a new attempt, so a new key).
    pub attempt: u32,
}

impl ActionKey {
    /// The key of `attempt` of `step` of `incident`.
    pub fn new(incident: impl Into<String>, step: usize, attempt: u32) -> ActionKey {
        ActionKey {
            incident: incident.into(),
            step,
            attempt,
        }
    }
}

impl fmt::Display for ActionKey {
    /// `inc-000042/step-2/attempt-1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/step-{}/attempt-{}",
            self.incident, self.step, self.attempt
        )
    }
}

/// Where an execution is in its two phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Begun, not finished: running now, or heal died while it ran.
    Started,
    /// Finished with a result.
    Finished,
    /// Begun by a heal that died before finishing it; found at the next open.
    Interrupted,
    /// Allowed by the guards but never begun: heal died between deciding and
    /// acting. Found at the next open; it did not run and will not.
    Abandoned,
}

impl ExecutionState {
    /// The lowercase name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Started => "started",
            ExecutionState::Finished => "finished",
            ExecutionState::Interrupted => "interrupted",
            ExecutionState::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Option<ExecutionState> {
        [
            ExecutionState::Started,
            ExecutionState::Finished,
            ExecutionState::Interrupted,
            ExecutionState::Abandoned,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One execution as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    /// The idempotency key.
    pub key: ActionKey,
    /// What was run, for humans (`exec heal-lab restart web`).
    pub summary: String,
    /// Where it is.
    pub state: ExecutionState,
    /// Wall time of the begin, ms since the epoch; for an abandoned action,
    /// when it was planned (event time).
    pub started_ms: i64,
    /// Wall time of the finish; `None` while started and for an
    /// interrupted action (nobody saw it end).
    pub finished_ms: Option<i64>,
    /// The executor's result once finished; its duration is kept to the
    /// microsecond.
    pub result: Option<ActionResult>,
}

/// Whether an incident's anomaly has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Still open (or open when heal stopped: see `unresolved_at_ms`).
    Open,
    /// The anomaly ended.
    Resolved,
}

impl IncidentStatus {
    /// The lowercase name stored, shown and accepted by filters.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// Parses [`IncidentStatus::as_str`]'s names.
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        [IncidentStatus::Open, IncidentStatus::Resolved]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What heal's steps achieved for an incident, for filtering the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentOutcome {
    /// A step was verified as having recovered the signal.
    Recovered,
    /// The last verified step made it worse, none recovered it.
    Worse,
    /// The last verified step did not recover it.
    NotRecovered,
    /// No step was verified (all suppressed, or still waiting).
    None,
}

impl IncidentOutcome {
    /// The lowercase name stored, shown and accepted by filters.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentOutcome::Recovered => "recovered",
            IncidentOutcome::Worse => "worse",
            IncidentOutcome::NotRecovered => "not_recovered",
            IncidentOutcome::None => "none",
        }
    }

    /// Parses [`IncidentOutcome::as_str`]'s names.
    pub fn parse(s: &str) -> Option<IncidentOutcome> {
        [
            IncidentOutcome::Recovered,
            IncidentOutcome::Worse,
            IncidentOutcome::NotRecovered,
            IncidentOutcome::None,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// An anomaly as stored: the series, how anomalous, since when, and the
/// evidence (JSON) behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyRecord {
    /// The incident it became, if any.
    pub incident: Option<String>,
    /// Series selector, `metric{a="1"}`.
    pub selector: String,
    /// Labels of the series.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Anomaly score in [0, 1] (the peak while the incident was open).
    pub score: f64,
    /// When the excursion fired (event time, ms).
    pub onset_ms: i64,
    /// Whether it is above the baseline.
    pub above: bool,
    /// The facts behind it (signal, rule, severity, ...), a JSON object.
    pub evidence: serde_json::Value,
}

impl Store {
    /// Opens (creating it if missing) the store at `path` for writing:
    /// applies missing migrations, then marks every action an earlier run
    /// began but never finished as interrupted and returns those.
    ///
    /// One writer per file: two heal processes writing the same store would
    /// each take the other's running actions for interrupted ones.
    pub fn open(path: impl AsRef<Path>) -> Result<Opened, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(sql(&path, "opening"))?;
        let mut store = Store { conn, path };
        store.configure()?;
        store.migrate()?;
        let interrupted = store.recover()?;
        Ok(Opened { store, interrupted })
    }

    /// Opens an existing store for marks (`heal incidents mark|missed`, and
    /// watch's API): applies missing migrations but, unlike
    /// [`Store::open`], marks nothing interrupted, so it is safe while a
    /// `heal watch` writes the same file (SQLite's locks order the writes).
    pub fn open_for_marks(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(StoreError::Missing(path));
        }
        let conn = Connection::open(&path).map_err(sql(&path, "opening"))?;
        let mut store = Store { conn, path };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing store for reading only (the report feed): no
    /// migration, no recovery, so it is safe while a `heal watch` writes it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(StoreError::Missing(path));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(&path, "opening read-only"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql(&path, "setting the busy timeout"))?;
        let store = Store { conn, path };
        let found = store.version()?;
        let supported = schema::current_version();
        if found > supported {
            return Err(StoreError::TooNew {
                path: store.path,
                found,
                supported,
            });
        }
        if found < supported {
            return Err(StoreError::TooOld {
                path: store.path,
                found,
                supported,
            });
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (`PRAGMA user_version`).
    pub fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql(&self.path, "reading the schema version"))
    }

    /// The number the next incident should get so that ids stay unique
    /// across restarts: one more than the highest `inc-NNNNNN` stored (1 for
    /// an empty store). Give it to `Engine::continue_numbering_from`.
    pub fn next_incident_seq(&self) -> Result<u64, StoreError> {
        let max: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM incidents", [], |r| {
                r.get(0)
            })
            .map_err(sql(&self.path, "reading the highest incident number"))?;
        Ok(max.max(0) as u64 + 1)
    }

    /// Writes everything back into the WAL-mode main file and truncates the
    /// WAL (done by SQLite on its own every 1,000 pages; useful before
    /// measuring the file or copying it).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql(&self.path, "checkpointing"))
    }

    /// Size on disk: the database file plus its WAL, bytes.
    pub fn size_on_disk(&self) -> u64 {
        let wal = {
            let mut p = self.path.clone().into_os_string();
            p.push("-wal");
            PathBuf::from(p)
        };
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        let path = &self.path;
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql(path, "setting the busy timeout"))?;
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sql(path, "switching to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // In-memory databases answer `memory`; files always take WAL.
            tracing::warn!(path = %path.display(), mode, "incident store not in WAL mode");
        }
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql(path, "setting synchronous=NORMAL"))?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(sql(path, "enabling foreign keys"))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let found = self.version()?;
        let supported = schema::current_version();
        if found > supported {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        for (i, script) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            let path = &self.path;
            let tx = self
                .conn
                .transaction()
                .map_err(sql(path, "starting a migration"))?;
            tx.execute_batch(script)
                .map_err(sql(path, "applying a migration"))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(sql(path, "recording the schema version"))?;
            tx.commit().map_err(sql(path, "committing a migration"))?;
            tracing::info!(path = %path.display(), version = i + 1, "incident store migrated");
        }
        Ok(())
    }

    /// Marks every `started` execution `interrupted` and records every
    /// allowed step with no execution as `abandoned`; returns them all.
    fn recover(&mut self) -> Result<Vec<ActionRecord>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&path, "starting recovery"))?;
        let mut found = read::executions_where(&tx, &path, "state = 'started'", [])?;
        tx.execute(
            "UPDATE executions SET state = 'interrupted' WHERE state = 'started'",
            [],
        )
        .map_err(sql(&path, "marking interrupted actions"))?;
        for record in &mut found {
            record.state = ExecutionState::Interrupted;
            tracing::warn!(
                key = %record.key, action = %record.summary, started_ms = record.started_ms,
                "action begun by an earlier run never finished: marked interrupted, not re-run"
            );
        }
        // Allowed steps with no execution at all. The key is attempt 1's
        // (`ActionKey`'s Display): the attempt that never began is the one
        // that must not begin late.
        const NEVER_BEGUN: &str = "FROM actions a WHERE a.allowed AND NOT EXISTS (
                SELECT 1 FROM executions e WHERE e.incident_id = a.incident_id AND e.step = a.step)";
        let abandoned: Vec<(String, i64, String, i64)> = tx
            .prepare(&format!(
                "SELECT a.incident_id, a.step, a.summary, a.planned_ms {NEVER_BEGUN}
                 ORDER BY a.incident_id, a.step"
            ))
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .map_err(sql(&path, "finding abandoned actions"))?;
        tx.execute(
            &format!(
                "INSERT INTO executions (key, incident_id, step, attempt, summary, state, started_ms)
                 SELECT a.incident_id || '/step-' || a.step || '/attempt-1', a.incident_id,
                     a.step, 1, a.summary, 'abandoned', a.planned_ms {NEVER_BEGUN}"
            ),
            [],
        )
        .map_err(sql(&path, "marking abandoned actions"))?;
        for (incident, step, summary, planned_ms) in abandoned {
            let record = ActionRecord {
                key: ActionKey::new(incident, step.max(0) as usize, 1),
                summary,
                state: ExecutionState::Abandoned,
                started_ms: planned_ms,
                finished_ms: None,
                result: None,
            };
            tracing::warn!(
                key = %record.key, action = %record.summary,
                "action allowed by an earlier run was never begun: marked abandoned, not run"
            );
            found.push(record);
        }
        tx.commit().map_err(sql(&path, "committing recovery"))?;
        Ok(found)
    }
}

/// Maps a SQLite error to a [`StoreError`] naming the file and the step.
fn sql<'a>(path: &'a Path, doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        doing,
        source,
    }
}
