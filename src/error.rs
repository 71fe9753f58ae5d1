//! The application's error: what a command of heal can fail with, sorted by
//! what the caller does about it (the binary turns it into an exit code:
//! [`Error::is_usage`] is 64, [`Error::Unavailable`] 69, anything else 1).
//!
//! The crates below have their own error enums ([`store::StoreError`],
//! [`ingest::Error`], [`remediate::RunbookErrors`], ...); this one wraps
//! them and adds what only the application knows: bad input given to a
//! command, a program that is missing, and a failed step with what heal
//! was doing ([`Context`]). It carries no HTTP status: only `api` maps
//! errors to statuses.

use std::fmt;

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a command of heal can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input or configuration is wrong (exit code 64, `EX_USAGE`).
    #[error("{0}")]
    Usage(String),
    /// A program or service heal needs is not there, with how to get it
    /// (exit code 69, `EX_UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// A runbook directory or parameter file has problems (exit code 64);
    /// every one is listed.
    #[error(transparent)]
    Runbooks(#[from] remediate::RunbookErrors),
    /// The incident store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A dataset could not be read or written.
    #[error(transparent)]
    Dataset(#[from] ingest::Error),
    /// Prometheus could not be asked.
    #[error(transparent)]
    Prometheus(#[from] ingest::PromError),
    /// A mark was refused (a usage error when the user gave something
    /// wrong).
    #[error(transparent)]
    Mark(#[from] crate::marks::MarkError),
    /// The lab failed.
    #[error(transparent)]
    Lab(#[from] lab::Error),
    /// A scale-out role (Kafka) failed (boxed: librdkafka's error is large).
    #[error(transparent)]
    Scale(Box<crate::scale::ScaleError>),
    /// A file or socket operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON could not be written or read.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An atomic write failed.
    #[error(transparent)]
    Write(#[from] stdx::AtomicWriteError),
    /// A step failed: what heal was doing, and why (the cause is the
    /// error's source, so `{:#}` prints `doing: cause`).
    #[error("{doing}")]
    Failed {
        /// What heal was doing, lowercase.
        doing: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A step failed for a reason that is only a message.
    #[error("{0}")]
    Message(String),
}

/// The application's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failure described by a message only.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error::Message(message.to_string())
    }

    /// This error as the cause of a failure while doing `doing`.
    pub fn context(self, doing: impl Into<String>) -> Error {
        Error::Failed {
            doing: doing.into(),
            source: Box::new(self),
        }
    }

    /// Whether the error is the user's input or configuration (exit code
    /// 64), wherever it sits in the chain.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Runbooks(_) => true,
            Error::Mark(e) => e.is_usage(),
            Error::Store(e) => matches!(
                e,
                store::StoreError::Missing(_)
                    | store::StoreError::TooNew { .. }
                    | store::StoreError::Damaged { .. }
                    | store::StoreError::TooOld { .. }
                    | store::StoreError::BadCursor(_)
            ),
            Error::Failed { source, .. } => {
                source.downcast_ref::<Error>().is_some_and(Error::is_usage)
            }
            _ => false,
        }
    }

    /// Whether a program or service heal needs is missing (exit code 69).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Failed { source, .. } => source
                .downcast_ref::<Error>()
                .is_some_and(Error::is_unavailable),
            _ => false,
        }
    }
}

/// Adds what heal was doing to an error (anyhow's `Context`, typed).
pub trait Context<T> {
    /// The error becomes the source of [`Error::Failed`] with `doing`.
    fn context(self, doing: impl Into<String>) -> Result<T>;
    /// The same, `doing` computed only on failure.
    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, doing: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Failed {
            doing: doing.into(),
            source: Box::new(e),
        })
    }

    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Failed {
            doing: doing(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, doing: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::Message(doing.into()))
    }

    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| Error::Message(doing()))
    }
}

impl From<crate::scale::ScaleError> for Error {
    fn from(e: crate::scale::ScaleError) -> Self {
        Error::Scale(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_and_exit_classes() {
        let e = std::fs::read("/no/such/file")
            .context("reading /no/such/file")
            .unwrap_err();
        assert_eq!(e.to_string(), "reading /no/such/file");
        assert!(std::error::Error::source(&e).is_some());
        assert!(!e.is_usage());
        let wrapped = Err::<(), _>(Error::Usage("bad flag".into()))
            .context("starting")
            .unwrap_err();
        assert!(wrapped.is_usage());
        assert!(Error::Unavailable("no prometheus".into()).is_unavailable());
        assert!(Error::Store(store::StoreError::Missing("x.db".into())).is_usage());
    }
}
