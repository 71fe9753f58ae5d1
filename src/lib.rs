//! heal, the application: everything `heal` does, as a library the binary
//! (`src/main.rs`, `src/cli/`) calls after parsing the command line and
//! reading the environment. Nothing here reads either: configuration comes
//! in as values, wall time through a `stdx::Clock`, secrets through an
//! environment lookup.
//!
//! # Layout
//!
//! - [`pipeline`]: the decision loop replay and the live loop share
//!   (sample policy, detectors, rule engine, evidence).
//! - [`replay`]: a recorded dataset in event time; [`tuning`]: the one way
//!   replay and the live loop open the incident store and load tuned
//!   settings and learned offsets.
//! - [`live`]: the live loop (`heal watch`): sources, the decider, the act
//!   stage; [`api`]: its HTTP API, the only module that knows HTTP.
//! - [`marks`]: learning from outcomes, one path for the CLI, the API and
//!   the live loop; [`incidents`]: the store as text.
//! - [`telemetry`]: heal's own `/metrics`; [`evaluate`]: incidents against
//!   ground truth.
//! - [`tune`], [`score`], [`record`], [`bench`], [`demo`] (with
//!   [`labrun`], running heal against the lab): the other commands.
//! - [`text`]: times and durations as people write and read them.
//! - [`scale`]: the roles over Kafka (`heal ingest`, `heal detect`) for
//!   when one process is not enough.
//!
//! [`Error`] is the application's error; the binary maps it to exit codes.

pub mod api;
pub mod bench;
pub mod demo;
mod error;
pub mod evaluate;
pub mod incidents;
pub mod labrun;
pub mod live;
pub mod log_sources;
pub mod marks;
pub mod pipeline;
pub mod record;
pub mod replay;
pub mod scale;
pub mod score;
pub mod telemetry;
pub mod text;
pub mod topology;
pub mod tune;
pub mod tuning;

pub use error::{BoxError, Context, Error, Result};
