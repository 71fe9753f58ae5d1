//! [`Store`]: the incident store on either backend, and what opening it
//! for writing settles (what an earlier run of the same writer left
//! unfinished).
//!
//! Where it is: a `--db` that reads `postgres://...` (or `postgresql://`)
//! is a PostgreSQL database, anything else a SQLite file
//! ([`Location::of`]). Everything above the connection (every statement
//! of `write.rs`, `read.rs`, `marks.rs`, and recovery here) is one copy,
//! run by both (`db.rs`).
//!
//! # Writers
//!
//! A SQLite file has one writer (`heal watch` or `heal replay`). A
//! PostgreSQL database may be shared: by several remediate members
//! (whose journal rows `PgStore` writes) and by a `heal watch`. So each
//! writer has a name ([`Store::open_as`]; `heal` by default), recorded on
//! the incidents it writes and the actions it begins, and recovery at
//! open settles only its own: another writer's running action is not
//! this one's to call interrupted. Rows written before writers had names
//! (SQLite files of older heals) have none and are settled by whoever
//! opens the file, as before.

use std::path::{Path, PathBuf};

use crate::db::{in_transaction, vals, Db};
use crate::postgres::Pg;
use crate::read::executions_where;
use crate::sqlite::Sqlite;
use crate::{ActionKey, ActionRecord, ExecutionState, StoreError};

/// The name a writer gets when none is given.
pub const DEFAULT_WRITER: &str = "heal";

/// Where a store is: a SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Location {
    /// `postgres://...` and `postgresql://...` are PostgreSQL; anything
    /// else is a file path.
    pub fn of(db: impl AsRef<Path>) -> Location {
        let db = db.as_ref();
        match db.to_str() {
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                Location::Postgres(s.to_owned())
            }
            _ => Location::File(db.to_path_buf()),
        }
    }
}

impl std::fmt::Display for Location {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => f.write_str(&crate::postgres::redact(url)),
        }
    }
}

/// The connection a store holds.
#[derive(Debug)]
pub(crate) enum Backend {
    Sqlite(Sqlite),
    Postgres(Box<Pg>),
}

/// The durable record of what heal saw and did. See the crate's docs.
#[derive(Debug)]
pub struct Store {
    pub(crate) backend: Backend,
    /// Whose incidents and begins these are (`None`: a SQLite file's one
    /// writer, which records no name).
    pub(crate) writer: Option<String>,
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
    pub(crate) fn db(&self) -> &dyn Db {
        match &self.backend {
            Backend::Sqlite(s) => s,
            Backend::Postgres(p) => p.as_ref(),
        }
    }

    /// Opens (creating it if missing) the store at `db` for writing, as
    /// the writer [`DEFAULT_WRITER`]. A SQLite file's integrity is checked
    /// first (a damaged file is refused before anything is written to it,
    /// [`StoreError::Damaged`]); missing migrations are applied; then every
    /// action this writer began but never finished is marked interrupted
    /// and returned, and the incidents it left open are closed.
    ///
    /// One writer per name: two heal processes writing as the same writer
    /// would each take the other's running actions for interrupted ones.
    pub fn open(db: impl AsRef<Path>) -> Result<Opened, StoreError> {
        Store::open_as(db, DEFAULT_WRITER)
    }

    /// [`Store::open`] as the writer `writer` (a PostgreSQL database only;
    /// a SQLite file has one writer and records no name).
    pub fn open_as(db: impl AsRef<Path>, writer: &str) -> Result<Opened, StoreError> {
        let mut store = Store::open_writable(db.as_ref(), writer, true)?;
        let interrupted = store.recover()?;
        let closed = store.close_left_open()?;
        Ok(Opened {
            store,
            interrupted,
            closed,
        })
    }

    /// Opens the store for writing incidents as `writer` without settling
    /// anything: a remediate member's, whose steps the fenced journal
    /// ([`crate::PgStore`]) and its partitions' next holder settle.
    pub fn open_shared(db: impl AsRef<Path>, writer: &str) -> Result<Store, StoreError> {
        Store::open_writable(db.as_ref(), writer, true)
    }

    /// Opens an existing store for marks (`heal incidents mark|missed`, and
    /// watch's API): applies missing migrations but, unlike
    /// [`Store::open`], marks nothing interrupted, so it is safe while a
    /// `heal watch` writes the same store.
    pub fn open_for_marks(db: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_writable(db.as_ref(), DEFAULT_WRITER, false)
    }

    fn open_writable(db: &Path, writer: &str, create: bool) -> Result<Store, StoreError> {
        Ok(match Location::of(db) {
            Location::File(path) => {
                if !create && !path.exists() {
                    return Err(StoreError::Missing(path));
                }
                Store {
                    backend: Backend::Sqlite(Sqlite::open(path)?),
                    writer: None,
                }
            }
            Location::Postgres(url) => Store {
                backend: Backend::Postgres(Box::new(Pg::open(&url)?)),
                writer: Some(writer.to_owned()),
            },
        })
    }

    /// Opens an existing store for reading only (the report feed): no
    /// migration, no recovery, so it is safe while a `heal watch` writes it.
    pub fn open_read_only(db: impl AsRef<Path>) -> Result<Store, StoreError> {
        Ok(Store {
            backend: match Location::of(db) {
                Location::File(path) => Backend::Sqlite(Sqlite::open_read_only(path)?),
                Location::Postgres(url) => Backend::Postgres(Box::new(Pg::open_read_only(&url)?)),
            },
            writer: None,
        })
    }

