//! The novelty detector: how new a sample is against every baseline the
//! series has, each with its own memory.
//!
//! Draft (issue 11); module docs to be written once the design settles.

use super::adaptive::{ew_factor, Calibrator};
use super::{Assessment, Model};
use crate::DetectorConfig;

const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
const CLIP_SIGMAS: f64 = 3.0;
const FLOOR_RATIO: f64 = 0.25;
const FLOOR_SLOWDOWN: f64 = 10.0;
const DAY_MS: i64 = 86_400_000;
const MAX_BUCKETS: usize = DetectorConfig::MAX_DAILY_BUCKETS as usize;
const BUCKET_READY: u32 = 3;
const PROFILE_READY_MS: i64 = 2 * DAY_MS;
const PROFILE_SCORED_MS: i64 = 3 * DAY_MS;
const BURST_HL: f64 = 10.0;
const LN_3: f64 = 1.098_612_288_668_109_8;
const ROUGH_FAST_HL: f64 = 10.0;
const ROUGH_SLOW_HL: f64 = 1000.0;
/// A range excess is scored as this many times its fraction of the range.
const RANGE_SCALE: f64 = 10.0;
/// Excesses fed to the unlogged fits are capped at this many mean excesses.
const LIN_CAP: f64 = 4.0;
/// Smallest mean excess of the range statistic (a fifth of the range).
const RANGE_BETA_FLOOR: f64 = 2.0;

/// EXPERIMENTAL (issue 11): which features count (bit per feature).
pub(crate) static LAB_FEATURES: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(0b11111);

/// EXPERIMENTAL (issue 11): which fits floor their rate.
pub(crate) static LAB_FLOOR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

const F_HW: u32 = 1;
const F_DAILY: u32 = 2;
const F_BURST: u32 = 4;
const F_RANGE: u32 = 8;
const F_ROUGH: u32 = 16;

/// Surprise of a deviation `dev` with spread `sigma`: `ln(1 + |z|)`.
fn surprise(dev: f64, sigma: f64) -> f64 {
    if dev == 0.0 {
        0.0
    } else if sigma > 0.0 {
        (dev.abs() / sigma).ln_1p()
    } else {
        1e6f64.ln_1p()
    }
}

/// A level with a winsorised spread and a slow, unclipped floor spread.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    level: f64,
    spread: f64,
    floor: f64,
}

impl Level {
    fn sigma(&self, min_spread: f64) -> f64 {
        (MAD_TO_SIGMA * self.spread)
            .max(FLOOR_RATIO * MAD_TO_SIGMA * self.floor)
            .max(min_spread)
    }

    /// Learns deviation `dev` (from the prediction) given the spread
    /// `sigma` it was judged with; the level moves by the clipped `dev`.
    fn learn(&mut self, dev: f64, sigma: f64, n: f64, a: (f64, f64, f64)) {
        let clipped = if sigma > 0.0 {
            let b = CLIP_SIGMAS * sigma;
            dev.clamp(-b, b)
        } else {
            dev
        };
        self.level += a.0.max(1.0 / n) * clipped;
        let n_dev = (n - 1.0).max(1.0);
        self.spread += a.1.max(1.0 / n_dev) * (clipped.abs() - self.spread);
        self.floor += a.2.max(1.0 / n_dev) * (dev.abs() - self.floor);
    }
}

/// One bucket of the hour-of-day tables.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Mean of the bucket's samples (the profile).
    mean: f32,
    /// Mean absolute deviation from `mean`.
    mad: f32,
    /// Seasonal offset: the bucket's samples minus the deseasonalised level.
    offset: f32,
    /// Samples seen.
    n: u32,
}

/// The novelty model (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Novelty {
    features: u32,
    min_spread: f64,
    cal_hl: f64,
    rates: (f64, f64, f64),
    burst_a: f64,
    rough_fast_a: f64,
    rough_slow_a: f64,
    nb: usize,
    profile_hl_days: f64,
    seen: u64,
    first_ts: i64,
    /// Recent level of the raw series (its surprise feeds the burst).
    raw: Level,
    /// Level of the deseasonalised series (Holt-Winters' level).
    hw: Level,
    burst: f64,
    hi: f64,
    lo: f64,
    last: f64,
    rough_fast: f64,
    rough_slow: f64,
    profile_a: f32,
    profile_a_at: u64,
    buckets: [Bucket; MAX_BUCKETS],
    /// Tail fits: Holt-Winters residual, daily profile, burst, range, roughness.
    tails: [Calibrator; 5],
    /// Unlogged fits of the Holt-Winters residual and of the burst's
    /// unlogged twin, used while they find a light tail.
    lin: [Calibrator; 2],
    lin_burst: f64,
    use_lin: bool,
}

