//! Errors of the incident store.

use std::path::PathBuf;

use crate::ActionKey;

/// What can go wrong with the incident store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation (I/O error, corrupt file, disk full, ...).
    #[error("incident store {path}: {doing}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the store was doing, lowercase.
        doing: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer heal: its schema has migrations
    /// this heal does not know, so reading or writing it could corrupt it.
    #[error(
        "incident store {path}: schema version {found} is newer than this heal supports ({supported}); upgrade heal or use another --db"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this heal knows.
        supported: i64,
    },
    /// A read-only open found a store older than this heal and will not
    /// migrate it (only a writer does).
    #[error(
        "incident store {path}: schema version {found} is older than this heal's ({supported}); open it once with `heal watch --db` or `heal replay --db` to migrate it"
    )]
    TooOld {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The version this heal writes.
        supported: i64,
    },
    /// SQLite's integrity check failed (or the file is not a database):
    /// the store is refused before anything is written into it.
    #[error(
        "incident store {path}: damaged, refusing to open it (SQLite integrity_check: {problems}); nothing was written to it: move it aside or restore a copy, and start with a new --db"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// SQLite's first findings.
        problems: String,
    },
    /// A read-only open of a file that does not exist.
    #[error("incident store {0}: no such file")]
    Missing(PathBuf),
    /// `begin_action` with a key already recorded: the action was begun
    /// before (maybe by a heal that was killed since) and must not run twice.
    #[error("action {key}: already recorded ({state}); not running it again")]
    DuplicateAction {
        /// The idempotency key.
        key: ActionKey,
        /// What the store holds for it: `started`, `finished`, `interrupted`
        /// or `abandoned`.
        state: String,
    },
    /// `finish_action` with a key that was never begun, or was already
    /// finished or marked interrupted or abandoned.
    #[error("action {key}: cannot finish: {why}")]
    NotInFlight {
        /// The idempotency key.
        key: ActionKey,
        /// Why, lowercase.
        why: String,
    },
    /// A row holds something this heal cannot decode (a value written by
    /// hand or by a buggy version).
    #[error("incident store {path}: {table} row {row}: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Table of the row.
        table: &'static str,
        /// Key of the row.
        row: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// PostgreSQL refused an operation or could not be reached.
    #[error("incident store {url}: {doing}: {}", postgres_reason(.source))]
    Postgres {
        /// The connection URL, its password replaced by `***`.
        url: String,
        /// What the store was doing, lowercase.
        doing: &'static str,
        /// The client's error.
        source: postgres::Error,
    },
    /// The PostgreSQL database was migrated by a newer heal.
    #[error(
        "incident store {url}: schema version {found} is newer than this heal supports ({supported}); upgrade heal or use another --db"
    )]
    PostgresTooNew {
        /// The connection URL, its password replaced by `***`.
        url: String,
        /// `heal_schema.version`.
        found: i64,
        /// The newest version this heal knows.
        supported: i64,
    },
    /// A PostgreSQL row holds something this heal cannot decode.
    #[error("incident store {url}: {table} row {row}: {message}")]
    PostgresCorrupt {
        /// The connection URL, its password replaced by `***`.
        url: String,
        /// Table of the row.
        table: &'static str,
        /// Key of the row.
        row: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// `begin_action` with a stale fence: another member has claimed the
    /// group key since this one did, so this one must not act on it.
    #[error(
        "action {key}: fenced: group {group_key:?} was claimed again (epoch {}, by {}) after this member's claim (epoch {epoch}); not running it",
        current.map_or_else(|| "none".to_owned(), |c| c.to_string()),
        owner.as_deref().unwrap_or("nobody")
    )]
    Fenced {
        /// The idempotency key.
        key: ActionKey,
        /// The group key the fence is for.
        group_key: String,
        /// The fence's epoch.
        epoch: i64,
        /// The key's epoch now (`None`: never claimed).
        current: Option<i64>,
        /// Who claimed it last.
        owner: Option<String>,
    },
    /// An incident snapshot whose id another writer's incident has (two
    /// writers numbering incidents on one shared database): not written,
    /// the other's kept.
    #[error(
        "incident {id}: another writer's incident has this id; not overwritten (writer {})",
        writer.as_deref().unwrap_or("of the file")
    )]
    IncidentOfAnotherWriter {
        /// The incident id.
        id: String,
        /// The writer that tried.
        writer: Option<String>,
    },
    /// A value could not be written as JSON.
    #[error("incident store: cannot encode {what} as JSON: {message}")]
    Encode {
        /// What was written.
        what: &'static str,
        /// serde_json's error.
        message: String,
    },
    /// A list cursor that no list returned.
    #[error("bad cursor {0:?}: expected the next_cursor of a previous page")]
    BadCursor(String),
    /// The background writer has stopped (its thread ended or panicked).
    #[error("incident store writer has stopped")]
    WriterGone,
    /// The background writer could not start or lost a batch.
    #[error("incident store writer: {0}")]
    Writer(String),
}

/// What PostgreSQL said, in full: the client's own `Display` of a server
/// error is only "db error", which tells an operator nothing.
fn postgres_reason(e: &postgres::Error) -> String {
    use std::error::Error as _;
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            out.push_str(&format!(" ({detail})"));
        }
        return out;
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
