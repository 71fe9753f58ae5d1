//! The lab's one error type: a message and the exit code it maps to.
//!
//! The lab is a test tool, not a library others build on, so one struct with
//! a `kind` is enough; what matters to its callers (tests, monit, heal's exec
//! actions) is the exit code and a message that says what failed.

use std::fmt;

/// What kind of failure, which decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command line, configuration or request parameter (exit 64, EX_USAGE).
    Usage,
    /// The peer (a control API, a service) could not be reached (exit 69, EX_UNAVAILABLE).
    Unavailable,
    /// Anything else: an I/O error, a refused or failed operation (exit 1).
    Failed,
}

/// An error with a lowercase "doing what: cause" message.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A usage or configuration error (exit code 64).
    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Usage,
            message: message.into(),
        }
    }

    /// The other side could not be reached (exit code 69).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }

    /// Any other failure (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Error::failed(format!("{what}: {e}"))
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The exit code a process should end with for this error.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Usage => 64,
            ErrorKind::Unavailable => 69,
            ErrorKind::Failed => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The lab's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_sysexits() {
        assert_eq!(Error::usage("x").exit_code(), 64);
        assert_eq!(Error::unavailable("x").exit_code(), 69);
        assert_eq!(Error::failed("x").exit_code(), 1);
        assert_eq!(
            Error::failed("reading x: gone").to_string(),
            "reading x: gone"
        );
    }
}
