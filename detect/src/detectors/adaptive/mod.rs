//! The adaptive-threshold detector.
//!
//! For every sample it measures how far the sample lies from two baselines
//! (the recent level, and what the signal usually does at this time of day),
//! turns each distance into a surprise, keeps a short running mean of each
//! surprise (bursts), calibrates all four statistics against their own
//! history with a peaks-over-threshold tail fit, and reports the combined
//! tail probability on a log scale. See [`AdaptiveDetector`].

mod tail;

use super::excursion::Excursions;
use super::Outside;
use crate::{DetectorConfig, Scored};
use tail::TailFit;

/// `sqrt(pi/2)`: the ratio of the standard deviation to the mean absolute
/// deviation of a normal distribution, so `1.2533 * MAD` estimates sigma.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Samples further than this many spreads from the level are clipped to it
/// before they update the level and the fast spread (Huber-style
/// winsorising), so a spike moves the baseline only a little while a lasting
/// shift still gets learnt.
const CLIP_SIGMAS: f64 = 3.0;

/// The slow spread (unclipped, ten times slower than the fast one) times this
/// is the floor of the spread: on a signal that is flat between spikes the
/// fast, winsorised spread shrinks towards zero and would make every wiggle
/// look like a 1e5-sigma event; the slow spread remembers the spikes.
const FLOOR_RATIO: f64 = 0.25;

/// How much slower the floor spread is than the fast spread.
const FLOOR_SLOWDOWN: f64 = 10.0;

/// A sample of a bucket of the daily profile is scored against it only once
/// the bucket has seen this many samples.
const BUCKET_READY: u32 = 3;

/// The daily profile is used only once the series spans two days, so that
/// every bucket describes earlier days, not the last few minutes.
const PROFILE_READY_MS: i64 = 2 * DAY_MS;

/// The daily profile's two statistics are scored only from here on: their
/// tail fits start learning when the profile is ready and get one whole day
/// of it (every hour of the day once) before their probabilities count. A fit
/// of a few hours has seen only some hours' surprises and, on NAB, made
/// about one false alarm per series in the third day.
const PROFILE_SCORED_MS: i64 = PROFILE_READY_MS + DAY_MS;

/// Number of statistics whose tail probabilities are combined (Bonferroni).
const FEATURES: f64 = 4.0;

/// A single sample's deviation is in the tail only beyond two spreads
/// (`ln(1 + 2)`), however quiet the signal has been.
const POINT_U_MIN: f64 = 1.098_612_288_668_109_8;

/// The unlogged level deviation is in the tail only beyond two spreads.
const LIN_U_MIN: f64 = 2.0;

/// Excesses fed to the unlogged tail fits are capped at this many mean
/// excesses.
const LIN_CAP: f64 = 4.0;

/// The running mean of the unlogged level deviation is in the tail only
/// beyond one spread.
const LIN_BURST_U_MIN: f64 = 1.0;

/// A burst (running mean of the surprise) is in the tail only beyond an
/// average deviation of one spread (`ln(1 + 1)`).
const BURST_U_MIN: f64 = std::f64::consts::LN_2;

/// Half-life, in samples, of the running mean of a surprise (the burst
/// statistics): a run of moderately surprising samples, or a deviation that
/// persists, adds up to more than any single one of them.
const BURST_HL: f64 = 10.0;

/// Tail probability that maps to a score of 1.
const P_FLOOR: f64 = 1e-12;

const DAY_MS: i64 = 86_400_000;
const MAX_BUCKETS: usize = DetectorConfig::MAX_DAILY_BUCKETS as usize;

/// Map a tail probability to a score in [0, 1] on a log scale:
/// `log(p) / log(P_FLOOR)`. `1 - p` would crowd every interesting deviation
/// into the last few ulps below 1.0, leaving a threshold nothing to
/// separate; the log scale keeps them apart and stays monotone in `p`. This
/// is the transform Numenta's anomaly likelihood uses for the same reason.
pub fn score_from_p(p: f64) -> f64 {
    if p >= 1.0 {
        0.0
    } else if p <= P_FLOOR {
        1.0
    } else {
        (p.ln() / P_FLOOR.ln()).clamp(0.0, 1.0)
    }
}

/// Smoothing factor of an exponentially weighted average with the given
/// half-life in samples.
fn factor(half_life: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / half_life.max(1.0))
}

