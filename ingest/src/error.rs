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

    /// Talking to Prometheus failed.
    #[error(transparent)]
    Prometheus(#[from] PromError),
}

/// Why a request to Prometheus' HTTP API failed.
///
/// A live source treats every one of these as "no data" for that evaluation: never an anomaly,
/// never a reason to act. [`PromError::retryable`] says whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    /// The client could not be built from its configuration.
    #[error("configuring prometheus client: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },

    /// A request was not sent because its arguments make no sense (a range that ends before
    /// it starts, a step of zero, two recorded queries naming the same series).
    #[error("preparing prometheus request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },

    /// No TCP connection could be made (nothing listening, refused, unreachable, DNS).
    #[error("connecting to {url}: {reason}")]
    Connect {
        /// The request's URL.
        url: String,
        /// The cause, as reported by the HTTP stack.
        reason: String,
    },

    /// The request, answer included, took longer than the configured timeout.
    #[error("querying {url}: no complete answer within {timeout_ms} ms")]
    Timeout {
        /// The request's URL.
        url: String,
        /// The configured timeout.
        timeout_ms: u64,
    },

    /// The connection broke after it was made (reset, closed mid-answer).
    #[error("querying {url}: {reason}")]
    Transport {
        /// The request's URL.
        url: String,
        /// The cause, as reported by the HTTP stack.
        reason: String,
    },

    /// An HTTP error status without Prometheus' JSON error body (a proxy, a load balancer, a
    /// server that is not Prometheus).
    #[error("querying {url}: http status {status}: {body}")]
    Http {
        /// The request's URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (at most 512 bytes), for the log.
        body: String,
    },

    /// Prometheus answered `"status":"error"` (bad PromQL, query timeout, too many samples...),
    /// whatever the HTTP status (400, 422, 503 or even 200).
    #[error("querying {url}: prometheus error {error_type} (http status {status}): {error}")]
    Api {
        /// The request's URL.
        url: String,
        /// The HTTP status code it came with.
        status: u16,
        /// Prometheus' `errorType`: `bad_data`, `execution`, `timeout`, `canceled`,
        /// `internal`, `unavailable`, `not_found`.
        error_type: String,
        /// Prometheus' message.
        error: String,
    },

    /// The answer is not the JSON Prometheus sends, or has an unexpected shape (a string or
    /// matrix where an instant vector was asked for, a value that is not a number).
    #[error("decoding answer of {url}: {reason}")]
    Decode {
        /// The request's URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A query yielded more series than allowed, where dropping some is not acceptable
    /// (recording a dataset).
    #[error("query {query:?} yielded {got} series, more than the cap of {cap}")]
    TooManySeries {
        /// The query.
        query: String,
        /// How many series it yielded.
        got: usize,
        /// The configured cap (`max_series_per_signal`).
        cap: usize,
    },
}

impl PromError {
    /// A short, bounded name of the failure (`connect`, `timeout`, ...),
    /// for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PromError::Config { .. } => "config",
            PromError::InvalidRequest { .. } => "invalid_request",
            PromError::Connect { .. } => "connect",
            PromError::Timeout { .. } => "timeout",
            PromError::Transport { .. } => "transport",
            PromError::Http { .. } => "http",
            PromError::Api { .. } => "api",
            PromError::Decode { .. } => "decode",
            PromError::TooManySeries { .. } => "too_many_series",
        }
    }

    /// Whether trying the same request again can help: yes for connection problems, timeouts,
    /// 5xx and 429 answers and Prometheus' `timeout`, `canceled`, `internal` and `unavailable`
    /// errors; no for 4xx answers, bad queries, undecodable answers, configuration and the
    /// series cap, which a retry would only repeat.
    pub fn retryable(&self) -> bool {
        match self {
            PromError::Connect { .. } | PromError::Timeout { .. } | PromError::Transport { .. } => {
                true
            }
            PromError::Http { status, .. } => *status >= 500 || *status == 429,
            PromError::Api {
                status, error_type, ..
            } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        error_type.as_str(),
                        "timeout" | "canceled" | "internal" | "unavailable"
                    )
            }
            PromError::Config { .. }
            | PromError::InvalidRequest { .. }
            | PromError::Decode { .. }
            | PromError::TooManySeries { .. } => false,
        }
    }
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
    /// Polars failed to read a Parquet file. Its message is kept when it
    /// reads as a sentence; a `Debug` dump of the Thrift decoder's error
    /// (`parquet error: Error { source_location: ... }`, what a corrupt
    /// footer gives) becomes a sentence naming what failed to decode.
    pub(crate) fn parquet_reading(path: &std::path::Path, source: polars::error::PolarsError) -> Self {
        let message = source.to_string();
        if !message.contains("Error {") && !message.contains("InvalidByte(") {
            return Error::Parquet {
                action: "reading",
                path: path.to_path_buf(),
                source,
            };
        }
        // Pull what is readable out of the dump: the error kind and where.
        let field = |name: &str| {
            let at = message.find(&format!("{name}: "))? + name.len() + 2;
            let rest = &message[at..];
            let end = rest.find([',', ' ', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim_matches('"').to_owned())
        };
        let detail = match (field("error_kind"), field("type_"), field("byte_offset")) {
            (Some(kind), Some(ty), Some(offset)) => {
                format!(" ({kind} in its {ty} entry at byte {offset} of the footer)")
            }
            _ if message.contains("ARROW:schema") => {
                " (the Arrow schema stored in its metadata does not decode)".to_owned()
            }
            _ => String::new(),
        };
        Error::bad_file(
            path,
            format!("not a valid Parquet file (corrupt?): its metadata does not decode{detail}"),
        )
    }

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

/// An atomic write's failure (`stdx::Staged`), as the dataset writer's
/// I/O error naming the step and the file.
impl From<stdx::AtomicWriteError> for Error {
    fn from(e: stdx::AtomicWriteError) -> Error {
        Error::io(e.doing, e.path, e.source)
    }
}