impl Novelty {
    pub(crate) fn new(cfg: &DetectorConfig) -> Self {
        Novelty {
            features: LAB_FEATURES.load(std::sync::atomic::Ordering::Relaxed),
            min_spread: cfg.min_spread,
            cal_hl: cfg.calibration_half_life,
            rates: (
                ew_factor(cfg.level_half_life),
                ew_factor(cfg.spread_half_life),
                ew_factor(FLOOR_SLOWDOWN * cfg.spread_half_life),
            ),
            burst_a: ew_factor(BURST_HL),
            rough_fast_a: ew_factor(ROUGH_FAST_HL),
            rough_slow_a: ew_factor(ROUGH_SLOW_HL),
            nb: cfg.daily_buckets.min(DetectorConfig::MAX_DAILY_BUCKETS) as usize,
            profile_hl_days: cfg.daily_half_life_days,
            seen: 0,
            first_ts: 0,
            raw: Level::default(),
            hw: Level::default(),
            burst: 0.0,
            hi: 0.0,
            lo: 0.0,
            last: 0.0,
            rough_fast: 0.0,
            rough_slow: 0.0,
            profile_a: 0.0,
            profile_a_at: 0,
            buckets: [Bucket::default(); MAX_BUCKETS],
            tails: {
                let fl = LAB_FLOOR.load(std::sync::atomic::Ordering::Relaxed);
                let f = |c: Calibrator, bit: u32| if fl & bit != 0 { c.floor_rate() } else { c };
                [
                    f(Calibrator::new(LN_3), 1),
                    f(Calibrator::new(LN_3), 2),
                    f(Calibrator::new(std::f64::consts::LN_2), 4),
                    f(Calibrator::with_beta_floor(0.0, RANGE_BETA_FLOOR), 8),
                    f(Calibrator::new(0.5), 16),
                ]
            },
            lin: {
                let fl = LAB_FLOOR.load(std::sync::atomic::Ordering::Relaxed);
                let f = |c: Calibrator| if fl & 32 != 0 { c.floor_rate() } else { c };
                [f(Calibrator::new(2.0)), f(Calibrator::new(1.0))]
            },
            lin_burst: 0.0,
            use_lin: LAB_FEATURES.load(std::sync::atomic::Ordering::Relaxed) & 32 != 0,
        }
    }

    fn bucket_of(&self, ts_ms: i64) -> usize {
        (ts_ms.rem_euclid(DAY_MS) * self.nb as i64 / DAY_MS) as usize
    }

    fn profile_factor(&mut self, ts_ms: i64) -> f32 {
        if self.profile_a_at == 0 || self.seen - self.profile_a_at >= 256 {
            let span = ts_ms.saturating_sub(self.first_ts);
            let per_day = if span > 0 {
                (self.seen - 1) as f64 * DAY_MS as f64 / span as f64
            } else {
                1.0
            };
            let per_bucket = (per_day / self.nb as f64).max(1.0);
            self.profile_a = ew_factor(self.profile_hl_days * per_bucket) as f32;
            self.profile_a_at = self.seen;
        }
        self.profile_a
    }

    fn learn_profile(&mut self, ts_ms: i64, x: f64) {
        if self.nb == 0 {
            return;
        }
        let a = self.profile_factor(ts_ms);
        let k = self.bucket_of(ts_ms);
        let hw_level = self.hw.level;
        let bk = &mut self.buckets[k];
        bk.n = bk.n.saturating_add(1);
        let x32 = x as f32;
        let target = (x - hw_level) as f32;
        if bk.n == 1 {
            bk.mean = x32;
            bk.offset = target;
            return;
        }
        let a = a.max(1.0 / bk.n as f32);
        let d = x32 - bk.mean;
        bk.mad += a * (d.abs() - bk.mad);
        bk.mean += a * d;
        bk.offset += a * (target - bk.offset);
    }
}