/// Surprise of a deviation of `dev` with spread `sigma`: `ln(1 + |z|)`.
///
/// The logarithm turns a Pareto-like (heavy) tail of `|z|` into an
/// exponential one, which is what the tail fit models, so an exponential
/// fit of the log-excesses is a Hill-type estimate of a heavy tail.
fn surprise(dev: f64, sigma: f64) -> f64 {
    if dev == 0.0 {
        0.0
    } else if sigma > 0.0 {
        (dev.abs() / sigma).ln_1p()
    } else {
        // No spread at all: any change is as surprising as it gets.
        1e6f64.ln_1p()
    }
}

/// One bucket of the daily profile.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, Default)]
struct Bucket {
    /// Exponentially weighted mean of the bucket's samples.
    mean: f32,
    /// Exponentially weighted mean absolute deviation from `mean`.
    mad: f32,
    /// Samples seen (saturating).
    n: u32,
}

/// Online adaptive-threshold detector for one series.
///
/// # Model
///
/// Every statistic is scored *before* the sample updates any estimate, so
/// the score of sample `i` depends on samples `0..=i` only.
///
/// 1. **Level**: `z = (x - m) / s`, where `m` is an exponentially weighted
///    mean and `s` an exponentially weighted mean absolute deviation (times
///    `sqrt(pi/2)`), both fed winsorised samples (3 spreads). The spread is
///    floored by a quarter of a ten-times-slower, unclipped spread (so it
///    cannot collapse on a signal that is flat between spikes) and by
///    `min_spread`.
/// 2. **Daily profile**: `z = (x - m_h) / s_h` against the mean and spread
///    the signal had in the same hour-of-day bucket on previous days
///    (`daily_buckets`; timestamps taken as UTC; learnt once the series
///    spans two days, scored once it spans three). This catches a daily peak that is missing, too low or too
///    high, which no level-based statistic can.
/// 3. and 4. **Bursts**: a running mean (half-life 10 samples) of each of
///    the two surprises below, so that a run of moderately surprising samples
///    or a persisting deviation stands out even when no single sample does.
///
/// A deviation's surprise is `ln(1 + |z|)` (0 on a side `direction` does
/// not watch). Each of the four statistics is calibrated against its own
/// recent history (`calibration_half_life`) with a peaks-over-threshold fit
/// (Pickands–Balkema–de Haan; the online use follows SPOT, Siffer et al.,
/// "Anomaly Detection in Streams with Extreme Value Theory", KDD 2017): over
/// the threshold `u = mean + 2 sd` of its past values, excesses follow a
/// generalised Pareto distribution whose shape (clamped to [0, 0.5]) and
/// scale come from the method of moments, so `P(S > s) = P(S > u) *
/// GPD_sf(s - u)`; see the `tail` module. Because the surprise is a
/// logarithm, an exponential tail in `S` is a power-law (Pareto) tail in
/// `|z|`: a series whose spikes are routine learns that they are routine,
/// while a spike on a quiet series is rare. The four probabilities are
/// combined as `min(4 min(p1..p4), 1)` (Bonferroni) and reported as
/// [`score_from_p`].
///
/// For the level statistic and its burst, a second pair of tail fits works
/// on the unlogged `|z|` (excesses capped at four mean excesses). While that
/// fit finds a light tail (method-of-moments shape below 0, after 1000
/// samples), its probability replaces the log fit's: on Gaussian-like noise
/// the power-law view would give a 6-sigma spike hardly less probability
/// than the largest of 100,000 ordinary samples, while the light-tail fit
/// separates them. Spiky, heavy-tailed series keep the log fit.
///
/// Every running average starts as a plain running mean of its first
/// samples, so nothing is biased towards 0 early on; scores are 0 for the
/// first `warmup` samples and each tail fit gives probabilities only after
/// 100 samples.
///
/// # Excursions and hysteresis
///
/// An excursion starts when the score reaches `threshold` and ends only
/// after `reset_samples` samples in a row scored below `reset_threshold`.
/// The excursion fires once: its first sample carries the full score (and
/// `first = true`); the rest of the excursion reports a score of 0, while
/// [`Excursion::peak_score`] keeps the highest score seen so far. A consumer
/// that thresholds the per-sample score therefore sees one alarm per
/// excursion.
///
/// # Cost
///
/// About a kilobyte of state (the daily profile is a fixed array of 48
/// `f32` pairs and a count; six tail fits of 64 bytes), no allocation, and
/// a few dozen floating-point operations per sample (over 10 million
/// samples per second on one core).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct AdaptiveDetector {
    cfg: DetectorConfig,
    /// Smoothing factors of the level, fast spread and floor spread.
    level_a: f64,
    spread_a: f64,
    floor_a: f64,
    seen: u64,
    first_ts: i64,
    level: f64,
    spread: f64,
    floor_spread: f64,
    /// Tail fits of the level and daily-profile surprises.
    tails: [TailFit; 4],
    /// Tail fits of the unlogged level deviation `|z|` and of its running
    /// mean, used instead of the log fits while they find a light tail.
    lin_tail: TailFit,
    lin_burst_tail: TailFit,
    lin_burst: f64,

    /// Running means of the two surprises (bursts).
    burst: [f64; 2],
    burst_a: f64,
    #[serde(with = "super::serde_array")]
    profile: [Bucket; MAX_BUCKETS],
    /// Cached smoothing factor of the daily profile and the sample count it
    /// was computed at.
    profile_a: f32,
    profile_a_at: u64,
    /// The open excursion, its quiet run and its normal band: the fire-once
    /// logic every detector of this crate shares.
    excursions: Excursions,
    /// The whole state as it was just before the current excursion's first
    /// sample, kept while the excursion lasts (one allocation per
    /// excursion, none per sample) so that [`Self::forget_excursion`] can
    /// undo what the excursion taught.
    before_excursion: Option<Box<AdaptiveDetector>>,
}

