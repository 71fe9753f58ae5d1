//! Runbooks, rule matching, guardrails, verification and reports for heal:
//! the pure core of remediation.
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
//! - [`action`]: the action contract: the [`action::RenderedAction`] the
//!   engine hands an executor, the [`action::ActionResult`] it hands back,
//!   and the rules both sides check (HAProxy names and addresses,
//!   `${env:NAME}` references).
//! - [`time`]: event times as RFC 3339 and as human durations (no calendar
//!   crate, no clock).
//!
//! Architecture invariant: this crate does no I/O beyond reading the
//! runbook and parameter files it is asked to load, and never reads the
//! clock. Its `Cargo.toml` has no tokio, reqwest, rusqlite, hmac, rustix,
//! hyper or axum, so the compiler holds it to that. The executors
//! (`executors`), the incident store (`store`) and the daemons (`daemons`)
//! build on it; it imports none of them.
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
mod duration;
pub mod engine;
mod error;
pub mod report;
pub mod runbook;
mod template;
pub mod time;
pub mod units;

pub use duration::{Duration, ParseDurationError};
pub use engine::{Engine, EngineOptions, Incident, Observation};
pub use error::{Error, RunbookError, RunbookErrors};
pub use runbook::{json_schema, RunbookSet};
pub use template::{is_label_name, is_safe_label_value, Template, SAFE_VALUE_RULE};
