//! The dry-run engine: detector verdicts in event time to incidents with
//! planned, guarded and verified action chains.

mod guard;
mod incident;
mod observe;

pub use incident::{
    series_selector, Decision, EngineEvent, Incident, Outcome, PlannedAction, RenderedAction,
    SuppressReason, Verification,
};
pub use observe::{Engine, EngineOptions, Observation};

#[cfg(test)]
mod tests;
