//! The dry-run engine: detector verdicts in event time to incidents with
//! planned, guarded and verified action chains.

mod guard;
mod incident;
mod observe;
mod silence;

pub use guard::Attempt;
pub use incident::{
    series_selector, Decision, EngineEvent, Incident, Outcome, PlannedAction, SuppressReason,
    Verification,
};
pub use observe::{
    ApproveError, Engine, EngineOptions, GuardState, Observation, Opens, SilenceError,
};
pub use silence::{MatchOp, Matcher, Silence};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod guardrail_tests;
