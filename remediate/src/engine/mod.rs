//! The dry-run engine: detector verdicts in event time to incidents with
//! planned, guarded and verified action chains.

// The file is named for its type, `Engine`.
#[allow(clippy::module_inception)]
mod engine;
mod guards;
mod incident;
mod silence;

pub use engine::{
    ApproveError, Engine, EngineOptions, GroupDiagnosis, GuardState, Observation, OpenAnomaly,
    Opens, SilenceError, DEFAULT_STEP_TIMEOUT_MS,
};
pub use guards::{Attempt, Stage, CHAIN};
pub use incident::{
    series_selector, Decision, EngineEvent, Incident, IncidentDiagnosis, Outcome, PlannedAction,
    SuppressReason, Verification,
};
pub use silence::{MatchOp, Matcher, Silence};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod guardrail_tests;