impl AdaptiveDetector {
    /// A detector with the given settings. Settings are assumed valid
    /// ([`DetectorConfig::problems`] is empty).
    pub fn new(cfg: DetectorConfig) -> Self {
        AdaptiveDetector {
            level_a: factor(cfg.level_half_life),
            spread_a: factor(cfg.spread_half_life),
            floor_a: factor(FLOOR_SLOWDOWN * cfg.spread_half_life),
            cfg,
            seen: 0,
            first_ts: 0,
            level: 0.0,
            spread: 0.0,
            floor_spread: 0.0,
            tails: [
                TailFit::new(POINT_U_MIN),
                TailFit::new(POINT_U_MIN),
                TailFit::new(BURST_U_MIN),
                TailFit::new(BURST_U_MIN),
            ],

            lin_tail: TailFit::new(LIN_U_MIN),
            lin_burst_tail: TailFit::new(LIN_BURST_U_MIN),
            lin_burst: 0.0,
            burst: [0.0; 2],
            burst_a: factor(BURST_HL),
            profile: [Bucket::default(); MAX_BUCKETS],
            profile_a: 0.0,
            profile_a_at: 0,
            excursions: Excursions::default(),
            before_excursion: None,
        }
    }

    /// The settings this detector runs with.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Changes the firing and reset thresholds while running (learning from
    /// outcomes moves a signal's threshold by a bounded offset), keeping
    /// everything learnt. Both are clamped to [0, 1] and the reset threshold
    /// to at most the threshold; an open excursion ends by the new reset rule.
    pub fn set_threshold(&mut self, threshold: f64, reset_threshold: f64) {
        self.cfg.threshold = threshold.clamp(0.0, 1.0);
        self.cfg.reset_threshold = reset_threshold.clamp(0.0, self.cfg.threshold);
    }

    /// Current baseline level.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Current spread as a standard deviation estimate.
    pub fn sigma(&self) -> f64 {
        (MAD_TO_SIGMA * self.spread)
            .max(FLOOR_RATIO * MAD_TO_SIGMA * self.floor_spread)
            .max(self.cfg.min_spread)
    }

    /// The normal band `level ± k·sigma` as it stands now, before the next
    /// sample: what a chart draws around the series (heal's reports use
    /// `k = 3`, the width an excursion must come back within).
    pub fn band(&self, k: f64) -> (f64, f64) {
        let half = k * self.sigma();
        (self.level - half, self.level + half)
    }

    fn watched_surprise(&self, dev: f64, sigma: f64) -> f64 {
        if self.cfg.direction.watches(dev > 0.0) {
            surprise(dev, sigma)
        } else {
            0.0
        }
    }

    /// Score one sample taken at `ts_ms`. Non-finite values are not samples:
    /// callers drop them first (ingest's sample policy); here they score 0
    /// and leave the state untouched.
    pub fn update(&mut self, ts_ms: i64, x: f64) -> Scored {
        self.update_with(ts_ms, x, None)
    }