impl Model for Novelty {
    fn update(&mut self, ts_ms: i64, x: f64) -> Assessment {
        self.seen += 1;
        let n = self.seen as f64;
        if self.seen == 1 {
            self.first_ts = ts_ms;
            self.raw.level = x;
            self.hw.level = x;
            self.hi = x;
            self.lo = x;
            self.last = x;
            self.learn_profile(ts_ms, x);
            return Assessment {
                score: 0.0,
                above: true,
                level: x,
                sigma: 0.0,
            };
        }
        let age = ts_ms.saturating_sub(self.first_ts);
        let k = if self.nb > 0 {
            self.bucket_of(ts_ms)
        } else {
            0
        };
        let bk = self.buckets[k];
        let profile_ready = self.nb > 0 && bk.n >= BUCKET_READY && age >= PROFILE_READY_MS;
        let profile_scored = age >= PROFILE_SCORED_MS;

        // Burst: running mean of the surprise against the recent level.
        let sig = self.raw.sigma(self.min_spread);
        let dev = x - self.raw.level;
        let s_raw = surprise(dev, sig);
        let burst = self.burst + self.burst_a * (s_raw - self.burst);
        let z_raw = if sig > 0.0 { dev.abs() / sig } else { 0.0 };
        let lin_burst = self.lin_burst + self.burst_a * (z_raw - self.lin_burst);

        // Holt-Winters residual: deseasonalised level plus the bucket's offset.
        let seas = if profile_ready {
            f64::from(bk.offset)
        } else {
            0.0
        };
        let hw_pred = self.hw.level + seas;
        let hw_sig = self.hw.sigma(self.min_spread);
        let e = x - hw_pred;
        let s_hw = surprise(e, hw_sig);
        let z_hw = if hw_sig > 0.0 { e.abs() / hw_sig } else { 0.0 };

        // Daily profile (long memory, not level-adjusted).
        let daily = profile_ready.then(|| {
            let d = x - f64::from(bk.mean);
            let s = (MAD_TO_SIGMA * f64::from(bk.mad)).max(self.min_spread);
            (d, surprise(d, s))
        });

        // Range: beyond everything seen.
        let r = self.hi - self.lo;
        let ex = (x - self.hi).max(self.lo - x).max(0.0);
        let s_range = if r > 0.0 {
            RANGE_SCALE * ex / r
        } else if ex > 0.0 {
            RANGE_SCALE
        } else {
            0.0
        };

        // Roughness: recent size of steps against its long-run size.
        let step = (x - self.last).abs();
        let rough_fast =
            self.rough_fast + self.rough_fast_a.max(1.0 / n) * (step - self.rough_fast);
        let s_rough = if self.rough_slow > 0.0 {
            (rough_fast.max(1e-12) / self.rough_slow).ln().abs()
        } else {
            0.0
        };

        let f = self.features;
        let mut best = (1.0f64, e > 0.0);
        let mut k_features: f64 = 0.0;
        let mut consider = |on: bool, p: f64, above: bool| {
            if on {
                k_features += 1.0;
                if p < best.0 {
                    best = (p, above);
                }
            }
        };
        let p_hw = if self.use_lin && self.lin[0].is_light() {
            self.lin[0].p(z_hw)
        } else {
            self.tails[0].p(s_hw)
        };
        let p_burst = if self.use_lin && self.lin[1].is_light() {
            self.lin[1].p(lin_burst)
        } else {
            self.tails[2].p(burst)
        };
        consider(f & F_HW != 0, p_hw, e > 0.0);
        if let Some((d, s)) = daily {
            consider(
                f & F_DAILY != 0 && profile_scored,
                self.tails[1].p(s),
                d > 0.0,
            );
        }
        consider(f & F_BURST != 0, p_burst, dev > 0.0);
        consider(f & F_RANGE != 0, self.tails[3].p(s_range), x > self.hi);
        consider(f & F_ROUGH != 0, self.tails[4].p(s_rough), dev > 0.0);
        let p = (k_features.max(1.0) * best.0).min(1.0);

        // Learn, after scoring.
        let hl = self.cal_hl;
        if hw_sig > 0.0 || e == 0.0 {
            self.tails[0].learn(s_hw, hl);
            self.lin[0].learn_capped(z_hw, hl, LIN_CAP);
        }
        if let Some((_, s)) = daily {
            self.tails[1].learn(s, hl);
        }
        if sig > 0.0 || dev == 0.0 {
            self.tails[2].learn(burst, hl);
            self.burst = burst;
            self.lin[1].learn_capped(lin_burst, hl, LIN_CAP);
            self.lin_burst = lin_burst;
        }
        self.tails[3].learn(s_range, hl);
        self.tails[4].learn(s_rough, hl);
        self.rough_fast = rough_fast;
        self.rough_slow += self.rough_slow_a.max(1.0 / n) * (step - self.rough_slow);
        self.last = x;
        self.hi = self.hi.max(x);
        self.lo = self.lo.min(x);
        self.raw.learn(dev, sig, n, self.rates);
        self.hw.learn(e, hw_sig, n, self.rates);
        self.learn_profile(ts_ms, x);
        Assessment {
            score: crate::score_from_p(p),
            above: best.1,
            level: hw_pred,
            sigma: hw_sig,
        }
    }

    fn baseline(&self) -> (f64, f64) {
        (self.hw.level, self.hw.sigma(self.min_spread))
    }
}
