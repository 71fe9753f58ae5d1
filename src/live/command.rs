//! What the HTTP API and the act stage ask the decider, each with where to
//! send the answer. The decider owns the engine; nothing else touches it
//! (the way mini-redis hands requests to the task that owns the state), so
//! a silence, an approval or a mark takes effect between two evaluations,
//! never in the middle of one. Answers are domain results: only the API
//! turns them into HTTP.

use remediate::engine::{ApproveError, EngineEvent, Matcher, Silence, SilenceError};
use store::{Mark, Marked};
use tokio::sync::oneshot;

use crate::marks::MarkError;

/// Why a change asked through the API is not answered as done.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError<E: std::error::Error> {
    /// The engine refused it (nothing changed).
    #[error(transparent)]
    Refused(E),
    /// The engine applied it, but the guard state could not be persisted
    /// (`--state` not writable, the incident store failing): it would not
    /// survive a restart, so the client is not told it is done.
    #[error("applied in memory but not persisted, so it would not survive a restart: {0}")]
    NotPersisted(String),
}

/// A request to the decider.
#[derive(Debug)]
pub enum Command {
    /// Add a silence (a maintenance window when it starts later).
    AddSilence {
        /// What it mutes.
        matchers: Vec<Matcher>,
        /// From (ms).
        starts_ms: i64,
        /// Until (ms).
        ends_ms: i64,
        /// Who.
        by: String,
        /// Why.
        comment: String,
        /// The silence, or why not.
        reply: oneshot::Sender<Result<Silence, ChangeError<SilenceError>>>,
    },
    /// End a silence now.
    ExpireSilence {
        /// Its id.
        id: String,
        /// The silence as ended, or why not.
        reply: oneshot::Sender<Result<Silence, ChangeError<SilenceError>>>,
    },
    /// Silences active or scheduled.
    ListSilences {
        /// The list.
        reply: oneshot::Sender<Vec<Silence>>,
    },
    /// Incidents with a step waiting for approval.
    ListApprovals {
        /// Their ids.
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Approve an incident's parked step.
    Approve {
        /// Incident id.
        incident: String,
        /// Who approves.
        by: String,
        /// What the engine did (the decision on the step), or why not.
        reply: oneshot::Sender<Result<Vec<EngineEvent>, ChangeError<ApproveError>>>,
    },
    /// Learning from outcomes: record a mark in the incident store and
    /// apply the signal's new threshold offset at once.
    Mark {
        /// The mark (built by `crate::marks`).
        mark: Mark,
        /// What it did, or why not.
        reply: oneshot::Sender<Result<Marked, MarkError>>,
    },
    /// The act stage's re-check of an allowed step, just before it runs:
    /// may it still run? When a stage of the suppression chain now mutes
    /// it, the decider records that as the step's decision, but only once
    /// the answer is delivered (see `act::recheck`).
    Recheck {
        /// Incident id.
        incident: String,
        /// 1-based step.
        step: usize,
        /// `true`: go ahead.
        reply: oneshot::Sender<bool>,
    },
    /// The act stage is done with an allowed step (performed, failed,
    /// timed out, or found already begun): its verification wait starts now
    /// (`Engine::action_finished`). No answer.
    ActionFinished {
        /// Incident id.
        incident: String,
        /// 1-based step.
        step: usize,
    },
}