    /// [`Self::update`] with outside evidence on the same sample (the
    /// series' peers, see [`crate::Detector::update_with`]): the sample's
    /// score is the higher of the two, and the excursion logic runs on
    /// that. `None` is exactly [`Self::update`].
    pub(crate) fn update_with(&mut self, ts_ms: i64, x: f64, outside: Option<Outside>) -> Scored {
        if !x.is_finite() {
            return Scored {
                score: 0.0,
                excursion: self.excursions.current(),
            };
        }
        self.seen += 1;
        if self.seen == 1 {
            self.level = x;
            self.first_ts = ts_ms;
            self.learn_profile(ts_ms, x);
            return match self.cfg.beyond_limit(x) {
                Some(above) => {
                    // Nothing to compare with yet: the band is the value's
                    // side of the limit.
                    self.excursions.set_limit_band(&self.cfg);
                    self.step_excursion(ts_ms, 1.0, x, true, above, None)
                }
                None => Scored::QUIET,
            };
        }
        let sigma = self.sigma();

        // Feature 1: distance from the running level.
        let dev = x - self.level;
        let s_level = self.watched_surprise(dev, sigma);
        // The same deviation, unlogged, with its own tail fit. When that fit
        // says the tail of |z| is light (shape below 0: Gaussian-like
        // noise), it is the sharper model: the log fit treats every tail as
        // a power law and so gives a 6-sigma spike on Gaussian noise hardly
        // less probability than the largest of 100,000 noise samples. On
        // heavy-tailed (spiky) series the log fit stays in charge.
        let z_level = if sigma > 0.0 && self.cfg.direction.watches(dev > 0.0) {
            dev.abs() / sigma
        } else {
            0.0
        };
        let p_level = if self.lin_tail.is_light() {
            self.lin_tail.p(z_level)
        } else {
            self.tails[0].p(s_level)
        };

        // Feature 2: distance from the daily profile.
        let nb = self
            .cfg
            .daily_buckets
            .min(DetectorConfig::MAX_DAILY_BUCKETS) as usize;
        let mut season = None;
        if nb > 0 {
            let b = bucket_of(ts_ms, nb);
            let bk = self.profile[b];
            if bk.n >= BUCKET_READY && ts_ms.saturating_sub(self.first_ts) >= PROFILE_READY_MS {
                let d = x - f64::from(bk.mean);
                let s = (MAD_TO_SIGMA * f64::from(bk.mad)).max(self.cfg.min_spread);
                season = Some((d, self.watched_surprise(d, s)));
            }
        }
        let season_scored = ts_ms.saturating_sub(self.first_ts) >= PROFILE_SCORED_MS;
        let p_season = match season {
            Some((_, s)) if season_scored => self.tails[1].p(s),
            _ => 1.0,
        };

        let b0 = self.burst[0] + self.burst_a * (s_level - self.burst[0]);
        let b1 = season.map(|(_, s)| self.burst[1] + self.burst_a * (s - self.burst[1]));
        let lb = self.lin_burst + self.burst_a * (z_level - self.lin_burst);
        let pb0 = if self.lin_burst_tail.is_light() {
            self.lin_burst_tail.p(lb)
        } else {
            self.tails[2].p(b0)
        };
        let pb1 = match b1 {
            Some(b) if season_scored => self.tails[3].p(b),
            _ => 1.0,
        };
        let (p, above) = if p_season < p_level {
            (p_season, season.map_or(dev > 0.0, |(d, _)| d > 0.0))
        } else {
            (p_level, dev > 0.0)
        };
        let p = p.min(pb0).min(pb1);
        let p = (FEATURES * p).min(1.0);
        let score = if self.seen <= u64::from(self.cfg.warmup) {
            0.0
        } else {
            score_from_p(p)
        };
        // A hard limit overrides the statistics, warm-up included.
        let limit = self.cfg.beyond_limit(x);
        let (score, above) = match limit {
            Some(side) => (1.0, side),
            None => (score, above),
        };
        let (score, above, peer_z) = match outside {
            Some(o) if o.score > score => (o.score, o.z > 0.0, Some(o.z)),
            _ => (score, above, None),
        };
        if self.excursions.fires(score, self.cfg.threshold) {
            // This sample fires: keep the state it found, to forget the
            // excursion should it turn out to be a fault that got fixed, and
            // the band it was in, to tell when it is back.
            let mut before = self.clone();
            before.seen -= 1;
            self.before_excursion = Some(Box::new(before));
            // The band the series must come back to: within three spreads
            // of the level, and at least halfway back from the value that
            // fired. (A sample can fire within three spreads, through the
            // tail fit or the bursts; it must not count as "back" itself.)
            self.excursions.set_band(self.level, sigma, x);
        }

        // Learn, after scoring. Every sample teaches, anomalous ones too:
        // a series whose spikes are routine must learn that they are. A
        // fault that an action then fixed is unlearnt as a whole, see
        // `forget_excursion`.
        // A change after a perfectly flat stretch (no spread at all) is as
        // surprising as it gets, but it is no sample of the usual surprise.
        let defined = sigma > 0.0 || dev == 0.0;
        if defined {
            self.tails[0].learn(s_level, self.cfg.calibration_half_life);
        }
        if let Some((_, s)) = season {
            self.tails[1].learn(s, self.cfg.calibration_half_life);
        }
        if defined {
            // The unlogged fits learn excesses capped at LIN_CAP mean
            // excesses: they exist to model a light tail, and one outlier
            // (or the first samples of a level shift) must not flip a
            // Gaussian series to "heavy" for thousands of samples. A truly
            // heavy tail still shows: its capped excesses pile up at the
            // cap, their spread stays large and the shape stays above 0.
            self.lin_tail
                .learn_capped(z_level, self.cfg.calibration_half_life, LIN_CAP);
            self.lin_burst = lb;
            self.lin_burst_tail
                .learn_capped(lb, self.cfg.calibration_half_life, LIN_CAP);
            self.burst[0] = b0;
            self.tails[2].learn(b0, self.cfg.calibration_half_life);
        }
        if let Some(b1) = b1 {
            self.burst[1] = b1;
            self.tails[3].learn(b1, self.cfg.calibration_half_life);
        }
        self.learn_level(x, dev, sigma);
        self.learn_profile(ts_ms, x);
        self.step_excursion(ts_ms, score, x, limit.is_some(), above, peer_z)
    }

