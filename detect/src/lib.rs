//! Online anomaly detection for heal.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing and never
//! reads the clock. Time arrives as a parameter (milliseconds since the Unix
//! epoch), which is what lets live watching and offline replay run the very
//! same code.
//!
//! # Layout
//! - [`DetectorConfig`]: what a user tunes per signal.
//! - [`AdaptiveDetector`]: the online adaptive-threshold detector.
//! - [`Detector`]: the detector of one series, of the kind its
//!   configuration names (adaptive, changepoint, seasonal, ensemble).
//! - [`PeerGroup`]: which instance of a service differs from its siblings;
//!   its verdict is extra evidence for the instance's own detector
//!   ([`Detector::update_with`]).
//! - [`fire_once`]: the shared excursion logic replayed over raw scores.
//! - [`Scored`], [`Excursion`]: a detector's verdict on one sample.
//! - [`nab`]: the NAB benchmark's scoring rules.

mod config;
mod detectors;
pub mod nab;
mod score;

pub use config::{
    ChangepointConfig, DetectorConfig, DetectorKind, Direction, EnsembleConfig, SeasonalConfig,
};
pub use detectors::adaptive::{score_from_p, AdaptiveDetector};
pub use detectors::peer::{PeerConfig, PeerGroup, PeerScore};
pub use detectors::{fire_once, Detector};
pub use score::{Excursion, Scored};
