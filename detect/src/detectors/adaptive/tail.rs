//! Online peaks-over-threshold calibration of a surprise statistic.
//!
//! Extreme value theory (Pickands–Balkema–de Haan) says the excesses of a
//! statistic over a high threshold follow a generalised Pareto distribution;
//! SPOT (Siffer et al., "Anomaly Detection in Streams with Extreme Value
//! Theory", KDD 2017) fits that tail online to turn any surprise into a
//! calibrated tail probability. This is the streaming, O(1)-memory variant
//! with shape 0 (an exponential tail): the threshold `u` is the running mean
//! plus [`START_SDS`] running standard deviations of the surprise, the scale
//! `beta` is the running mean of the excesses over `u`, and `P(S > u)` is the
//! running exceedance rate. All three are exponentially weighted, so the fit
//! follows a signal whose noise changes.

use statrs::distribution::{ContinuousCDF, Exp};

/// The tail starts this many standard deviations above the mean surprise.
pub(super) const START_SDS: f64 = 2.0;

/// Smallest tail scale (in units of the log-surprise): keeps a signal whose
/// surprise never varied from calling the smallest excess impossible.
const BETA_FLOOR: f64 = 0.05;

/// Running tail fit of one surprise statistic (40 bytes).
#[derive(Debug, Clone, Copy)]
pub(super) struct TailFit {
    mean: f64,
    var: f64,
    beta: f64,
    rate: f64,
    n: u32,
    exceed: u32,
}

impl TailFit {
    pub(super) const fn new() -> Self {
        TailFit {
            mean: 0.0,
            var: 0.0,
            beta: BETA_FLOOR,
            rate: 0.0,
            n: 0,
            exceed: 0,
        }
    }

    fn threshold(&self) -> f64 {
        self.mean + START_SDS * self.var.sqrt()
    }

    /// Tail probability `P(S > s)` of a new surprise `s` under the fit; 1 at
    /// or below the tail threshold, and before anything was learnt.
    pub(super) fn p(&self, s: f64) -> f64 {
        let u = self.threshold();
        if self.n < 2 || s <= u {
            return 1.0;
        }
        let beta = self.beta.max(BETA_FLOOR);
        let sf = Exp::new(1.0 / beta).map_or(0.0, |e| e.sf(s - u));
        (self.rate * sf).min(1.0)
    }

    /// Learn surprise `s`; `half_life` (samples) sets the memory.
    pub(super) fn learn(&mut self, s: f64, half_life: f64) {
        let u = self.threshold();
        self.n = self.n.saturating_add(1);
        // A plain running mean until the half-life's weight takes over.
        let a = (1.0 / f64::from(self.n)).max(super::factor(half_life));
        if self.n > 1 {
            let over = s > u;
            self.rate += a * (f64::from(u8::from(over)) - self.rate);
            if over {
                self.exceed = self.exceed.saturating_add(1);
                // Excesses arrive at `rate` per sample: weigh each one so
                // that the scale has the same memory in samples.
                let w = (1.0 / f64::from(self.exceed))
                    .max(a / self.rate.max(1e-3))
                    .min(1.0);
                self.beta += w * ((s - u) - self.beta);
            }
        }
        let d = s - self.mean;
        self.mean += a * d;
        self.var += a * (d * (s - self.mean) - self.var);
    }
}