    /// Forgets the current excursion, if any, keeping everything learnt.
    ///
    /// Live watching calls this after back-filling a series from history:
    /// an excursion that began in the past must not reach the rule engine as
    /// if it had just been seen. If the anomaly still holds, the next live
    /// sample fires it anew.
    pub fn end_excursion(&mut self) {
        self.excursions.end();
        self.before_excursion = None;
    }

    /// Ends the current excursion and forgets everything its samples
    /// taught: the state returns to what it was just before the sample that
    /// fired. Returns false (and changes nothing) outside an excursion.
    ///
    /// The rule engine calls this when an action on the series was verified
    /// to have recovered it: the excursion was a fault, now fixed, not a new
    /// normal, and the next fault must look as anomalous as this one did.
    /// Samples between the onset and this call are forgotten too (they were
    /// the fault, or the few normal samples that proved it fixed).
    pub fn forget_excursion(&mut self) -> bool {
        if self.excursions.current().is_none() {
            return false;
        }
        match self.before_excursion.take() {
            Some(before) => *self = *before,
            None => self.end_excursion(),
        }
        true
    }

    fn learn_level(&mut self, x: f64, dev: f64, sigma: f64) {
        let bound = CLIP_SIGMAS * sigma;
        let clipped = if sigma > 0.0 {
            self.level + dev.clamp(-bound, bound)
        } else {
            x
        };
        let abs_dev = (clipped - self.level).abs();
        // Every average is a plain running mean over its first samples, then
        // exponentially weighted, so none starts biased towards 0.
        let n = self.seen as f64;
        self.level += self.level_a.max(1.0 / n) * (clipped - self.level);
        let n_dev = (n - 1.0).max(1.0);
        self.spread += self.spread_a.max(1.0 / n_dev) * (abs_dev - self.spread);
        self.floor_spread += self.floor_a.max(1.0 / n_dev) * (dev.abs() - self.floor_spread);
    }

