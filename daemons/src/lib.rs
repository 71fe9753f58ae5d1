//! heal's two daemons, the server halves of what the executors call:
//!
//! - [`agent`]: `heal agent`, which runs allowlisted local actions for a
//!   remote heal when asked with a signed request (the client is
//!   `executors::agent`);
//! - [`supervisor`]: `heal supervise`, which runs and watches services
//!   itself and serves their control API (the client is
//!   `executors::supervisor`).
//!
//! Each takes its listener and its shutdown from the caller (the binary),
//! and its wall time from a [`stdx::Clock`]; neither reads the environment
//! (the agent gets an environment lookup).

pub mod agent;
mod auth;
pub mod supervisor;
#[cfg(test)]
mod properties;

pub use auth::{bearer_matches, constant_time_eq};
