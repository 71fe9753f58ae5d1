//! The changepoint detector: Bayesian online changepoint detection.
//!
//! Adams & MacKay, "Bayesian Online Changepoint Detection" (2007): the
//! detector keeps a posterior over the *run length* `r`, the number of
//! samples since the signal's regime last changed. Each run length has its
//! own Normal-Gamma posterior of the regime's mean and variance (Murphy,
//! "Conjugate Bayesian analysis of the Gaussian distribution", 2007), whose
//! Student-t predictive says how likely the next sample is if the regime
//! began `r` samples ago. A new sample grows every run length by one (each
//! weighted by its predictive probability of the sample) or resets it to 0
//! with a constant hazard `1 / expected_run`. A level shift or a variance
//! shift makes the young run lengths predict far better than the old ones,
//! so the posterior mass moves to them within a few samples.
//!
//! The score is the posterior probability that the current regime began
//! fewer than `within` samples ago, calibrated against its own history with
//! the adaptive detector's tail fit (see [`Calibrator`]) and reported on the
//! crate's log scale ([`score_from_p`]).
//!
//! # Why not augurs-changepoint
//!
//! augurs-changepoint wraps the `changepoint` crate, whose dependency tree
//! brings nalgebra, ndarray, rayon, argmin, peroxide and rv (about 130 more
//! crates than `detect` had), for an algorithm that is sixty lines here.
//! Its run-length posterior also grows with the series (it is pruned by
//! probability, not bounded), which the crate's fixed per-series state
//! rules out.
//!
//! # Bounded run lengths
//!
//! Run lengths 0 to [`RUNS`]` - 1` are tracked; the last slot absorbs every
//! longer run, and its posterior forgets (its pseudo-count stays that of a
//! run of `RUNS - 1` samples), so it describes the recent past of a long
//! regime. State is fixed: [`RUNS`] means, scales and weights, about 700
//! bytes, no allocation. Cost: one logarithm pair and one exponential per
//! run length and sample.
//!
//! The samples are standardised first with a slow running level and spread
//! (`scale_half_life`), so that the Normal-Gamma prior (mean 0, variance
//! about 1) suits any signal's unit.

use std::sync::OnceLock;

use statrs::function::gamma::ln_gamma;

use super::adaptive::{ew_factor, Calibrator};
use super::Assessment;
use crate::config::{ChangepointConfig, DetectorConfig};

/// Run lengths tracked (the last one absorbs every longer run).
pub(crate) const RUNS: usize = 24;

/// `sqrt(pi/2)`: standard deviation over mean absolute deviation of a
/// normal distribution.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Normal-Gamma prior, in standardised units: mean 0 worth `KAPPA0`
/// samples; the precision's Gamma(`ALPHA0`, `BETA0`) puts the variance near
/// `BETA0 / (ALPHA0 - 1) = 1`, the scale the samples were standardised to.
const MU0: f64 = 0.0;
const KAPPA0: f64 = 1.0;
const ALPHA0: f64 = 2.0;
const BETA0: f64 = 1.0;

/// Standardised values are clipped to this many spreads: beyond it the
/// predictive of every run length is negligible anyway, and the squares
/// stay finite.
const Z_CLIP: f64 = 1e3;

/// The posterior that the regime is younger than `within` is in the tail
/// only beyond one half (`-ln(1 - 0.5)`).
const U_MIN: f64 = std::f64::consts::LN_2;

/// Smallest probability of an old regime that the calibration sees (a
/// surprise of `-ln(1e-30)`, about 69): beyond it every shift is equally
/// certain, and one extreme value must not stretch the tail fit.
const OLD_FLOOR: f64 = 1e-30;

/// The constants of the Student-t predictive of run length `r`, which
/// depend on `r` alone (the pseudo-counts `kappa` and `alpha` grow by 1 and
/// 1/2 a sample).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
struct RunConst {
    /// `ln Γ(α + ½) − ln Γ(α) − ½ ln(2π (κ + 1) / κ)`.
    c: f64,
    /// `α + ½`, the exponent of the predictive's kernel.
    e: f64,
    /// `κ / (2 (κ + 1))`, the weight of a squared deviation in `β`.
    k: f64,
    /// `κ`, to update the mean.
    kappa: f64,
}

fn run_consts() -> &'static [RunConst; RUNS] {
    static CONSTS: OnceLock<[RunConst; RUNS]> = OnceLock::new();
    CONSTS.get_or_init(|| {
        std::array::from_fn(|r| {
            let kappa = KAPPA0 + r as f64;
            let alpha = ALPHA0 + 0.5 * r as f64;
            RunConst {
                c: ln_gamma(alpha + 0.5)
                    - ln_gamma(alpha)
                    - 0.5 * (2.0 * std::f64::consts::PI * (kappa + 1.0) / kappa).ln(),
                e: alpha + 0.5,
                k: kappa / (2.0 * (kappa + 1.0)),
                kappa,
            }
        })
    })
}