    /// Smoothing factor of a profile bucket: a half-life of
    /// `daily_half_life_days` days, in updates of one bucket (the series'
    /// samples per day, measured from its timestamps, over the bucket
    /// count). Recomputed every 256 samples.
    fn profile_factor(&mut self, ts_ms: i64, nb: usize) -> f32 {
        if self.profile_a_at == 0 || self.seen - self.profile_a_at >= 256 {
            let span = ts_ms.saturating_sub(self.first_ts);
            let per_day = if span > 0 {
                (self.seen - 1) as f64 * DAY_MS as f64 / span as f64
            } else {
                1.0
            };
            let per_bucket = (per_day / nb as f64).max(1.0);
            self.profile_a = factor(self.cfg.daily_half_life_days * per_bucket) as f32;
            self.profile_a_at = self.seen;
        }
        self.profile_a
    }

    fn learn_profile(&mut self, ts_ms: i64, x: f64) {
        let nb = self
            .cfg
            .daily_buckets
            .min(DetectorConfig::MAX_DAILY_BUCKETS) as usize;
        if nb == 0 {
            return;
        }
        let a = self.profile_factor(ts_ms, nb);
        let bk = &mut self.profile[bucket_of(ts_ms, nb)];
        bk.n = bk.n.saturating_add(1);
        let x = x as f32;
        if bk.n == 1 {
            bk.mean = x;
            return;
        }
        let a = a.max(1.0 / bk.n as f32);
        let d = x - bk.mean;
        bk.mad += a * (d.abs() - bk.mad);
        bk.mean += a * d;
    }

    /// One step of the shared excursion logic; the snapshot kept for
    /// [`Self::forget_excursion`] goes when the excursion ends.
    fn step_excursion(
        &mut self,
        ts_ms: i64,
        score: f64,
        x: f64,
        beyond_limit: bool,
        above: bool,
        peer_z: Option<f64>,
    ) -> Scored {
        let scored = self
            .excursions
            .step(&self.cfg, ts_ms, score, x, beyond_limit, above, peer_z);
        if scored.excursion.is_none() {
            self.before_excursion = None;
        }
        scored
    }
}

/// The adaptive detector's online tail fit, lent to the other detectors of
/// this crate (changepoint, seasonal, ensemble) so that every score is
/// calibrated the same way: a surprise statistic in, a tail probability
/// out (see the `tail` module for the model).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
pub(crate) struct Calibrator(TailFit);

impl Calibrator {
    /// A fit whose tail never starts below `u_min`.
    pub(crate) const fn new(u_min: f64) -> Self {
        Calibrator(TailFit::new(u_min))
    }

    /// Tail probability of `s` under the fit so far (1 before 100 samples).
    pub(crate) fn p(&self, s: f64) -> f64 {
        self.0.p(s)
    }

    /// A fit whose mean excess never falls below `beta_floor` (see the
    /// `tail` module).
    pub(crate) fn with_beta_floor(u_min: f64, beta_floor: f64) -> Self {
        Calibrator(TailFit::with_beta_floor(u_min, beta_floor))
    }

    /// The same fit, whose exceedance rate never falls below one excess per
    /// memory span (see the `tail` module).
    pub(crate) const fn floor_rate(self) -> Self {
        Calibrator(self.0.floor_rate())
    }

    /// Learns `s` with a memory of `half_life` samples.
    pub(crate) fn learn(&mut self, s: f64, half_life: f64) {
        self.0.learn(s, half_life);
    }

    /// Learns `s` with its excess over the tail threshold capped at `cap`
    /// mean excesses (the adaptive detector's unlogged fits).
    pub(crate) fn learn_capped(&mut self, s: f64, half_life: f64, cap: f64) {
        self.0.learn_capped(s, half_life, cap);
    }

    /// Whether the fit finds a light tail (see [`AdaptiveDetector`]'s
    /// unlogged fits).
    pub(crate) fn is_light(&self) -> bool {
        self.0.is_light()
    }
}

impl AdaptiveDetector {
    /// Whether the detector holds the boxed snapshot of an open excursion
    /// (for the memory accounting of [`crate::Detector::state_bytes`]).
    pub(crate) fn forget_snapshot_held(&self) -> bool {
        self.before_excursion.is_some()
    }
}

/// The smoothing factor of an exponentially weighted average with the given
/// half-life in samples, for the other detectors of this crate.
pub(crate) fn ew_factor(half_life: f64) -> f64 {
    factor(half_life)
}

/// Hour-of-day bucket (of `nb` per day, UTC) of a timestamp.
fn bucket_of(ts_ms: i64, nb: usize) -> usize {
    (ts_ms.rem_euclid(DAY_MS) * nb as i64 / DAY_MS) as usize
}

#[cfg(test)]
mod tests;
