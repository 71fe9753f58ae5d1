//! The adaptive-threshold detector (experimental rewrite in progress).

use statrs::distribution::{ContinuousCDF, Exp};

use crate::{DetectorConfig, Direction, Excursion, Scored};

const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
const CLIP_SIGMAS: f64 = 3.0;
const P_FLOOR: f64 = 1e-12;
const MAX_BUCKETS: usize = 96;
const SEASON_HL: f64 = 10.0;
const DAY_MS: i64 = 86_400_000;

/// Map a tail probability to a score in [0, 1] on a log scale.
pub fn score_from_p(p: f64) -> f64 {
    if p >= 1.0 {
        0.0
    } else if p <= P_FLOOR {
        1.0
    } else {
        (p.ln() / P_FLOOR.ln()).clamp(0.0, 1.0)
    }
}

fn factor(half_life: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / half_life.max(1.0))
}

/// Online peaks-over-threshold tail fit of a surprise statistic.
#[derive(Debug, Clone, Copy)]
struct TailFit {
    mean: f64,
    var: f64,
    beta: f64,
    rate: f64,
    n: u64,
    exceed: u64,
}

impl TailFit {
    const fn new() -> Self {
        TailFit {
            mean: 0.0,
            var: 0.0,
            beta: 0.0,
            rate: 0.0,
            n: 0,
            exceed: 0,
        }
    }

    fn u(&self, k: f64) -> f64 {
        self.mean + k * self.var.sqrt()
    }

    fn p(&self, s: f64, k: f64, beta_floor: f64) -> f64 {
        let u = self.u(k);
        if s <= u || self.n == 0 {
            return 1.0;
        }
        let beta = self.beta.max(beta_floor);
        let sf = match Exp::new(1.0 / beta) {
            Ok(e) => e.sf(s - u),
            Err(_) => 0.0,
        };
        self.rate * sf
    }

    fn learn(&mut self, s: f64, k: f64, half_life: f64, beta_floor: f64) {
        let u = self.u(k);
        self.n += 1;
        let a = (1.0 / self.n as f64).max(factor(half_life));
        if self.n > 1 {
            let over = s > u;
            self.rate += a * (f64::from(u8::from(over)) - self.rate);
            if over {
                self.exceed += 1;
                let w = (1.0 / self.exceed as f64).max(a / self.rate.max(1e-3)).min(1.0);
                self.beta += w * ((s - u) - self.beta);
            }
        } else {
            self.beta = beta_floor;
        }
        let d = s - self.mean;
        self.mean += a * d;
        self.var += a * (d * (s - self.mean) - self.var);
    }
}

/// Online adaptive-threshold detector for one series.
#[derive(Debug, Clone)]
pub struct AdaptiveDetector {
    cfg: DetectorConfig,
    alpha: f64,
    beta: f64,
    gamma: f64,
    fast_a: f64,
    seen: u64,
    level: f64,
    spread: f64,
    slow_spread: f64,
    fast: f64,
    tails: [TailFit; 3],
    /// Time-of-day profile: per bucket (EW mean, EW mean abs dev, samples).
    prof: [(f32, f32, u32); MAX_BUCKETS],
    excursion: Option<Excursion>,
    quiet_run: u32,
    /// |z| of the last sample (tuning aid).
    pub last_z: f64,
}

