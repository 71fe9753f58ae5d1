//! Online anomaly detection for heal.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing and never
//! reads the clock. Time arrives as a parameter (milliseconds since the Unix
//! epoch), which is what lets live watching and offline replay run the very
//! same code.

mod config;
mod score;

pub use config::{DetectorConfig, Direction};
pub use score::{Excursion, Scored};
