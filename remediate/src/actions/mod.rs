//! Executors: what performs a planned action.
//!
//! Every executor takes an action whose templates the engine already filled
//! in (every substituted label value checked against the safe-value pattern
//! first), honours dry-run, has a timeout, and returns an [`ActionResult`]
//! that says whether a retry can help.

pub mod exec;
pub mod haproxy;

use std::time::Duration;

/// How one execution went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// Whether the action did what it was asked.
    pub ok: bool,
    /// Whether trying again could help (timeouts, transient failures).
    pub retryable: bool,
    /// One line for humans: `exit status 0`, `timed out after 5s`.
    pub summary: String,
    /// Captured output (stdout then stderr), truncated to a few KiB.
    pub output: String,
    /// Wall time the execution took.
    pub duration: Duration,
}
