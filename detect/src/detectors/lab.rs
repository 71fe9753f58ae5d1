//! EXPERIMENTAL (issue 11 research only, not for production): a detector
//! whose features and shares are set by named global parameters, so that
//! the `nabcv` example can measure each idea with cross-validation without a
//! rebuild. Removed once the design is settled.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::adaptive::{ew_factor, Calibrator};
use crate::{AdaptiveDetector, DetectorConfig};

static PARAMS: RwLock<BTreeMap<String, f64>> = RwLock::new(BTreeMap::new());

/// Sets a named parameter for every detector built afterwards.
pub fn set_param(name: &str, v: f64) {
    use std::sync::atomic::Ordering::Relaxed;
    if name == "xi_min" {
        super::adaptive::tail_lab().0.store(v.to_bits(), Relaxed);
    }
    if name == "range_c" {
        super::adaptive::LAB_RANGE_C.store(v.to_bits(), Relaxed);
    }
    if name == "range_dec_hl" {
        super::adaptive::LAB_RANGE_A.store(ew_factor(v).to_bits(), Relaxed);
    }
    if name == "floor" {
        super::novelty::LAB_FLOOR.store(v as u32, Relaxed);
    }
    if name == "features" {
        super::novelty::LAB_FEATURES.store(v as u32, Relaxed);
    }
    if name == "xi_max" {
        super::adaptive::tail_lab().1.store(v.to_bits(), Relaxed);
    }
    PARAMS.write().unwrap().insert(name.to_string(), v);
}

fn param(name: &str, default: f64) -> f64 {
    PARAMS.read().unwrap().get(name).copied().unwrap_or(default)
}

/// `ln(1e-12)`.
const LN_P_FLOOR: f64 = -27.631_021_115_928_547;

fn score_of_p(p: f64) -> f64 {
    crate::score_from_p(p)
}

const SCALES: usize = 3;

/// The experimental detector: the adaptive detector plus extra features.
#[derive(Debug, Clone)]
pub struct LabDetector {
    adaptive: AdaptiveDetector,
    w_adaptive: f64,
    n: u64,
    cal_hl: f64,
    // Multi-scale shift.
    w_shift: f64,
    fast_a: [f64; SCALES],
    slow_a: [f64; SCALES],
    mad_a: [f64; SCALES],
    fast: [f64; SCALES],
    slow: [f64; SCALES],
    mad: [f64; SCALES],
    shift_cal: [Calibrator; SCALES],
    // Range novelty.
    w_range: f64,
    range_a: f64,
    hi: f64,
    lo: f64,
    range_cal: Calibrator,
    warm: u64,
    t_first: i64,
    // Prototype memory (ART-like novelty).
    w_proto: f64,
    proto: Option<Box<Protos>>,
}

const DIM: usize = 8;
const KMAX: usize = 64;

/// A compact online memory of window shapes.
#[derive(Debug, Clone)]
struct Protos {
    ds: u32,
    k: usize,
    lr: f64,
    vig: f64,
    shape: bool,
    cells: [f64; DIM],
    filled: usize,
    cur_n: u32,
    cur_sum: f64,
    cur_max: f64,
    cur_min: f64,
    ma: f64,
    centres: [[f32; DIM]; KMAX],
    usage: [f32; KMAX],
    used: usize,
    typical: f64,
    tn: u64,
    cal: Calibrator,
    hi: f64,
    lo: f64,
    range_a: f64,
}

impl Protos {
    fn new() -> Self {
        Protos {
            ds: param("ds", 4.0) as u32,
            k: (param("k", 24.0) as usize).min(KMAX),
            lr: param("lr", 0.05),
            vig: param("vig", 2.0),
            shape: param("shape", 0.0) > 0.0,
            cells: [0.0; DIM],
            filled: 0,
            cur_n: 0,
            cur_sum: 0.0,
            cur_max: f64::NEG_INFINITY,
            cur_min: f64::INFINITY,
            ma: f64::NAN,
            centres: [[0.0; DIM]; KMAX],
            usage: [0.0; KMAX],
            used: 0,
            typical: 0.0,
            tn: 0,
            cal: Calibrator::new(param("proto_umin", 0.5)),
            hi: f64::NEG_INFINITY,
            lo: f64::INFINITY,
            range_a: ew_factor(param("prange_hl", 20000.0)),
        }
    }

    /// The cell's representative value: the extreme further from the
    /// moving average (keeps spikes, as ARTime's downsampling does).
    fn cell_value(&self) -> f64 {
        let mean = self.cur_sum / f64::from(self.cur_n.max(1));
        if self.ma.is_nan() {
            return mean;
        }
        if (self.cur_max - self.ma).abs() >= (self.cur_min - self.ma).abs() {
            self.cur_max
        } else {
            self.cur_min
        }
    }

