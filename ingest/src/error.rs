//! The crate's single error type.
//!
//! Messages follow the project style: lowercase, "doing what: cause", no trailing period. Errors
//! about input files always name the file, and when the problem is in one row, the row as the
//! 1-based line number in the file (the header is line 1) and the column, so that a user can open
//! the file at that line.

use std::path::PathBuf;

/// Everything that can go wrong in `ingest`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read, written, renamed or removed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading" or "renaming temporary file to".
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// One row of an input file is malformed.
    #[error("reading {}: row {row}, column \"{column}\": {reason}", path.display())]
    BadRow {
        /// The input file.
        path: PathBuf,
        /// 1-based line number in the file (the header is line 1).
        row: u64,
        /// The column the problem is in.
        column: String,
        /// What is wrong with the cell.
        reason: String,
    },

    /// An input file is malformed as a whole: empty, missing a column, a column of the wrong
    /// type, an invalid sidecar.
    #[error("reading {}: {reason}", path.display())]
    BadFile {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Polars failed to encode or decode a Parquet file.
    #[error("{action} {}: {source}", path.display())]
    Parquet {
        /// "reading" or "writing".
        action: &'static str,
        /// The Parquet file.
        path: PathBuf,
        /// Polars' error.
        source: polars::error::PolarsError,
    },

    /// A label set in Prometheus text form (`name{a="x"}`) could not be parsed.
    #[error("parsing labels {input:?}: {reason}")]
    ParseLabels {
        /// The text that was being parsed.
        input: String,
        /// What is wrong, with the byte offset where it went wrong.
        reason: String,
    },

    /// A dataset cannot be written because it breaks one of the format's rules.
    #[error("writing {}: {reason}", path.display())]
    InvalidDataset {
        /// The destination file.
        path: PathBuf,
        /// The broken rule.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::BadFile`].
    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::BadRow`].
    pub(crate) fn bad_row(
        path: impl Into<PathBuf>,
        row: u64,
        column: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::BadRow {
            path: path.into(),
            row,
            column: column.into(),
            reason: reason.into(),
        }
    }
}
