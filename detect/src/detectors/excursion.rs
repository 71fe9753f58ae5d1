//! Excursions and hysteresis: how every detector of this crate (the
//! adaptive one, changepoint, seasonal and the ensemble) fires once per
//! excursion, sets the band a series must come back to, and ends an
//! excursion after a quiet run. One copy, so that every kind reports
//! excursions to the rule engine in exactly the same way. [`fire_once`]
//! replays the same logic over raw scores; a test in `ensemble` checks that
//! replaying it matches a detector that ran it online.

use crate::{DetectorConfig, Excursion, Scored};

/// An excursion's sample is back in the normal band within this many
/// spreads of the level the series had before the excursion (as in the
/// adaptive detector).
pub(crate) const BAND_SIGMAS: f64 = 3.0;

/// The excursion state of one series: the open excursion, the run of quiet
/// samples that will end it, and the band it must come back to.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
pub(crate) struct Excursions {
    excursion: Option<Excursion>,
    quiet_run: u32,
    band: (f64, f64),
}

impl Default for Excursions {
    fn default() -> Self {
        Excursions {
            excursion: None,
            quiet_run: 0,
            band: (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}

impl Excursions {
    /// The open excursion, if any.
    pub(crate) fn current(&self) -> Option<Excursion> {
        self.excursion
    }

    /// Whether a sample with this score opens an excursion now.
    pub(crate) fn fires(&self, score: f64, threshold: f64) -> bool {
        self.excursion.is_none() && score >= threshold && score > 0.0
    }

    /// Sets the band of the excursion that `x` is about to open, from the
    /// level and spread the series had just before it: within
    /// [`BAND_SIGMAS`] spreads of the level, and at least halfway back from
    /// the value that fired (so the firing sample is never "back").
    pub(crate) fn set_band(&mut self, level: f64, sigma: f64, x: f64) {
        let half = BAND_SIGMAS * sigma;
        let mid = 0.5 * (level + x);
        self.band = if x >= level {
            (level - half, (level + half).min(mid))
        } else {
            ((level - half).max(mid), level + half)
        };
    }

    /// Sets the band to the inside of the hard limits (a limit that fires on
    /// the very first sample has nothing else to compare with).
    pub(crate) fn set_limit_band(&mut self, cfg: &DetectorConfig) {
        self.band = (
            cfg.limit_below.unwrap_or(f64::NEG_INFINITY),
            cfg.limit_above.unwrap_or(f64::INFINITY),
        );
    }

    /// Advances the excursion state by one sample of score `score` and value
    /// `x`: opens an excursion at `threshold` (the sample keeps its score and
    /// carries `first = true` and `peer_z`, the peers' robust z when they
    /// fired it), keeps it open (score 0) until
    /// `reset_samples` samples in a row scored below `reset_threshold`.
    // Every argument is one fact about this sample; a struct would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &mut self,
        cfg: &DetectorConfig,
        ts_ms: i64,
        score: f64,
        x: f64,
        beyond_limit: bool,
        above: bool,
        peer_z: Option<f64>,
    ) -> Scored {
        // Back in the band on the excursion's side; a value beyond the
        // other side is some other trouble, not this excursion's.
        let (lo, hi) = self.band;
        let in_band = |above: bool| !beyond_limit && if above { x <= hi } else { x >= lo };
        match &mut self.excursion {
            None => {
                if score >= cfg.threshold && score > 0.0 {
                    let ex = Excursion {
                        onset_ms: ts_ms,
                        above,
                        peak_score: score,
                        first: true,
                        in_band: in_band(above),
                        peer_z,
                        band: self.band,
                    };
                    self.excursion = Some(ex);
                    self.quiet_run = 0;
                    return Scored {
                        score,
                        excursion: Some(ex),
                    };
                }
                Scored {
                    score,
                    excursion: None,
                }
            }
            Some(ex) => {
                ex.first = false;
                ex.peak_score = ex.peak_score.max(score);
                ex.in_band = in_band(ex.above);
                if score < cfg.reset_threshold {
                    self.quiet_run += 1;
                } else {
                    self.quiet_run = 0;
                }
                let current = *ex;
                if self.quiet_run >= cfg.reset_samples {
                    self.end();
                    return Scored {
                        score: 0.0,
                        excursion: None,
                    };
                }
                // Fired already: the rest of the excursion scores 0.
                Scored {
                    score: 0.0,
                    excursion: Some(current),
                }
            }
        }
    }

    /// Forgets the open excursion.
    pub(crate) fn end(&mut self) {
        self.excursion = None;
        self.quiet_run = 0;
    }
}

/// Replays the excursion logic over raw (never-firing) scores: what a
/// detector with the given thresholds would have reported, sample by
/// sample. Exact for every detector of this crate, because none of them
/// lets its excursion state change what it learns; `heal bench nab` uses
/// it to sweep thresholds without rescoring the corpus. A NaN in `raw`
/// stands for a row that never reached the detector (the sample policy
/// dropped it): it scores 0 and does not count towards the reset.
pub fn fire_once(
    raw: &[f64],
    threshold: f64,
    reset_threshold: f64,
    reset_samples: u32,
) -> Vec<f64> {
    let cfg = DetectorConfig {
        threshold,
        reset_threshold,
        reset_samples,
        ..DetectorConfig::default()
    };
    let mut ex = Excursions::default();
    raw.iter()
        .map(|&s| {
            if s.is_nan() {
                0.0
            } else {
                ex.step(&cfg, 0, s, 0.0, false, true, None).score
            }
        })
        .collect()
}