    fn vector(&self, last: f64) -> [f32; DIM] {
        let mut v = [0.0f32; DIM];
        let r = (self.hi - self.lo).max(1e-12);
        for i in 0..DIM - 1 {
            v[i] = ((self.cells[i + 1] - self.lo) / r) as f32;
        }
        v[DIM - 1] = ((last - self.lo) / r) as f32;
        if self.shape {
            let mn = v.iter().copied().fold(f32::INFINITY, f32::min);
            let mx = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sp = (mx - mn).max(1e-6);
            for x in &mut v {
                *x = 0.5 * (*x - mn) / sp + 0.5 * *x;
            }
        }
        v
    }

    fn nearest(&self, v: &[f32; DIM]) -> (usize, f64) {
        let mut best = (0, f64::INFINITY);
        for j in 0..self.used {
            let d: f32 = self.centres[j]
                .iter()
                .zip(v)
                .map(|(a, b)| (a - b).abs())
                .sum();
            if f64::from(d) < best.1 {
                best = (j, f64::from(d));
            }
        }
        best
    }

    /// p of sample `x`, then learns.
    fn update(&mut self, x: f64, cal_hl: f64) -> f64 {
        self.hi = self.hi.max(x);
        self.lo = self.lo.min(x);
        self.cur_n += 1;
        self.cur_sum += x;
        self.cur_max = self.cur_max.max(x);
        self.cur_min = self.cur_min.min(x);
        let mut p = 1.0;
        if self.filled >= DIM - 1 && self.used > 0 {
            let v = self.vector(self.cell_value());
            let (_, d) = self.nearest(&v);
            let z = if self.typical > 0.0 {
                d / self.typical
            } else {
                0.0
            };
            p = self.cal.p(z.ln_1p());
        }
        if self.cur_n >= self.ds {
            let c = self.cell_value();
            let mean = self.cur_sum / f64::from(self.cur_n);
            self.ma = if self.ma.is_nan() {
                mean
            } else {
                0.5 * (self.ma + mean)
            };
            if self.filled >= DIM - 1 {
                let v = self.vector(c);
                let (j, d) = if self.used > 0 {
                    self.nearest(&v)
                } else {
                    (0, f64::INFINITY)
                };
                if self.used > 0 {
                    let z = if self.typical > 0.0 {
                        d / self.typical
                    } else {
                        0.0
                    };
                    self.cal.learn(z.ln_1p(), cal_hl / f64::from(self.ds));
                    self.tn += 1;
                    let a = (1.0 / self.tn as f64).max(ew_factor(param("typ_hl", 500.0)));
                    self.typical += a * (d - self.typical);
                }
                for u in &mut self.usage[..self.used] {
                    *u *= 0.999;
                }
                if self.used > 0 && d <= self.vig * self.typical.max(1e-9) {
                    for (c, x) in self.centres[j].iter_mut().zip(&v) {
                        *c += self.lr as f32 * (x - *c);
                    }
                    self.usage[j] += 1.0;
                } else {
                    let slot = if self.used < self.k {
                        self.used += 1;
                        self.used - 1
                    } else {
                        (0..self.used)
                            .min_by(|&a, &b| self.usage[a].total_cmp(&self.usage[b]))
                            .unwrap_or(0)
                    };
                    self.centres[slot] = v;
                    self.usage[slot] = 1.0;
                }
            }
            self.cells.rotate_left(1);
            self.cells[DIM - 1] = c;
            self.filled = (self.filled + 1).min(DIM);
            self.cur_n = 0;
            self.cur_sum = 0.0;
            self.cur_max = f64::NEG_INFINITY;
            self.cur_min = f64::INFINITY;
            // Slow decay of the range towards the cells' middle.
            let mid = 0.5 * (self.hi + self.lo);
            let a = self.range_a * f64::from(self.ds);
            self.hi -= a * (self.hi - mid);
            self.lo += a * (mid - self.lo);
        }
        p
    }
}

