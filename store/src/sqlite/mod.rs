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
//! begin of an action ([`crate::Store::begin_action`]), is committed with
//! `synchronous=FULL`. A busy timeout lets `heal incidents list` read while
//! `heal watch` writes.
//!
//! # Layout
//!
//! - `schema.rs`: the migrations, applied in order at open (`PRAGMA
//!   user_version` is the count applied). A file from a newer heal is
//!   refused ([`StoreError::TooNew`]).
//! - this file: opening (integrity check, WAL mode, migrations) and the
//!   [`Db`] that runs the store's statements (`crate::write`, `read`,
//!   `marks`: one copy for both backends) on a connection, each prepared
//!   once and cached by its text.

pub(crate) mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::db::{Db, Row, Val};
use crate::StoreError;

/// How long a connection waits for another one's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A SQLite file, open.
#[derive(Debug)]
pub(crate) struct Sqlite {
    conn: Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating it if missing) the file at `path` for writing:
    /// checks its integrity, switches it to WAL mode and applies the missing
    /// migrations.
    pub(crate) fn open(path: PathBuf) -> Result<Sqlite, StoreError> {
        let conn = Connection::open(&path).map_err(sql(&path, "opening"))?;
        let mut store = Sqlite { conn, path };
        store.check_integrity()?;
        store.configure()?;
        store.migrate()?;
        Ok(store)
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

    /// Opens an existing file for reading only (the report feed): no
    /// migration, no recovery, so it is safe while a `heal watch` writes it.
    pub(crate) fn open_read_only(path: PathBuf) -> Result<Sqlite, StoreError> {
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
        let store = Sqlite { conn, path };
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

    /// The connection, for tests that look under the store.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (`PRAGMA user_version`).
    pub(crate) fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql(&self.path, "reading the schema version"))
    }

    /// Writes everything back into the WAL-mode main file and truncates the
    /// WAL (done by SQLite on its own every 1,000 pages; useful before
    /// measuring the file or copying it).
    pub(crate) fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql(&self.path, "checkpointing"))
    }

    /// Size on disk: the database file plus its WAL, bytes.
    pub(crate) fn size_on_disk(&self) -> u64 {
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
}

/// Maps a SQLite error to a [`StoreError`] naming the file and the step.
fn sql<'a>(path: &'a Path, doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        doing,
        source,
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Real(x) => ToSqlOutput::Borrowed(ValueRef::Real(*x)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
        })
    }
}

fn val(v: ValueRef<'_>) -> Val {
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(x) => Val::Real(x),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

/// Statements are prepared once per connection and cached by their text.
impl Db for Sqlite {
    fn exec(&self, doing: &'static str, sql_text: &str, params: &[Val]) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(sql_text)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map(|n| n as u64)
            .map_err(sql(&self.path, doing))
    }

    fn rows(
        &self,
        doing: &'static str,
        sql_text: &str,
        params: &[Val],
    ) -> Result<Vec<Row>, StoreError> {
        self.conn
            .prepare_cached(sql_text)
            .and_then(|mut s| {
                let n = s.column_count();
                s.query_map(rusqlite::params_from_iter(params), |r| {
                    (0..n)
                        .map(|i| r.get_ref(i).map(val))
                        .collect::<rusqlite::Result<Vec<Val>>>()
                        .map(Row)
                })?
                .collect()
            })
            .map_err(sql(&self.path, doing))
    }

    fn batch(&self, doing: &'static str, sql_text: &str) -> Result<(), StoreError> {
        self.conn
            .execute_batch(sql_text)
            .map_err(sql(&self.path, doing))
    }

    fn corrupt(&self, table: &'static str, row: &str, message: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            table,
            row: row.to_owned(),
            message,
        }
    }

    fn power_cut_durable(&self, on: bool) -> Result<(), StoreError> {
        let (value, doing) = if on {
            ("FULL", "setting synchronous=FULL")
        } else {
            ("NORMAL", "setting synchronous=NORMAL")
        };
        self.conn
            .pragma_update(None, "synchronous", value)
            .map_err(sql(&self.path, doing))
    }
}