/// Bayesian online changepoint detection over bounded run lengths (see the
/// module docs). This is the model; [`Detector`](crate::Detector) adds the
/// warm-up, hard limits and excursions.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub(crate) struct Changepoint {
    hazard: f64,
    within: usize,
    calibration_half_life: f64,
    scale_a: f64,
    seen: u64,
    /// Slow running level and mean absolute deviation (standardisation).
    level: f64,
    mad: f64,
    /// Posterior of the run length, and each run length's Normal-Gamma
    /// mean and rate `β`.
    weight: [f64; RUNS],
    mu: [f64; RUNS],
    beta: [f64; RUNS],
    cal: Calibrator,
}

impl Changepoint {
    pub(crate) fn new(cfg: &DetectorConfig) -> Self {
        let ChangepointConfig {
            expected_run,
            within,
            scale_half_life,
        } = cfg.changepoint;
        let mut weight = [0.0; RUNS];
        weight[0] = 1.0;
        Changepoint {
            hazard: 1.0 / expected_run.max(2.0),
            within: (within as usize).clamp(1, RUNS - 1),
            calibration_half_life: cfg.calibration_half_life,
            scale_a: ew_factor(scale_half_life),
            seen: 0,
            level: 0.0,
            mad: 0.0,
            weight,
            mu: [MU0; RUNS],
            beta: [BETA0; RUNS],
            cal: Calibrator::new(U_MIN),
        }
    }

    fn sigma(&self) -> f64 {
        MAD_TO_SIGMA * self.mad
    }

    /// The run-length posterior's probability that the regime began fewer
    /// than `within` samples ago, as `(p, 1 - p)` (the complement summed
    /// directly, so that it keeps its precision near `p = 1`).
    fn young(&self) -> (f64, f64) {
        let young: f64 = self.weight[..self.within].iter().sum();
        let old: f64 = self.weight[self.within..].iter().sum();
        let total = young + old;
        (young / total, old / total)
    }

    /// Scores sample `x`, then learns it.
    pub(crate) fn update(&mut self, x: f64) -> Assessment {
        self.seen += 1;
        let (level, sigma) = (self.level, self.sigma());
        if self.seen == 1 {
            self.level = x;
            return Assessment {
                score: 0.0,
                above: true,
                level: x,
                sigma: 0.0,
            };
        }
        let dev = x - level;
        let z = if sigma > 0.0 {
            (dev / sigma).clamp(-Z_CLIP, Z_CLIP)
        } else if dev == 0.0 {
            0.0
        } else {
            Z_CLIP.copysign(dev)
        };
        self.step(z);
        // The first samples are all "young": the posterior starts with
        // every run at length 0. They say nothing about this signal's usual
        // changepoint probability, so they are neither scored nor learnt.
        let p = if self.seen > 2 * RUNS as u64 {
            let (_, old) = self.young();
            let u = -old.max(OLD_FLOOR).ln();
            let p = self.cal.p(u);
            self.cal.learn(u, self.calibration_half_life);
            p
        } else {
            1.0
        };
        // Standardisation learns after scoring: a plain running mean at
        // first, then exponentially weighted.
        let n = self.seen as f64;
        let a = self.scale_a.max(1.0 / n);
        let a_dev = self.scale_a.max(1.0 / (n - 1.0));
        self.mad += a_dev * (dev.abs() - self.mad);
        self.level += a * dev;
        Assessment {
            score: crate::score_from_p(p),
            above: dev > 0.0,
            level,
            sigma,
        }
    }

