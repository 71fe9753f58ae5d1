//! The SQLite backend of the incident store: incidents, anomalies, actions
//! and their outcomes in one SQLite file, durable across restarts and
//! crashes of heal.
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
//! - `marks.rs`: learning from outcomes, the offsets and their history.
//! - `writer.rs`: [`StoreWriter`], a thread that owns the store and takes
//!   writes from async code over a bounded channel, batching what queued up
//!   into one transaction.

mod marks;
mod read;
pub(crate) mod schema;
mod write;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{ActionKey, ActionRecord, ExecutionState, StoreError};

pub use writer::{StoreWriter, WriterThread};

/// How long a connection waits for another one's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The durable record of what heal saw and did. See the module docs.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// An incident an earlier run left open, closed at this open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedIncident {
    /// Its id.
    pub id: String,
    /// Its rule.
    pub rule: String,
    /// Its series, as a selector.
    pub selector: String,
}

/// The reason recorded on an incident closed at open (status `closed`).
pub const CLOSED_AT_RESTART: &str = "closed at restart: the heal run that opened it stopped (killed or shut down) before its anomaly ended; not resumed, a fault still present opens a new incident";

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
    /// Incidents an earlier run left `open`, now `closed` with
    /// [`CLOSED_AT_RESTART`] as their reason: never left open beside a new
    /// incident of the same series and rule.
    pub closed: Vec<ClosedIncident>,
}

impl Store {
    /// Opens (creating it if missing) the store at `path` for writing:
    /// checks its integrity (a damaged file is refused before anything is
    /// written to it, [`StoreError::Damaged`]), applies missing migrations,
    /// then marks every action an earlier run began but never finished as
    /// interrupted and returns those, and closes the incidents it left open.
    ///
    /// One writer per file: two heal processes writing the same store would
    /// each take the other's running actions for interrupted ones.
    pub fn open(path: impl AsRef<Path>) -> Result<Opened, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(sql(&path, "opening"))?;
        let mut store = Store { conn, path };
        store.check_integrity()?;
        store.configure()?;
        store.migrate()?;
        let interrupted = store.recover()?;
        let closed = store.close_left_open()?;
        Ok(Opened {
            store,
            interrupted,
            closed,
        })
    }

    /// `PRAGMA integrity_check` before the first write (even the switch to
    /// WAL mode writes the header): a file SQLite finds damaged is refused,
    /// with SQLite's first findings, and never written into.
    ///
    /// Why the full check rather than `quick_check`: a byte flip in an index
    /// page that leaves the page well-formed passes `quick_check` (it does
    /// not compare an index with its table) and fails `integrity_check`; of
    /// twelve such damaged copies in the store's test, `quick_check` let
    /// some through. The full check reads every page and every index once:
    /// linear in the file's size, paid once per open for writing.
    fn check_integrity(&self) -> Result<(), StoreError> {
        let damaged = |problems: String| StoreError::Damaged {
            path: self.path.clone(),
            problems,
        };
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql(&self.path, "setting the busy timeout"))?;
        let found: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check(5)")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(|e| match e {
                // Busy or locked is not damage: say what SQLite said.
                rusqlite::Error::SqliteFailure(f, _)
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) =>
                {
                    StoreError::Sqlite {
                        path: self.path.clone(),
                        doing: "checking integrity",
                        source: e,
                    }
                }
                other => damaged(other.to_string()),
            })?;
        if found.len() == 1 && found[0] == "ok" {
            Ok(())
        } else {
            Err(damaged(found.join("; ")))
        }
    }

    /// Closes every incident an earlier run left `open` (status `closed`,
    /// reason [`CLOSED_AT_RESTART`]) and returns them. This run's engine
    /// starts without them, so left open they would stay open for ever,
    /// beside the new incident a fault still present opens.
    fn close_left_open(&mut self) -> Result<Vec<ClosedIncident>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&path, "starting to close incidents left open"))?;
        let closed: Vec<ClosedIncident> = tx
            .prepare("SELECT id, rule, selector FROM incidents WHERE status = 'open' ORDER BY pk")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(ClosedIncident {
                        id: r.get(0)?,
                        rule: r.get(1)?,
                        selector: r.get(2)?,
                    })
                })?
                .collect()
            })
            .map_err(sql(&path, "finding incidents left open"))?;
        tx.execute(
            "UPDATE incidents SET status = 'closed', closed_reason = ?1 WHERE status = 'open'",
            [CLOSED_AT_RESTART],
        )
        .map_err(sql(&path, "closing incidents left open"))?;
        tx.commit()
            .map_err(sql(&path, "committing the incidents closed"))?;
        for c in &closed {
            tracing::warn!(incident = %c.id, rule = %c.rule, series = %c.selector, "incident left open by an earlier run: closed");
        }
        Ok(closed)
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
        store.check_integrity()?;
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
                process: None,
                settled: None,
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
