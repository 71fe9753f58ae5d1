//! Learning from outcomes: a bounded, recorded threshold offset per signal.
//!
//! Each signal's detectors fire at `threshold + offset`, where the offset
//! starts at 0 and moves in small steps on evidence that the signal is too
//! sensitive or not sensitive enough:
//!
//! - an incident a person marked as a false alarm: [`Reason::FalseAlarm`],
//!   +0.02 (less sensitive);
//! - an executed step whose verification said it did not help (outcome
//!   `not_recovered`): [`Reason::NotHelped`], +0.01. Weaker evidence than a
//!   person's word (the action may have been the wrong one, not the
//!   detection), hence half the step;
//! - an anomaly a person marked as missed: [`Reason::Missed`], -0.02 (more
//!   sensitive).
//!
//! The offset is clamped to [[`OFFSET_MIN`], [`OFFSET_MAX`]]: a step of 0.02
//! on the score scale (`log(p) / log(1e-12)`) is a factor of about 1.7 on the
//! tail probability, so at most +0.15 makes a signal about 60 times less
//! likely to fire and at most -0.10 about 16 times more likely. Learning
//! tunes a signal; it never silences one nor turns it into noise, whatever
//! the marks say. The bound is wider on the quiet side because a false
//! alarm that acts costs more than a late one.
//!
//! Every adjustment is recorded (signal, old and new offset, reason, the
//! incident or the missed time, a note, the wall time the caller gives), and
//! a repeated mark of the same incident for the same reason is refused, so
//! that a double click does not count twice.

use serde::Serialize;

/// Lowest threshold offset (most sensitive).
pub const OFFSET_MIN: f64 = -0.10;
/// Highest threshold offset (least sensitive).
pub const OFFSET_MAX: f64 = 0.15;

/// Why a signal's sensitivity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A person marked an incident as a false alarm.
    FalseAlarm,
    /// An executed step was verified as not having helped.
    NotHelped,
    /// A person marked an anomaly the detector missed.
    Missed,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 3] = [Reason::FalseAlarm, Reason::NotHelped, Reason::Missed];

    /// The change of the offset for one such event (positive: less sensitive).
    pub fn step(self) -> f64 {
        match self {
            Reason::FalseAlarm => 0.02,
            Reason::NotHelped => 0.01,
            Reason::Missed => -0.02,
        }
    }

    /// The snake_case name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FalseAlarm => "false_alarm",
            Reason::NotHelped => "not_helped",
            Reason::Missed => "missed",
        }
    }

    /// The reason named `s`.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// `old` moved by one step of `reason`, within the bounds. Rounded to a
/// millionth so that many steps do not accumulate float noise.
pub fn step_offset(old: f64, reason: Reason) -> f64 {
    let new = (old + reason.step()).clamp(OFFSET_MIN, OFFSET_MAX);
    (new * 1e6).round() / 1e6
}

/// Evidence about one signal's sensitivity, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The signal (runbook `signals[].name`).
    pub signal: String,
    /// What happened.
    pub reason: Reason,
    /// The incident marked or not helped (`None` for a missed anomaly).
    pub incident: Option<String>,
    /// When the missed anomaly happened (ms since the epoch), for `Missed`.
    pub missed_at_ms: Option<i64>,
    /// A person's note.
    pub note: Option<String>,
    /// Wall time of the mark (the caller's clock; the store reads none).
    pub at_ms: i64,
}

/// One recorded adjustment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adjustment {
    /// Order of recording.
    pub seq: i64,
    /// The signal.
    pub signal: String,
    /// Offset before.
    pub old: f64,
    /// Offset after (equal to `old` when a bound was reached).
    pub new: f64,
    /// Why.
    pub reason: Reason,
    /// The incident, when there is one.
    pub incident: Option<String>,
    /// When the missed anomaly happened, for a missed one.
    pub missed_at_ms: Option<i64>,
    /// The note given.
    pub note: Option<String>,
    /// Wall time of the mark.
    pub at_ms: i64,
}

/// What recording a mark did.
#[derive(Debug, Clone, PartialEq)]
pub enum Marked {
    /// The offset moved (or stayed at a bound); recorded.
    Adjusted(Adjustment),
    /// The same incident was already marked for the same reason: nothing
    /// changed. Holds the earlier adjustment.
    AlreadyMarked(Adjustment),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_small_signed_and_bounded() {
        assert_eq!(step_offset(0.0, Reason::FalseAlarm), 0.02);
        assert_eq!(step_offset(0.0, Reason::NotHelped), 0.01);
        assert_eq!(step_offset(0.0, Reason::Missed), -0.02);
        let mut up = 0.0;
        for _ in 0..100 {
            up = step_offset(up, Reason::FalseAlarm);
        }
        assert_eq!(up, OFFSET_MAX);
        let mut down = 0.0;
        for _ in 0..100 {
            down = step_offset(down, Reason::Missed);
        }
        assert_eq!(down, OFFSET_MIN);
        // Back from a bound in one step, and no float drift on the way.
        assert_eq!(step_offset(OFFSET_MIN, Reason::FalseAlarm), -0.08);
        let mut x = 0.0;
        for _ in 0..3 {
            x = step_offset(x, Reason::NotHelped);
        }
        assert_eq!(x, 0.03);
    }

    #[test]
    fn reasons_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("bogus"), None);
    }
}