    /// One step of the run-length recursion with standardised sample `z`.
    fn step(&mut self, z: f64) {
        let consts = run_consts();
        let mut lp = [0.0; RUNS];
        let mut max_lp = f64::NEG_INFINITY;
        for r in 0..RUNS {
            let c = &consts[r];
            let d = z - self.mu[r];
            let b = self.beta[r];
            lp[r] = c.c - 0.5 * b.ln() - c.e * (c.k * d * d / b).ln_1p();
            if self.weight[r] > 0.0 {
                max_lp = max_lp.max(lp[r]);
            }
        }
        // Joint weights of (run length, samples so far), rescaled by the
        // largest predictive so that nothing underflows.
        let mut grown = [0.0; RUNS];
        for r in 0..RUNS {
            grown[r] = self.weight[r] * (lp[r] - max_lp).exp();
        }
        let total: f64 = grown.iter().sum();
        let h = self.hazard;
        let mut weight = [0.0; RUNS];
        weight[0] = h * total;
        weight[1..RUNS].copy_from_slice(&grown[..RUNS - 1]);
        weight[RUNS - 1] += grown[RUNS - 1];
        for w in &mut weight[1..] {
            *w *= 1.0 - h;
        }
        let norm: f64 = weight.iter().sum();
        if !(norm > 0.0 && norm.is_finite()) {
            // Cannot happen with finite z (every predictive is positive and
            // the largest is rescaled to 1); start afresh rather than carry
            // NaN.
            self.weight = [0.0; RUNS];
            self.weight[0] = 1.0;
            self.mu = [MU0; RUNS];
            self.beta = [BETA0; RUNS];
            return;
        }
        // Posterior parameters: run length r + 1 is run length r updated
        // with z; the last slot merges the run that reaches it with the
        // older ones it holds, which forget so as to keep its pseudo-count.
        let last = RUNS - 1;
        let upd = |mu: &[f64; RUNS], beta: &[f64; RUNS], r: usize| {
            let c = &consts[r];
            let d = z - mu[r];
            (mu[r] + d / (c.kappa + 1.0), beta[r] + c.k * d * d)
        };
        let (mu_in, beta_in) = upd(&self.mu, &self.beta, last - 1);
        let (mu_old, beta_old) = upd(&self.mu, &self.beta, last);
        // Forgetting: keep alpha at the slot's value, scale beta alike.
        let alpha_last = ALPHA0 + 0.5 * last as f64;
        let beta_old = beta_old * alpha_last / (alpha_last + 0.5);
        let (w_in, w_old) = (grown[last - 1], grown[last]);
        let (mu_last, beta_last) = if w_in + w_old > 0.0 {
            let f = w_in / (w_in + w_old);
            (
                mu_old + f * (mu_in - mu_old),
                beta_old + f * (beta_in - beta_old),
            )
        } else {
            (mu_old, beta_old)
        };
        for r in (1..last).rev() {
            let (m, b) = upd(&self.mu, &self.beta, r - 1);
            self.mu[r] = m;
            self.beta[r] = b;
        }
        self.mu[last] = mu_last;
        self.beta[last] = beta_last;
        self.mu[0] = MU0;
        self.beta[0] = BETA0;
        for (w, n) in self.weight.iter_mut().zip(weight) {
            *w = n / norm;
        }
    }

    /// The slow level and spread (a standard deviation) the samples are
    /// standardised with.
    pub(crate) fn baseline(&self) -> (f64, f64) {
        (self.level, self.sigma())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    fn noise(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = Normal::new(mean, sd).unwrap();
        (0..n).map(|_| d.sample(&mut rng)).collect()
    }

    fn raw_scores(xs: &[f64]) -> Vec<f64> {
        let mut m = Changepoint::new(&DetectorConfig::default());
        xs.iter().map(|&x| m.update(x).score).collect()
    }

    #[test]
    fn the_run_length_posterior_stays_a_distribution() {
        let mut m = Changepoint::new(&DetectorConfig::default());
        for x in noise(1, 3000, 5.0, 2.0) {
            m.update(x);
            let s: f64 = m.weight.iter().sum();
            assert!((s - 1.0).abs() < 1e-9, "weights sum to {s}");
            assert!(m.weight.iter().all(|w| w.is_finite() && *w >= 0.0));
        }
        // In a long stable regime the mass sits on the longest run.
        assert!(m.weight[RUNS - 1] > 0.5, "{:?}", m.weight);
    }

    #[test]
    fn a_level_shift_scores_far_above_the_noise_before_it() {
        let mut xs = noise(2, 3000, 100.0, 5.0);
        xs.extend(noise(3, 200, 130.0, 5.0));
        let s = raw_scores(&xs);
        let noise_max = s[1000..3000].iter().cloned().fold(0.0, f64::max);
        let shift_max = s[3000..3010].iter().cloned().fold(0.0, f64::max);
        assert!(
            shift_max > noise_max + 0.1,
            "shift {shift_max} vs noise {noise_max}"
        );
    }

    #[test]
    fn a_variance_shift_is_found() {
        let mut xs = noise(4, 3000, 0.0, 1.0);
        xs.extend(noise(5, 200, 0.0, 6.0));
        let s = raw_scores(&xs);
        let noise_max = s[1000..3000].iter().cloned().fold(0.0, f64::max);
        let shift_max = s[3000..3030].iter().cloned().fold(0.0, f64::max);
        assert!(
            shift_max > noise_max,
            "shift {shift_max} vs noise {noise_max}"
        );
    }

    #[test]
    fn no_look_ahead() {
        let mut xs = noise(6, 2000, 10.0, 1.0);
        xs.extend(noise(7, 500, 14.0, 1.0));
        let full = raw_scores(&xs);
        let cut = raw_scores(&xs[..2100]);
        assert_eq!(full[..2100], cut[..]);
    }

    #[test]
    fn a_flat_line_then_a_step_stays_finite() {
        let mut xs = vec![3.0; 500];
        xs.extend(vec![4.0; 100]);
        for s in raw_scores(&xs) {
            assert!((0.0..=1.0).contains(&s));
        }
    }

    #[test]
    fn state_is_fixed_size() {
        // Inline arrays, no heap: the size is all there is.
        assert!(std::mem::size_of::<Changepoint>() <= 720);
    }
}