impl LabDetector {
    /// A detector with the adaptive settings `cfg` (its threshold ignored).
    pub fn new(cfg: DetectorConfig) -> Self {
        let f = [param("f0", 4.0), param("f1", 16.0), param("f2", 64.0)];
        let s = [param("s0", 100.0), param("s1", 500.0), param("s2", 3000.0)];
        let m = param("madx", 5.0);
        LabDetector {
            cal_hl: param("cal_hl", cfg.calibration_half_life),
            adaptive: AdaptiveDetector::new(DetectorConfig {
                threshold: f64::INFINITY,
                ..cfg
            }),
            w_adaptive: param("w_adaptive", 1.0),
            n: 0,
            w_shift: param("w_shift", 0.0),
            fast_a: f.map(ew_factor),
            slow_a: s.map(ew_factor),
            mad_a: s.map(|s| ew_factor(s * m)),
            fast: [0.0; SCALES],
            slow: [0.0; SCALES],
            mad: [0.0; SCALES],
            shift_cal: [Calibrator::new(param("shift_umin", 1.0)); SCALES],
            w_range: param("w_range", 0.0),
            range_a: ew_factor(param("range_hl", 5000.0)),
            hi: 0.0,
            lo: 0.0,
            range_cal: Calibrator::new(param("range_umin", 0.0)),
            warm: param("warm", 30.0) as u64,
            t_first: 0,
            w_proto: param("w_proto", 0.0),
            proto: (param("w_proto", 0.0) > 0.0).then(|| Box::new(Protos::new())),
        }
    }

    /// Raw score of sample `x` at `ts_ms` (then learnt).
    pub fn update(&mut self, ts_ms: i64, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let a = self.adaptive.update(ts_ms, x).score;
        self.n += 1;
        let n = self.n as f64;
        let mut members: Vec<(f64, f64)> = Vec::with_capacity(5);
        if self.w_adaptive > 0.0 {
            members.push((a, self.w_adaptive));
        }
        if self.n == 1 {
            self.fast = [x; SCALES];
            self.slow = [x; SCALES];
            self.hi = x;
            self.lo = x;
            return 0.0;
        }
        // Multi-scale shift: a fast mean against a slow one, in units of the
        // usual gap between them.
        if self.w_shift > 0.0 {
            let mut p_min: f64 = 1.0;
            for j in 0..SCALES {
                let fa = self.fast_a[j].max(1.0 / n);
                self.fast[j] += fa * (x - self.fast[j]);
                let d = (self.fast[j] - self.slow[j]).abs();
                let z = if self.mad[j] > 0.0 {
                    d / self.mad[j]
                } else if d > 0.0 {
                    1e6
                } else {
                    0.0
                };
                let s = z.ln_1p();
                p_min = p_min.min(self.shift_cal[j].p(s));
                if self.mad[j] > 0.0 || d == 0.0 {
                    self.shift_cal[j].learn(s, self.cal_hl);
                }
                self.slow[j] += self.slow_a[j].max(1.0 / n) * (x - self.slow[j]);
                self.mad[j] += self.mad_a[j].max(1.0 / (n - 1.0)) * (d - self.mad[j]);
            }
            let p = (SCALES as f64 * p_min).min(1.0);
            members.push((score_of_p(p), self.w_shift));
        }
        if self.w_range > 0.0 {
            let r = self.hi - self.lo;
            let ex = (x - self.hi).max(self.lo - x).max(0.0);
            let z = if r > 0.0 {
                ex / r
            } else if ex > 0.0 {
                1.0
            } else {
                0.0
            };
            let s = z * 10.0;
            let p = self.range_cal.p(s);
            self.range_cal.learn(s, self.cal_hl);
            members.push((score_of_p(p), self.w_range));
            self.hi = self.hi.max(x);
            self.lo = self.lo.min(x);
            let mid = self.adaptive.level();
            self.hi -= self.range_a * (self.hi - mid).max(0.0);
            self.lo += self.range_a * (mid - self.lo).max(0.0);
        }
        if let Some(pr) = &mut self.proto {
            let p = pr.update(x, self.cal_hl);
            members.push((score_of_p(p), self.w_proto));
        }
        if self.n <= self.warm {
            return 0.0;
        }
        if self.n == 2 {
            self.t_first = ts_ms - 1;
        }
        let sc = combine(&members);
        let dref = param("dref", 0.0);
        if dref > 0.0 && sc > 0.0 {
            // Alarms per day: p times the samples per day so far.
            let span = (ts_ms - self.t_first).max(1) as f64;
            let per_day = (n - 1.0) * 86_400_000.0 / span;
            let p = (sc * LN_P_FLOOR).exp();
            return score_of_p((p * per_day / dref).min(1.0));
        }
        let nref = param("nref", 0.0);
        if nref > 0.0 && sc > 0.0 {
            let p = (sc * LN_P_FLOOR).exp();
            let eff = n.min(param("ncap", 7200.0));
            return score_of_p((p * eff / nref).min(1.0));
        }
        sc
    }
}

/// Weighted Bonferroni over members `(score, weight)`: weights normalised
/// to shares.
fn combine(members: &[(f64, f64)]) -> f64 {
    let total: f64 = members.iter().map(|m| m.1).sum();
    if total <= 0.0 {
        return 0.0;
    }
    members
        .iter()
        .map(|&(s, w)| s + (w / total).ln() / -LN_P_FLOOR)
        .fold(0.0, f64::max)
        .min(1.0)
}