impl AdaptiveDetector {
    /// A detector with the given settings.
    pub fn new(cfg: DetectorConfig) -> Self {
        AdaptiveDetector {
            alpha: factor(cfg.level_half_life),
            beta: factor(cfg.spread_half_life),
            gamma: factor(cfg.floor_half_life),
            fast_a: if cfg.shift_half_life > 0.0 {
                factor(cfg.shift_half_life)
            } else {
                0.0
            },
            cfg,
            seen: 0,
            level: 0.0,
            spread: 0.0,
            slow_spread: 0.0,
            fast: 0.0,
            tails: [TailFit::new(); 3],
            prof: [(0.0, 0.0, 0); MAX_BUCKETS],
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
        (MAD_TO_SIGMA * self.spread)
            .max(self.cfg.floor_ratio * MAD_TO_SIGMA * self.slow_spread)
            .max(self.cfg.min_spread)
    }

    fn surprise(&self, dev: f64, sigma: f64) -> f64 {
        if !self.cfg.direction.watches(dev > 0.0) || dev == 0.0 {
            return 0.0;
        }
        let z = if sigma > 0.0 { dev.abs() / sigma } else { 1e6 };
        z.ln_1p()
    }

    /// Score one sample taken at `ts_ms`.
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
            self.fast = x;
            return Scored::QUIET;
        }
        let sigma = self.sigma();
        let dev = x - self.level;
        let q = self.cfg.tail_quantile; let learn_tails = sigma > 0.0;
        let bf = 0.05;
        let s0 = self.surprise(dev, sigma);
        self.last_z = if sigma > 0.0 { dev.abs() / sigma } else { 0.0 };
        let fast = self.fast + self.fast_a * (x - self.fast);
        let s1 = if self.fast_a > 0.0 {
            self.surprise(fast - self.level, sigma)
        } else {
            0.0
        };
        let mut p = self.tails[0].p(s0, q, bf);
        if self.fast_a > 0.0 {
            p = (2.0 * p.min(self.tails[1].p(s1, q, bf))).min(1.0);
        }
        // Seasonal (time-of-day) feature.
        let nb = (self.cfg.x3 as usize).min(MAX_BUCKETS);
        let mut s2 = 0.0;
        let mut b = 0;
        let mut season_ready = false;
        if nb > 0 {
            b = (ts_ms.rem_euclid(DAY_MS) * nb as i64 / DAY_MS) as usize;
            let (m, d, c) = self.prof[b];
            let ds = (MAD_TO_SIGMA * f64::from(d)).max(self.cfg.x4 * sigma);
            if c >= 3 {
                season_ready = true;
                s2 = self.surprise(x - f64::from(m), ds);
                p = (p * 1.5).min(3.0 * self.tails[2].p(s2, q, bf)).min(1.0);
            }
        }
        let score = if self.seen <= u64::from(self.cfg.warmup) {
            0.0
        } else {
            score_from_p(p)
        };
        if learn_tails {
        self.tails[0].learn(s0, q, self.cfg.tail_half_life, bf);
        }
        if learn_tails && self.fast_a > 0.0 {
            self.tails[1].learn(s1, q, self.cfg.tail_half_life, bf);
        }
        if season_ready && learn_tails {
            self.tails[2].learn(s2, q, self.cfg.tail_half_life, bf);
        }
        if nb > 0 {
            let (m, d, c) = &mut self.prof[b];
            *c += 1;
            if *c == 1 {
                *m = x as f32;
            } else {
                let a = (1.0 / f64::from(*c)).max(factor(self.cfg.x2.max(1.0) * 0.0 + SEASON_HL)) as f32;
                let dev = x as f32 - *m;
                *d += a * (dev.abs() - *d);
                *m += a * dev;
            }
        }
        self.fast = fast;
        self.learn(x, dev, sigma);
        self.step_excursion(ts_ms, score, dev > 0.0)
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
        self.spread += self.beta * (abs_dev - self.spread);
        let raw = if self.cfg.x1 > 0.0 {
            dev.abs().min(self.cfg.x1 * sigma.max(f64::MIN_POSITIVE))
        } else {
            dev.abs()
        };
        let g = self.gamma.max(1.0 / self.seen as f64);
        self.slow_spread += g * (raw - self.slow_spread);
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
                let out = if self.cfg.x2 > 0.0 { 0.0 } else { score };
                if self.quiet_run >= self.cfg.reset_samples {
                    self.excursion = None;
                    self.quiet_run = 0;
                    return Scored {
                        score: out,
                        excursion: None,
                    };
                }
                Scored {
                    score: out,
                    excursion: Some(current),
                }
            }
        }
    }
}

#[allow(dead_code)]
fn _unused(_: Direction) {}
