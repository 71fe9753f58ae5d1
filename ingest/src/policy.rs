//! The sample policy: which raw samples of one series reach the detectors.
//!
//! Every raw sample of a series goes through that series' [`Sanitizer`], which either accepts it
//! or drops it for a named [`DropReason`], and counts the drops per reason ([`DropCounts`]).
//! The checks run in this order, the first that matches decides:
//!
//! 1. **Stale marker** ([`DropReason::StaleMarker`]): the value has the exact bit pattern of
//!    Prometheus' staleness marker, `0x7ff0000000000002` (a NaN Prometheus writes when a target
//!    disappears or a series stops being exported). It means "this series ended", not "this
//!    value is unknown", so it is reported apart from plain NaN, and it resets the sanitizer: the
//!    next sample starts a fresh run, so it is neither a duplicate, nor out of order, nor after a
//!    gap, whatever its timestamp. The expected step and the counters are kept: the step is a
//!    property of the scrape configuration, which a restart of the series does not change.
//! 2. **NaN** ([`DropReason::Nan`]): any other NaN; an unknown value carries no information a
//!    detector could use, and would poison sums and means.
//! 3. **Infinite** ([`DropReason::Infinite`]): `+Inf` or `-Inf`. Dropped rather than clamped
//!    because no finite stand-in is right (clamping to `f64::MAX` would dominate every mean and
//!    variance, and Inf minus Inf is NaN), and because an infinity in a gauge is almost always a
//!    division by zero in the exporter (e.g. an error ratio with zero requests), that is, an
//!    absence of data. Counted, so a series that is mostly Inf is visible in the drop counts.
//! 4. **Duplicate** ([`DropReason::Duplicate`]): same timestamp as the last accepted sample. The
//!    first one is kept: a detector has already seen it, and replacing it is impossible online.
//! 5. **Out of order** ([`DropReason::OutOfOrder`]): older than the last accepted sample.
//!    Detectors update online and cannot go back in time, so a late sample is dropped rather than
//!    inserted.
//!
//! Only accepted samples move the sanitizer's notion of "last timestamp"; a dropped sample never
//! changes what happens to the next one (except the stale marker, by design).
//!
//! **Gaps.** A gap is not a reason to drop anything: the sample after a gap is accepted, and
//! [`Admit::Accept`] reports the gap in `gap_before_ms` (the time since the previous accepted
//! sample) when that time is larger than `gap_factor * step`. The expected step is either given
//! ([`SanitizerConfig::step_ms`]) or learned as the median of the first
//! [`SanitizerConfig::learn_deltas`] deltas between accepted samples; the median, not the mean,
//! so one missed scrape during learning does not double the step. No gap is reported before the
//! step is known.
//!
//! **Counter resets are not handled here.** A counter that drops to zero after a process restart
//! is a perfectly valid sample of a counter; turning counters into rates (and handling resets)
//! belongs to rate computation, which knows the metric type. The sanitizer does not.

use crate::series::Sample;

/// The bit pattern of Prometheus' staleness marker, a signalling-free NaN
/// (`value.StaleNaN` in prometheus/model/value/value.go).
pub const STALE_MARKER_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `value` is exactly Prometheus' staleness marker.
pub fn is_stale_marker(value: f64) -> bool {
    value.to_bits() == STALE_MARKER_BITS
}

/// Why a sample was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A NaN value other than the stale marker.
    Nan,
    /// `+Inf` or `-Inf`.
    Infinite,
    /// Prometheus' staleness marker: the series ended.
    StaleMarker,
    /// Same timestamp as the last accepted sample.
    Duplicate,
    /// Older than the last accepted sample.
    OutOfOrder,
}

impl DropReason {
    /// All reasons, in the order the sanitizer checks them.
    pub const ALL: [DropReason; 5] = [
        DropReason::StaleMarker,
        DropReason::Nan,
        DropReason::Infinite,
        DropReason::Duplicate,
        DropReason::OutOfOrder,
    ];

