//! Runbooks, rule matching, guardrails and actions for heal.
//!
//! # Layout
//!
//! - [`runbook`]: the YAML runbook format, its loader ([`RunbookSet::load_dir`])
//!   that reports every problem at once with file, line and field, and its
//!   JSON Schema ([`json_schema`]).
//! - [`engine`]: the event-time engine that turns detector verdicts into
//!   incidents, plans action chains behind guards and verifies each step.
//!   It never reads the clock and does no I/O.
//! - [`report`]: incidents as JSON Lines, as Markdown and HTML post-incident
//!   reports (the HTML with an SVG chart of the signal, its normal band and
//!   the steps), as an Atom feed of closed incidents, and the [`report::Evidence`]
//!   (samples around an incident) the chart is drawn from.
//! - [`actions`]: the executors (`exec`, `webhook`, `agent`, `haproxy`,
//!   `supervisor`), each with dry-run, a timeout and a result that says
//!   whether a retry can help.
//!
//! Architecture invariant: only this crate acts on the outside world's
//! services, through [`actions`], and every action honours dry-run. The
//! engine plans and decides; the binary hands allowed steps to executors.
//!
//! ```
//! use remediate::RunbookSet;
//! let set = RunbookSet::from_sources(&[(
//!     "inline.yaml".into(),
//!     "signals:\n  - name: up\n    query: up\nrules: []\n".into(),
//! )])
//! .unwrap();
//! assert_eq!(set.summary(), "1 file, 1 signal, 0 rules");
//! ```

pub mod action;
pub mod actions;
mod duration;
pub mod engine;
mod error;
pub mod report;
pub mod runbook;
mod template;
mod time;

pub use duration::{Duration, ParseDurationError};
pub use engine::{Engine, EngineOptions, Incident, Observation};
pub use error::{Error, RunbookError, RunbookErrors};
pub use runbook::{json_schema, RunbookSet};
pub use template::{is_safe_label_value, Template};
