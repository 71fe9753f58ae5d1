//! One way to talk to either database: what the store's reads and writes
//! (`write.rs`, `read.rs`, `marks.rs`, `recover.rs`) are written against,
//! so that SQLite and PostgreSQL run the same statements and share one
//! copy of every query.
//!
//! Statements are written once, in the SQL both dialects accept: numbered
//! placeholders `?1`, `?2` (PostgreSQL's `$1`, `$2` are made from them,
//! see [`numbered_for_postgres`]), `ON CONFLICT ... DO UPDATE SET x =
//! excluded.x`, `RETURNING`, quoted identifiers where a name is reserved
//! in one of them (`"offset"`). A value is a [`Val`], bound by each
//! backend in its own types: a [`Val::Bool`] is 0/1 for SQLite's flag
//! columns and a `BOOLEAN` for PostgreSQL's, an integer goes into whatever
//! integer width the column has.
//!
//! Transactions and savepoints are plain statements (`BEGIN`, `SAVEPOINT
//! op`, ...), which both accept, so a caller holds one connection for the
//! whole of a batch (see [`in_transaction`]).

use std::fmt;

use crate::StoreError;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Null => f.write_str("NULL"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Real(x) => write!(f, "{x}"),
            Val::Text(s) => f.write_str(s),
            Val::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(i64::from(v))
    }
}
impl From<usize> for Val {
    fn from(v: usize) -> Val {
        Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Real(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Bool(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_owned())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// `vals![a, b, c]`: the values of a statement's placeholders, in order.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::db::Val::from($v)),*] as &[$crate::db::Val] };
}
pub(crate) use vals;

/// One row read back: its values by column, in the `SELECT`'s order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Val>);

/// Why a column did not decode, for [`StoreError::Corrupt`]'s message.
pub(crate) type ColumnError = String;

impl Row {
    fn at(&self, i: usize) -> Result<&Val, ColumnError> {
        self.0
            .get(i)
            .ok_or_else(|| format!("column {i}: missing (the row has {})", self.0.len()))
    }

    fn wrong(&self, i: usize, want: &str) -> ColumnError {
        format!("column {i}: expected {want}, found {:?}", self.0.get(i))
    }

    /// An integer (SQLite's INTEGER, PostgreSQL's BIGINT and narrower).
    pub(crate) fn i64(&self, i: usize) -> Result<i64, ColumnError> {
        self.opt_i64(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>, ColumnError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    /// A real (an integer is taken as one: SQLite may store `1.0` as 1).
    pub(crate) fn f64(&self, i: usize) -> Result<f64, ColumnError> {
        self.opt_f64(i)?.ok_or_else(|| self.wrong(i, "a number"))
    }

    pub(crate) fn opt_f64(&self, i: usize) -> Result<Option<f64>, ColumnError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Real(v) => Ok(Some(*v)),
            Val::Int(v) => Ok(Some(*v as f64)),
            _ => Err(self.wrong(i, "a number")),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, ColumnError> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, ColumnError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.wrong(i, "text")),
        }
    }

    /// A flag: PostgreSQL's BOOLEAN, SQLite's 0/1.
    pub(crate) fn bool(&self, i: usize) -> Result<bool, ColumnError> {
        self.opt_bool(i)?.ok_or_else(|| self.wrong(i, "a flag"))
    }

    pub(crate) fn opt_bool(&self, i: usize) -> Result<Option<bool>, ColumnError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Bool(v) => Ok(Some(*v)),
            Val::Int(v) => Ok(Some(*v != 0)),
            _ => Err(self.wrong(i, "a flag")),
        }
    }
}

/// A connection to one of the store's databases. Errors come back as
/// [`StoreError`]s that name the database (file or URL) and `doing`.
pub(crate) trait Db {
    /// Runs one statement; returns how many rows it changed.
    fn exec(&self, doing: &'static str, sql: &str, params: &[Val]) -> Result<u64, StoreError>;

    /// Runs one query (or a statement with `RETURNING`); returns its rows.
    fn rows(&self, doing: &'static str, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;

    /// Runs statements that take no parameters (`BEGIN`, `SAVEPOINT op`).
    fn batch(&self, doing: &'static str, sql: &str) -> Result<(), StoreError>;

    /// The error for a row that holds what this heal cannot decode.
    fn corrupt(&self, table: &'static str, row: &str, message: String) -> StoreError;

    /// Makes the commits that follow durable through a power cut (`true`)
    /// or only through a crash of heal (`false`, the default). SQLite's
    /// `synchronous`; PostgreSQL's commits are always the former.
    fn power_cut_durable(&self, _on: bool) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the connection is gone (a server restarted or cut off):
    /// what failed may succeed once connected again.
    fn lost(&self) -> bool {
        false
    }

    /// The first row, if any.
    fn row(
        &self,
        doing: &'static str,
        sql: &str,
        params: &[Val],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(doing, sql, params)?.into_iter().next())
    }
}

/// Rows of `sql` decoded by `decode`; a row that does not decode is a
/// [`StoreError::Corrupt`] naming `table` and the row's first column.
pub(crate) fn decoded<T>(
    db: &dyn Db,
    doing: &'static str,
    table: &'static str,
    sql: &str,
    params: &[Val],
    decode: impl Fn(&Row) -> Result<T, ColumnError>,
) -> Result<Vec<T>, StoreError> {
    db.rows(doing, sql, params)?
        .iter()
        .map(|r| {
            decode(r).map_err(|m| {
                let key = r.0.first().map_or_else(String::new, ToString::to_string);
                db.corrupt(table, &key, m)
            })
        })
        .collect()
}

/// Runs `f` in one transaction: committed when it returns `Ok`, rolled
/// back when it returns an error (which is returned).
pub(crate) fn in_transaction<T>(
    db: &dyn Db,
    doing: &'static str,
    f: impl FnOnce(&dyn Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    db.batch(doing, "BEGIN")?;
    match f(db) {
        Ok(v) => {
            db.batch(doing, "COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            // The error that matters is `e`; a failed rollback (the
            // connection is gone) leaves nothing committed either.
            let _ = db.batch(doing, "ROLLBACK");
            Err(e)
        }
    }
}

/// `sql` with SQLite's placeholders (`?1`, or `?` numbered in order) as
/// PostgreSQL's (`$1`). Text inside single quotes is left alone.
pub(crate) fn numbered_for_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    let mut bare = 0;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
        } else if c == '?' && !quoted {
            out.push('$');
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            if digits.is_empty() {
                bare += 1;
                out.push_str(&bare.to_string());
            } else {
                out.push_str(&digits);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_postgres_numbers_outside_quotes() {
        assert_eq!(
            numbered_for_postgres("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?x'"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?x'"
        );
        assert_eq!(
            numbered_for_postgres("x = ? AND (y, z) < (?, ?)"),
            "x = $1 AND (y, z) < ($2, $3)"
        );
    }

    #[test]
    fn rows_decode_flags_and_numbers_from_either_dialect() {
        let r = Row(vec![Val::Int(1), Val::Bool(false), Val::Int(3), Val::Null]);
        assert!(r.bool(0).unwrap());
        assert!(!r.bool(1).unwrap());
        assert_eq!(r.f64(2).unwrap(), 3.0);
        assert_eq!(r.opt_text(3).unwrap(), None);
        assert!(r.text(0).unwrap_err().contains("expected text"));
        assert!(r.i64(9).unwrap_err().contains("missing"));
    }
}