    /// A short snake_case name, fit for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Nan => "nan",
            DropReason::Infinite => "infinite",
            DropReason::StaleMarker => "stale_marker",
            DropReason::Duplicate => "duplicate",
            DropReason::OutOfOrder => "out_of_order",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the sanitizer decided about one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// The sample goes on to the detectors.
    Accept {
        /// The accepted sample.
        sample: Sample,
        /// Time since the previous accepted sample, in ms, when it exceeds `gap_factor * step`.
        gap_before_ms: Option<i64>,
    },
    /// The sample is dropped.
    Drop(DropReason),
}

impl Admit {
    /// The sample, when accepted.
    pub fn accepted(&self) -> Option<Sample> {
        match self {
            Admit::Accept { sample, .. } => Some(*sample),
            Admit::Drop(_) => None,
        }
    }
}

/// Number of dropped samples per reason.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Plain NaN values.
    pub nan: u64,
    /// Infinite values.
    pub infinite: u64,
    /// Stale markers.
    pub stale_marker: u64,
    /// Duplicate timestamps.
    pub duplicate: u64,
    /// Out-of-order timestamps.
    pub out_of_order: u64,
}

impl DropCounts {
    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Nan => self.nan,
            DropReason::Infinite => self.infinite,
            DropReason::StaleMarker => self.stale_marker,
            DropReason::Duplicate => self.duplicate,
            DropReason::OutOfOrder => self.out_of_order,
        }
    }

    fn bump(&mut self, reason: DropReason) {
        let slot = match reason {
            DropReason::Nan => &mut self.nan,
            DropReason::Infinite => &mut self.infinite,
            DropReason::StaleMarker => &mut self.stale_marker,
            DropReason::Duplicate => &mut self.duplicate,
            DropReason::OutOfOrder => &mut self.out_of_order,
        };
        *slot += 1;
    }

    /// All drops together.
    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.get(r)).sum()
    }
}

/// How a [`Sanitizer`] judges gaps.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct SanitizerConfig {
    /// The expected time between samples, in ms; learned from the data when `None`.
    pub step_ms: Option<i64>,
    /// A delta larger than `gap_factor * step` is a gap.
    pub gap_factor: f64,
    /// How many deltas the step is learned from (their median), when not given.
    pub learn_deltas: usize,
}

impl Default for SanitizerConfig {
    /// Learned step, gaps beyond 2 steps (one missed scrape is a delta of exactly 2 steps, not a
    /// gap), learned from 5 deltas.
    fn default() -> Self {
        SanitizerConfig {
            step_ms: None,
            gap_factor: 2.0,
            learn_deltas: 5,
        }
    }
}

/// Applies the sample policy (see the [module docs](self)) to one series.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Sanitizer {
    config: SanitizerConfig,
    step_ms: Option<i64>,
    last_ts_ms: Option<i64>,
    learning: Vec<i64>,
    counts: DropCounts,
}

impl Default for Sanitizer {
    fn default() -> Self {
        Sanitizer::new(SanitizerConfig::default())
    }
}

impl Sanitizer {
    /// A sanitizer for one series.
    pub fn new(config: SanitizerConfig) -> Self {
        Sanitizer {
            config,
            step_ms: config.step_ms.filter(|&s| s > 0),
            last_ts_ms: None,
            learning: Vec::with_capacity(config.learn_deltas),
            counts: DropCounts::default(),
        }
    }

    /// A sanitizer with a known step.
    pub fn with_step(step_ms: i64) -> Self {
        Sanitizer::new(SanitizerConfig {
            step_ms: Some(step_ms),
            ..SanitizerConfig::default()
        })
    }

