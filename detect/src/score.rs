//! What a detector says about one sample.

use serde::{Deserialize, Serialize};

/// The verdict on one sample: a score in [0, 1] and, while the series is in
/// an anomalous excursion, that excursion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Anomaly score in [0, 1]: the calibrated tail probability `p` of the
    /// sample on a log scale (`log(p) / log(1e-12)`, see
    /// [`score_from_p`](crate::score_from_p)). 0 during warm-up, and 0 on
    /// the samples of an excursion after the one that fired it (an
    /// excursion fires once; its [`Excursion::peak_score`] keeps the
    /// highest score).
    pub score: f64,
    /// The excursion this sample belongs to, if any. An excursion starts
    /// when the score reaches the threshold and ends (hysteresis) only after
    /// the score stayed below the reset threshold for a while.
    pub excursion: Option<Excursion>,
}

/// One anomalous excursion of a series: it fires once, at `onset_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Excursion {
    /// Timestamp (ms) of the sample that fired.
    pub onset_ms: i64,
    /// Whether the excursion is above (`true`) or below the baseline.
    pub above: bool,
    /// Highest score seen in this excursion so far.
    pub peak_score: f64,
    /// True on the one sample that fired, false on the rest of the excursion.
    pub first: bool,
    /// Whether the latest sample is back in the band the series had just
    /// before the excursion began: no more than three spreads beyond its
    /// level then on the excursion's side, at least halfway back from the
    /// value that fired (so the sample that fired is never "back"), and
    /// inside any hard limit. `peak_score`
    /// says how anomalous the excursion has been; this says whether the
    /// series is back to where it was. Verification reads it: a series back
    /// in its band has recovered even though the excursion's hysteresis
    /// keeps it open a while longer.
    pub in_band: bool,
    /// The band itself, `(low, high)`: the series' normal range just before
    /// the excursion began, as [`Excursion::in_band`] reads it (infinite on
    /// a side with no bound). The rule engine keeps the band of the
    /// excursion that opened an incident, so that it can tell, once the
    /// excursion has ended, whether the series came back or the detector
    /// merely got used to a fault that goes on (a leak, a level shift).
    /// Not serialized: it is a property of the detector's state at the time.
    #[serde(skip, default = "unbounded")]
    pub band: (f64, f64),
    /// When the series' peers fired this excursion (see
    /// [`Detector::update_with`](crate::Detector::update_with)): the
    /// series' signed robust z-score among its siblings at the sample that
    /// fired (above the group's median is positive). `None` when the
    /// series' own detector fired it, or no peer evidence was given. An
    /// incident report says "differs from its siblings (robust z 8.1)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_z: Option<f64>,
}

/// No bound on either side.
fn unbounded() -> (f64, f64) {
    (f64::NEG_INFINITY, f64::INFINITY)
}

impl Excursion {
    /// Whether `value` is back in [`Excursion::band`] on the excursion's
    /// side (a value beyond the other side is some other trouble).
    pub fn back_in_band(&self, value: f64) -> bool {
        let (lo, hi) = self.band;
        if self.above {
            value <= hi
        } else {
            value >= lo
        }
    }
}

impl Scored {
    /// A score of 0 outside any excursion.
    pub const QUIET: Scored = Scored {
        score: 0.0,
        excursion: None,
    };
}