    /// Where the store is: the file, or the URL without its password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path().display().to_string(),
            Backend::Postgres(p) => p.url().to_owned(),
        }
    }

    /// How many times the store connected again after losing its
    /// connection (PostgreSQL; always 0 for a file).
    pub fn reconnects(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(_) => 0,
            Backend::Postgres(p) => p.reconnects(),
        }
    }

    /// The schema version of the store (SQLite's `PRAGMA user_version`,
    /// PostgreSQL's `heal_schema`).
    pub fn version(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.version(),
            Backend::Postgres(p) => p.version(),
        }
    }

    /// Writes everything back into a SQLite file's main file and truncates
    /// the WAL (done by SQLite on its own every 1,000 pages; useful before
    /// measuring the file or copying it). Nothing to do on PostgreSQL.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.checkpoint(),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Size on disk of a SQLite store: the database file plus its WAL,
    /// bytes; `None` on PostgreSQL (the server's to tell).
    pub fn size_on_disk(&self) -> Option<u64> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s.size_on_disk()),
            Backend::Postgres(_) => None,
        }
    }

    /// The number the next incident should get so that ids stay unique
    /// across restarts: one more than the highest `inc-NNNNNN` stored (1 for
    /// an empty store). Give it to `Engine::continue_numbering_from`.
    pub fn next_incident_seq(&self) -> Result<u64, StoreError> {
        let max = self
            .db()
            .row(
                "reading the highest incident number",
                "SELECT COALESCE(MAX(seq), 0) FROM incidents",
                &[],
            )?
            .map(|r| r.i64(0))
            .transpose()
            .map_err(|m| self.db().corrupt("incidents", "max(seq)", m))?
            .unwrap_or(0);
        Ok(max.max(0) as u64 + 1)
    }

    /// Which rows are this writer's: named by it, or written before
    /// writers had names. `?1` is the writer (NULL for SQLite's).
    const MINE: &'static str = "(writer IS NULL OR writer = ?1)";

    /// Closes every incident this writer's earlier run left `open` (status
    /// `closed`, reason [`CLOSED_AT_RESTART`]) and returns them. This run's
    /// engine starts without them, so left open they would stay open for
    /// ever, beside the new incident a fault still present opens.
    fn close_left_open(&mut self) -> Result<Vec<ClosedIncident>, StoreError> {
        let writer = self.writer.clone();
        let closed = in_transaction(self.db(), "closing incidents left open", |db| {
            let closed = crate::db::decoded(
                db,
                "finding incidents left open",
                "incidents",
                &format!(
                    "SELECT id, rule, selector FROM incidents WHERE status = 'open' AND {}
                     ORDER BY pk",
                    Store::MINE
                ),
                vals![writer.clone()],
                |r| {
                    Ok(ClosedIncident {
                        id: r.text(0)?,
                        rule: r.text(1)?,
                        selector: r.text(2)?,
                    })
                },
            )?;
            db.exec(
                "closing incidents left open",
                &format!(
                    "UPDATE incidents SET status = 'closed', closed_reason = ?2
                     WHERE status = 'open' AND {}",
                    Store::MINE
                ),
                vals![writer.clone(), CLOSED_AT_RESTART],
            )?;
            Ok(closed)
        })?;
        for c in &closed {
            tracing::warn!(incident = %c.id, rule = %c.rule, series = %c.selector, "incident left open by an earlier run: closed");
        }
        Ok(closed)
    }

    /// Marks every `started` execution this writer began `interrupted` and
    /// records every allowed step of its incidents with no execution as
    /// `abandoned`; returns them all.
    fn recover(&mut self) -> Result<Vec<ActionRecord>, StoreError> {
        let writer = self.writer.clone();
        in_transaction(self.db(), "recovering unfinished actions", |db| {
            let begun_by_me = "state = 'started' AND (begun_by IS NULL OR begun_by = ?1)";
            let mut found = executions_where(db, begun_by_me, vals![writer.clone()])?;
            db.exec(
                "marking interrupted actions",
                &format!("UPDATE executions SET state = 'interrupted' WHERE {begun_by_me}"),
                vals![writer.clone()],
            )?;
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
            let never_begun = "FROM actions a JOIN incidents i ON i.id = a.incident_id
                 WHERE a.allowed AND (i.writer IS NULL OR i.writer = ?1) AND NOT EXISTS (
                    SELECT 1 FROM executions e WHERE e.incident_id = a.incident_id AND e.step = a.step)";
            let abandoned = crate::db::decoded(
                db,
                "finding abandoned actions",
                "actions",
                &format!(
                    "SELECT a.incident_id, a.step, a.summary, a.planned_ms {never_begun}
                     ORDER BY a.incident_id, a.step"
                ),
                vals![writer.clone()],
                |r| {
                    Ok(ActionRecord {
                        key: ActionKey::new(r.text(0)?, r.i64(1)?.max(0) as usize, 1),
                        summary: r.text(2)?,
                        state: ExecutionState::Abandoned,
                        started_ms: r.i64(3)?,
                        finished_ms: None,
                        result: None,
                        process: None,
                        settled: None,
                    })
                },
            )?;
            db.exec(
                "marking abandoned actions",
                &format!(
                    "INSERT INTO executions (key, incident_id, step, attempt, summary, state,
                         started_ms, begun_by)
                     SELECT a.incident_id || '/step-' || a.step || '/attempt-1', a.incident_id,
                         a.step, 1, a.summary, 'abandoned', a.planned_ms, ?1 {never_begun}"
                ),
                vals![writer.clone()],
            )?;
            for record in abandoned {
                tracing::warn!(
                    key = %record.key, action = %record.summary,
                    "action allowed by an earlier run was never begun: marked abandoned, not run"
                );
                found.push(record);
            }
            Ok(found)
        })
    }
}