    /// Judges one raw sample.
    pub fn admit(&mut self, ts_ms: i64, value: f64) -> Admit {
        match self.judge(ts_ms, value) {
            Ok(gap_before_ms) => {
                self.last_ts_ms = Some(ts_ms);
                Admit::Accept {
                    sample: Sample::new(ts_ms, value),
                    gap_before_ms,
                }
            }
            Err(reason) => {
                self.counts.bump(reason);
                if reason == DropReason::StaleMarker {
                    self.last_ts_ms = None;
                }
                Admit::Drop(reason)
            }
        }
    }

    fn judge(&mut self, ts_ms: i64, value: f64) -> Result<Option<i64>, DropReason> {
        if is_stale_marker(value) {
            return Err(DropReason::StaleMarker);
        }
        if value.is_nan() {
            return Err(DropReason::Nan);
        }
        if value.is_infinite() {
            return Err(DropReason::Infinite);
        }
        let Some(last) = self.last_ts_ms else {
            return Ok(None);
        };
        if ts_ms == last {
            return Err(DropReason::Duplicate);
        }
        if ts_ms < last {
            return Err(DropReason::OutOfOrder);
        }
        let delta = ts_ms - last;
        match self.step_ms {
            Some(step) => {
                Ok((delta as f64 > self.config.gap_factor * step as f64).then_some(delta))
            }
            None => {
                self.learn(delta);
                Ok(None)
            }
        }
    }

    fn learn(&mut self, delta: i64) {
        self.learning.push(delta);
        if self.learning.len() >= self.config.learn_deltas.max(1) {
            self.learning.sort_unstable();
            // Lower median for an even count: a whole delta that occurred, not an average.
            self.step_ms = Some(self.learning[(self.learning.len() - 1) / 2]);
            self.learning = Vec::new();
        }
    }

    /// The expected step in ms, given or learned; `None` while still learning.
    pub fn step_ms(&self) -> Option<i64> {
        self.step_ms
    }

    /// Timestamp of the last accepted sample, `None` at the start and after a stale marker.
    pub fn last_ts_ms(&self) -> Option<i64> {
        self.last_ts_ms
    }

    /// Drops so far, per reason.
    pub fn drop_counts(&self) -> DropCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 60_000;

    fn accepted(a: Admit) -> (Sample, Option<i64>) {
        match a {
            Admit::Accept {
                sample,
                gap_before_ms,
            } => (sample, gap_before_ms),
            Admit::Drop(r) => panic!("expected accept, got drop {r}"),
        }
    }

    #[test]
    fn accepts_clean_samples() {
        let mut s = Sanitizer::with_step(STEP);
        for i in 0..5 {
            let (sample, gap) = accepted(s.admit(i * STEP, i as f64));
            assert_eq!(sample, Sample::new(i * STEP, i as f64));
            assert_eq!(gap, None);
        }
        assert_eq!(s.drop_counts(), DropCounts::default());
    }

    #[test]
    fn drops_nan_and_inf_and_counts_them() {
        let mut s = Sanitizer::with_step(STEP);
        assert_eq!(s.admit(0, f64::NAN), Admit::Drop(DropReason::Nan));
        assert_eq!(s.admit(0, f64::INFINITY), Admit::Drop(DropReason::Infinite));
        assert_eq!(
            s.admit(0, f64::NEG_INFINITY),
            Admit::Drop(DropReason::Infinite)
        );
        // Drops do not move the last timestamp: t=0 is still accepted.
        assert!(s.admit(0, 1.0).accepted().is_some());
        let c = s.drop_counts();
        assert_eq!((c.nan, c.infinite, c.total()), (1, 2, 3));
    }

    #[test]
    fn stale_marker_is_distinct_and_resets() {
        let stale = f64::from_bits(STALE_MARKER_BITS);
        assert!(stale.is_nan());
        assert!(is_stale_marker(stale));
        assert!(!is_stale_marker(f64::NAN));

        let mut s = Sanitizer::with_step(STEP);
        s.admit(10 * STEP, 1.0);
        assert_eq!(
            s.admit(11 * STEP, stale),
            Admit::Drop(DropReason::StaleMarker)
        );
        assert_eq!(s.last_ts_ms(), None);
        // After the reset an older sample is a fresh start, not out of order, and no gap.
        assert_eq!(accepted(s.admit(2 * STEP, 5.0)).1, None);
        // A much later one after a new reset is not a gap either.
        s.admit(3 * STEP, stale);
        assert_eq!(accepted(s.admit(100 * STEP, 5.0)).1, None);
        let c = s.drop_counts();
        assert_eq!((c.stale_marker, c.nan, c.out_of_order), (2, 0, 0));
        assert_eq!(s.step_ms(), Some(STEP));
    }

