//! What a user writes to tune a detector for one signal.
//!
//! These types are embedded in runbook files (`signals[].detector`), in the
//! parameter files `heal tune` writes, and in replay and watch; their `///`
//! docs are the user documentation and end up in `heal runbooks schema`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which side of the baseline counts as anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Only values above the baseline (latency, error rate, memory).
    Up,
    /// Only values below the baseline (throughput, success rate).
    Down,
    /// Either side.
    #[default]
    Both,
}

impl Direction {
    /// Whether an excursion of the given sign (`true` = above) is watched.
    pub fn watches(self, above: bool) -> bool {
        match self {
            Direction::Up => above,
            Direction::Down => !above,
            Direction::Both => true,
        }
    }

    /// The lowercase name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the adaptive-threshold detector for one signal.
///
/// Every field has a default, so `detector: {}` (or leaving it out) is a
/// sensible start; `heal tune` writes files of this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Which side of the baseline is anomalous: `up`, `down` or `both`.
    pub direction: Direction,
    /// Samples seen before any score above 0 is given, while the baseline
    /// settles. (The calibration of each statistic also waits for 100
    /// samples of its own.)
    pub warmup: u32,
    /// Half-life, in samples, of the running level (the baseline).
    pub level_half_life: f64,
    /// Half-life, in samples, of the running spread estimate. A slower copy
    /// (ten times this half-life; a quarter of it is the spread's floor)
    /// keeps the spread from collapsing to zero on a signal that is flat
    /// most of the time.
    pub spread_half_life: f64,
    /// Half-life, in samples, of the score's calibration: how long the
    /// detector remembers how surprising this signal usually is. Longer means
    /// recurring spikes stay familiar for longer.
    pub calibration_half_life: f64,
    /// Hour-of-day buckets of the daily profile (the level and spread the
    /// signal usually has at this time of day, UTC). Values far from the
    /// profile are scored too, which catches a missing or unusual daily
    /// peak. 0 turns the daily profile off; at most 48.
    pub daily_buckets: u32,
    /// Half-life, in days, of the daily profile (converted to samples from
    /// the series' own sampling rate).
    pub daily_half_life_days: f64,
    /// Score in [0, 1] at or above which an excursion fires. The score is
    /// `log(p) / log(1e-12)` for the calibrated tail probability `p` of the
    /// sample (see the detector docs), so 0.4 is `p` of about 2e-5 and 0.17
    /// is `p` of about 0.009. The default 0.4 is set for unattended
    /// remediation: stationary Gaussian noise raises no alarm in 100,000
    /// samples while a 6-sigma spike fires. The NAB benchmark, which charges
    /// little for a false alarm, is best between 0.16 and 0.175 (see
    /// [`DetectorConfig::sensitive`]), which fires on roughly one sample in
    /// 400 of pure noise.
    pub threshold: f64,
    /// Hysteresis: an excursion ends only after the score stays below this for
    /// `reset_samples` samples in a row, so one excursion fires once.
    pub reset_threshold: f64,
    /// Samples in a row below `reset_threshold` that end an excursion.
    pub reset_samples: u32,
    /// Absolute floor for the spread, in the signal's unit; keeps a flat line
    /// from turning every tiny wiggle into an anomaly.
    pub min_spread: f64,
    /// Hard limit: a value above it scores 1 (certain anomaly) from the very
    /// first sample, whatever the history, warm-up included. For limits
    /// known in advance (memory near the container's limit, a queue near
    /// its capacity). Honours `direction` like every deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_above: Option<f64>,
    /// Hard limit: a value below it scores 1 from the very first sample
    /// (`up` below 0.5: the target is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_below: Option<f64>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            direction: Direction::Both,
            warmup: 30,
            level_half_life: 30.0,
            spread_half_life: 500.0,
            calibration_half_life: 5000.0,
            daily_buckets: 24,
            daily_half_life_days: 14.0,
            threshold: 0.4,
            reset_threshold: 0.2,
            reset_samples: 30,
            min_spread: 0.0,
            limit_above: None,
            limit_below: None,
        }
    }
}

impl DetectorConfig {
    /// The default settings with `threshold: 0.17` (a calibrated tail
    /// probability of about 0.009), within the best corpus-wide thresholds
    /// on NAB (0.16 to 0.175): it catches moderate anomalies early, at the
    /// price of about one alarm per 400 samples of pure Gaussian noise. For signals where a missed
    /// anomaly costs far more than a false alarm (alerting, not acting).
    pub fn sensitive() -> Self {
        DetectorConfig {
            threshold: 0.17,
            reset_threshold: 0.085,
            ..DetectorConfig::default()
        }
    }

    /// Largest accepted `daily_buckets`.
    pub const MAX_DAILY_BUCKETS: u32 = 48;

    /// Every problem with these settings, each as `field: what is wrong`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !unit(self.threshold) {
            out.push((
                "threshold",
                format!("must be within [0, 1], got {}", self.threshold),
            ));
        }
        if !unit(self.reset_threshold) {
            out.push((
                "reset_threshold",
                format!("must be within [0, 1], got {}", self.reset_threshold),
            ));
        } else if unit(self.threshold) && self.reset_threshold > self.threshold {
            out.push((
                "reset_threshold",
                format!(
                    "must not exceed threshold ({}), got {}",
                    self.threshold, self.reset_threshold
                ),
            ));
        }
        if self.reset_samples == 0 {
            out.push(("reset_samples", "must be at least 1, got 0".to_string()));
        }
        for (name, v) in [
            ("level_half_life", self.level_half_life),
            ("spread_half_life", self.spread_half_life),
            ("calibration_half_life", self.calibration_half_life),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                out.push((name, format!("must be a number of samples >= 1, got {v}")));
            }
        }
        if self.daily_buckets > Self::MAX_DAILY_BUCKETS {
            out.push((
                "daily_buckets",
                format!(
                    "must be at most {}, got {}",
                    Self::MAX_DAILY_BUCKETS,
                    self.daily_buckets
                ),
            ));
        }
        if !(self.daily_half_life_days.is_finite() && self.daily_half_life_days > 0.0) {
            out.push((
                "daily_half_life_days",
                format!(
                    "must be a number of days > 0, got {}",
                    self.daily_half_life_days
                ),
            ));
        }
        for (name, v) in [
            ("limit_above", self.limit_above),
            ("limit_below", self.limit_below),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                out.push((
                    name,
                    format!("must be a finite number, got {}", v.unwrap_or_default()),
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.limit_above, self.limit_below) {
            if a.is_finite() && b.is_finite() && a <= b {
                out.push((
                    "limit_above",
                    format!("must be greater than limit_below ({b}), got {a}"),
                ));
            }
        }
        if !(self.min_spread.is_finite() && self.min_spread >= 0.0) {
            out.push((
                "min_spread",
                format!("must be >= 0, got {}", self.min_spread),
            ));
        }
        out
    }
}
