//! The incident store: incidents, anomalies, actions and their outcomes,
//! durable across restarts and crashes of heal.
//!
//! Two backends hold the same schema and run the same statements: a SQLite
//! file (the embedded default, [`sqlite`]) and a PostgreSQL database (when
//! one heal is not enough, [`postgres`]); `--db postgres://...` picks the
//! second ([`Location`]). What a caller handles is backend-neutral and lives
//! at this level ([`Store`], the idempotency [`ActionKey`], [`ActionRecord`],
//! [`IncidentFilter`] and [`IncidentPage`], the learning-from-outcomes
//! [`Mark`]s, [`StoreError`]), and the engine never sees the store at all:
//! it lives in `remediate`, below this crate, and the application writes
//! what the engine did.
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
//! `heal watch` writes. PostgreSQL's commits survive a power cut of the
//! server by default.
//!
//! # Layout
//!
//! - `db.rs`: [`Db`](db), one connection to either database: the values,
//!   rows, transactions and placeholders both dialects share.
//! - `backend.rs`: [`Store`] on either backend, opening it, and what an
//!   open settles (an earlier run's unfinished actions, per writer).
//! - `write.rs`: incidents as the engine holds them (upserted whole, so the
//!   last snapshot wins), the event log, and the two-phase action journal.
//! - `read.rs`: an incident read back, and the paginated list with filters.
//! - `marks.rs`: learning from outcomes, the offsets and their history.
//! - `writer.rs`: [`StoreWriter`], a thread that owns the store and takes
//!   writes from async code over a bounded channel, batching what queued up
//!   into one transaction.
//! - `sqlite/`: opening a file (integrity, WAL, migrations); `postgres/`:
//!   connecting, migrations, and what only a shared database needs (the
//!   fenced journal of [`PgStore`], leases).
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
//! use remediate::action::ActionResult;
//! use store::{ActionKey, IncidentFilter, Store, StoreError};
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

mod backend;
mod db;
mod error;
mod marks;
pub mod postgres;
mod query;
mod read;
// Learning from outcomes: threshold offsets per signal and their history.
mod sensitivity;
pub mod sqlite;
#[cfg(test)]
mod tests;
mod write;
mod writer;

use std::fmt;

use remediate::action::ActionResult;
use serde::Serialize;

pub use backend::{ClosedIncident, Location, Opened, Store, CLOSED_AT_RESTART, DEFAULT_WRITER};
pub use error::StoreError;
pub use postgres::{Fence, PgStore};
pub use query::{
    Facets, IncidentFilter, IncidentPage, IncidentRecord, IncidentSummary, DEFAULT_LIMIT,
    MAX_FACET_VALUES,
};
pub use sensitivity::{
    step_offset, Adjustment, Mark, Marked, Reason as SensitivityReason, OFFSET_MAX, OFFSET_MIN,
};
pub use writer::{StoreWriter, WriterThread};

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

    pub(crate) fn parse(s: &str) -> Option<ExecutionState> {
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
    /// The process an `exec` action started (recorded right after the
    /// spawn), so that a restart after heal was killed can settle it.
    pub process: Option<ChildProcess>,
    /// For an interrupted action: how the restart settled it (its process
    /// group killed, or found gone), recorded once.
    pub settled: Option<String>,
}

/// A child process an action started: the leader of its own process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ChildProcess {
    /// Its pid, which is also its process group id.
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22, clock ticks since boot)
    /// when it could be read: tells the process apart from a later one that
    /// reused the pid.
    pub start_ticks: Option<u64>,
}

/// Whether an incident's anomaly has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Still open (or open when heal stopped: see `unresolved_at_ms`).
    Open,
    /// The anomaly ended.
    Resolved,
    /// Closed by heal at a restart: the run that held it open stopped
    /// (killed, or shut down) before its anomaly ended, and the new run does
    /// not resume it (its detectors start afresh; a fault still there opens
    /// a new incident). `IncidentRecord::closed_reason` says so.
    Closed,
}

impl IncidentStatus {
    /// The lowercase name stored, shown and accepted by filters.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Closed => "closed",
        }
    }

    /// Parses [`IncidentStatus::as_str`]'s names.
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        [
            IncidentStatus::Open,
            IncidentStatus::Resolved,
            IncidentStatus::Closed,
        ]
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