    #[test]
    fn duplicate_keeps_first() {
        let mut s = Sanitizer::with_step(STEP);
        assert_eq!(accepted(s.admit(0, 1.0)).0.value, 1.0);
        assert_eq!(s.admit(0, 2.0), Admit::Drop(DropReason::Duplicate));
        assert_eq!(s.admit(0, 3.0), Admit::Drop(DropReason::Duplicate));
        assert_eq!(s.drop_counts().duplicate, 2);
    }

    #[test]
    fn out_of_order_is_dropped() {
        let mut s = Sanitizer::with_step(STEP);
        s.admit(5 * STEP, 1.0);
        assert_eq!(s.admit(4 * STEP, 1.0), Admit::Drop(DropReason::OutOfOrder));
        assert_eq!(s.last_ts_ms(), Some(5 * STEP));
        assert!(s.admit(6 * STEP, 1.0).accepted().is_some());
        assert_eq!(s.drop_counts().out_of_order, 1);
    }

    #[test]
    fn value_checks_come_before_time_checks() {
        let mut s = Sanitizer::with_step(STEP);
        s.admit(STEP, 1.0);
        assert_eq!(s.admit(0, f64::NAN), Admit::Drop(DropReason::Nan));
        assert_eq!(
            s.admit(STEP, f64::INFINITY),
            Admit::Drop(DropReason::Infinite)
        );
    }

    #[test]
    fn gap_is_reported_beyond_factor_times_step() {
        let mut s = Sanitizer::with_step(STEP);
        s.admit(0, 1.0);
        // Exactly 2 steps (one missed scrape) is not a gap with the default factor 2.
        assert_eq!(accepted(s.admit(2 * STEP, 1.0)).1, None);
        assert_eq!(
            accepted(s.admit(2 * STEP + 2 * STEP + 1, 1.0)).1,
            Some(2 * STEP + 1)
        );
        assert_eq!(
            accepted(s.admit(10 * STEP, 1.0)).1,
            Some(10 * STEP - (4 * STEP + 1))
        );
    }

    #[test]
    fn step_is_learned_as_median() {
        let mut s = Sanitizer::default();
        // Deltas 60, 60, 180 (missed scrapes), 60, 60 s: the median is 60 s.
        let ts = [0, 60, 120, 300, 360, 420].map(|t| t * 1000);
        for &t in &ts {
            assert_eq!(accepted(s.admit(t, 1.0)).1, None, "no gap while learning");
        }
        assert_eq!(s.step_ms(), Some(STEP));
        assert_eq!(accepted(s.admit(420_000 + 3 * STEP, 1.0)).1, Some(3 * STEP));
    }

    #[test]
    fn learned_step_ignores_dropped_samples() {
        let mut s = Sanitizer::new(SanitizerConfig {
            learn_deltas: 2,
            ..SanitizerConfig::default()
        });
        s.admit(0, 1.0);
        s.admit(0, 1.0); // duplicate
        s.admit(10_000, f64::NAN);
        s.admit(30_000, 1.0);
        assert_eq!(s.step_ms(), None);
        s.admit(60_000, 1.0);
        assert_eq!(s.step_ms(), Some(30_000));
    }

    #[test]
    fn drop_reason_names() {
        let names: Vec<_> = DropReason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            names,
            [
                "stale_marker",
                "nan",
                "infinite",
                "duplicate",
                "out_of_order"
            ]
        );
    }
}
