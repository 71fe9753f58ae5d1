//! The adaptive-threshold detector.
//!
//! For every sample it keeps robust running estimates of the series' level
//! and spread, turns the sample's deviation into a tail probability, and
//! reports `1 - p` as the score. See [`AdaptiveDetector`].

use statrs::function::erf::erfc;

use crate::{DetectorConfig, Excursion, Scored};

/// `sqrt(pi/2)`: the ratio of the standard deviation to the mean absolute
/// deviation of a normal distribution, so `1.2533 * MAD` estimates sigma.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Samples further than this many spreads from the level are clipped to it
/// before they update the estimates (Huber-style winsorising), so a spike
/// moves the baseline only a little while a lasting shift still gets learnt.
const CLIP_SIGMAS: f64 = 3.0;

/// Tail probability that maps to a score of 1: deviations at least this
/// unlikely (about 7.1 sigma two-sided) all count as certain anomalies.
const P_FLOOR: f64 = 1e-12;

/// Map a tail probability to a score in [0, 1] on a log scale:
/// `log(p) / log(P_FLOOR)`. `1 - p` would crowd every interesting deviation
/// into the last few ulps below 1.0 (4 sigma and 8 sigma both round to
/// 0.9999...), leaving a threshold nothing to separate; the log scale keeps
/// them apart and stays monotone in `p`. This is the transform Numenta's
/// anomaly likelihood uses for the same reason.
pub fn score_from_p(p: f64) -> f64 {
    if p >= 1.0 {
        0.0
    } else if p <= P_FLOOR {
        1.0
    } else {
        (p.ln() / P_FLOOR.ln()).clamp(0.0, 1.0)
    }
}

/// Online adaptive-threshold detector for one series.
///
/// # Model
///
/// The level `m` is an exponentially weighted mean and the spread `s` an
/// exponentially weighted mean absolute deviation, both fed winsorised
/// samples. The deviation `z = (x - m) / (1.2533 s)` of a new sample is
/// scored *before* the sample updates the estimates, so the score of sample
/// `i` depends on samples `0..=i` only. Its score is `1 - P(|Z| >= |z|)` for a
/// standard normal `Z` (one-sided for `up`/`down`), so the score is a
/// calibrated tail probability rather than an arbitrary scale.
///
/// # Excursions and hysteresis
///
/// An excursion starts when the score reaches `threshold` and ends only
/// after `reset_samples` samples in a row scored below `reset_threshold`.
/// Inside an excursion the detector keeps reporting it (with `first` set only
/// on the firing sample), so one excursion fires once.
#[derive(Debug, Clone)]
pub struct AdaptiveDetector {
    cfg: DetectorConfig,
    alpha: f64,
    beta: f64,
    seen: u64,
    level: f64,
    spread: f64,
    excursion: Option<Excursion>,
    quiet_run: u32,
    /// |z| of the last sample (tuning aid).
    pub last_z: f64,
}

/// Smoothing factor of an exponentially weighted average with the given
/// half-life in samples.
fn factor(half_life: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / half_life.max(1.0))
}

impl AdaptiveDetector {
    /// A detector with the given settings. Settings are assumed valid
    /// ([`DetectorConfig::problems`] is empty).
    pub fn new(cfg: DetectorConfig) -> Self {
        AdaptiveDetector {
            alpha: factor(cfg.level_half_life),
            beta: factor(cfg.spread_half_life),
            cfg,
            seen: 0,
            level: 0.0,
            spread: 0.0,
            excursion: None,
            quiet_run: 0,
            last_z: 0.0,
        }
    }

    /// The settings this detector runs with.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Current baseline level.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Current spread as a standard deviation estimate.
    pub fn sigma(&self) -> f64 {
        (MAD_TO_SIGMA * self.spread).max(self.cfg.min_spread)
    }

    /// Score one sample taken at `ts_ms`. Non-finite values are not samples:
    /// callers drop them first (ingest's sample policy); here they score 0
    /// and leave the state untouched.
    pub fn update(&mut self, ts_ms: i64, x: f64) -> Scored {
        if !x.is_finite() {
            return Scored {
                score: 0.0,
                excursion: self.excursion,
            };
        }
        self.seen += 1;
        if self.seen == 1 {
            self.level = x;
            self.spread = 0.0;
            return Scored::QUIET;
        }
        let sigma = self.sigma();
        let dev = x - self.level;
        let score = if self.seen <= u64::from(self.cfg.warmup) {
            0.0
        } else {
            self.tail_score(dev, sigma)
        };
        self.learn(x, dev, sigma);
        self.step_excursion(ts_ms, score, dev > 0.0)
    }

    /// `1 - p` for the deviation `dev` in units of `sigma`.
    fn tail_score(&mut self, dev: f64, sigma: f64) -> f64 {
        if !self.cfg.direction.watches(dev > 0.0) {
            return 0.0;
        }
        // A flat series has no spread: any change is infinitely surprising
        // unless min_spread says how large a change matters.
        let z = if sigma > 0.0 {
            dev.abs() / sigma
        } else if dev == 0.0 {
            0.0
        } else {
            1e6
        };
        self.last_z = z;
        // P(Z >= z) = erfc(z / sqrt 2) / 2 for a standard normal.
        let one_sided = 0.5 * erfc(z * std::f64::consts::FRAC_1_SQRT_2);
        let p = match self.cfg.direction {
            crate::Direction::Both => 2.0 * one_sided,
            _ => one_sided,
        };
        score_from_p(p)
    }

    fn learn(&mut self, x: f64, dev: f64, sigma: f64) {
        let bound = CLIP_SIGMAS * sigma;
        let clipped = if sigma > 0.0 {
            self.level + dev.clamp(-bound, bound)
        } else {
            x
        };
        let abs_dev = (clipped - self.level).abs();
        self.level += self.alpha * (clipped - self.level);
        // Until the spread is known at all, learn it from the raw deviation
        // (clipping against a zero spread would keep it zero forever).
        self.spread += self.beta * (abs_dev - self.spread);
    }

    fn step_excursion(&mut self, ts_ms: i64, score: f64, above: bool) -> Scored {
        match &mut self.excursion {
            None => {
                if score >= self.cfg.threshold && score > 0.0 {
                    let ex = Excursion {
                        onset_ms: ts_ms,
                        above,
                        peak_score: score,
                        first: true,
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
                if score < self.cfg.reset_threshold {
                    self.quiet_run += 1;
                } else {
                    self.quiet_run = 0;
                }
                let current = *ex;
                if self.quiet_run >= self.cfg.reset_samples {
                    self.excursion = None;
                    self.quiet_run = 0;
                    return Scored {
                        score,
                        excursion: None,
                    };
                }
                Scored {
                    score,
                    excursion: Some(current),
                }
            }
        }
    }
}
