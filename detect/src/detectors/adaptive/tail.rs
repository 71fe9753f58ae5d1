//! Online peaks-over-threshold calibration of a surprise statistic.
//!
//! Extreme value theory (Pickands–Balkema–de Haan) says the excesses of a
//! statistic over a high threshold follow a generalised Pareto distribution
//! (GPD); SPOT (Siffer et al., "Anomaly Detection in Streams with Extreme
//! Value Theory", KDD 2017) fits that tail online to turn any surprise into a
//! calibrated tail probability. This is a streaming, O(1)-memory variant:
//!
//! - the threshold `u` is the running mean plus [`START_SDS`] running
//!   standard deviations of the statistic (never below a floor the caller
//!   sets);
//! - `P(S > u)` is the running exceedance rate;
//! - the GPD's shape `xi` and scale come from the running first two moments
//!   of the excesses by the method of moments (Hosking & Wallis,
//!   Technometrics 1987), the shape clamped to `[0, 0.5]` (0 is the
//!   exponential tail; a negative shape would put a hard end point on the
//!   tail, which a noisy estimate must not do);
//! - `P(S > s) = P(S > u) * P(Y > s - u)` for the GPD excess `Y`, computed
//!   with `statrs`' exponential distribution, since
//!   `ln(1 + xi Y / scale) / xi` is standard exponential.
//!
//! All running averages are exponentially weighted (after a plain running
//! mean over the first samples), so the fit follows a signal whose noise
//! changes. Unlike SPOT, samples that alarm are learnt too: a signal whose
//! spikes recur learns that they are usual.
//!
//! Two optional floors serve statistics that are 0 almost always and
//! exceed only rarely (the novelty detector's range excess, and its other
//! statistics for consistency, see `detectors/novelty.rs`): a floor of the
//! mean excess ([`TailFit::with_beta_floor`]), since a handful of excesses
//! says little about the tail's scale; and a floor of the exceedance rate
//! of one excess per memory span ([`TailFit::floor_rate`]), since an
//! exponentially weighted rate decays towards 0 between rare excesses,
//! faster than any evidence allows (after 50,000 quiet samples with a
//! half-life of 5,000 it would claim one excess in a million samples, and
//! the next ordinary record of a Gaussian series would score 1).

use statrs::distribution::{ContinuousCDF, Exp};

/// The tail starts this many standard deviations above the mean surprise.
pub(super) const START_SDS: f64 = 2.0;

/// Bounds of the GPD shape (see the module docs).
const XI_MIN: f64 = 0.0;
const XI_MAX: f64 = 0.5;

/// Surprises learnt before the fit gives any tail probability below 1.
const MIN_FIT: u32 = 100;

/// Excesses needed before the shape is estimated rather than taken as 0.
const MIN_SHAPE_EXCEEDANCES: u32 = 10;

/// Samples a fit must have seen before it may call its tail light.
const LIGHT_AFTER: u32 = 1000;

/// Smallest mean excess (in units of the log-surprise): keeps a signal whose
/// surprise never varied from calling the smallest excess impossible.
const BETA_FLOOR: f64 = 0.05;

/// Running tail fit of one surprise statistic (64 bytes).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
pub(super) struct TailFit {
    /// Running mean and variance of the statistic.
    mean: f64,
    var: f64,
    /// Running mean of the excesses over the threshold.
    beta: f64,
    /// Running mean of the squared excesses.
    m2: f64,
    /// Running rate of excesses per sample.
    rate: f64,
    /// Samples and excesses learnt (saturating).
    n: u32,
    exceed: u32,
    /// Lowest tail threshold.
    u_min: f64,
    /// Smallest mean excess, in units of [`BETA_FLOOR`] (1 for the default
    /// floor, which it then gives exactly).
    beta_floor: f32,
    /// Smallest exceedance rate: the weight of one sample at the last
    /// update (one excess per memory span); 0 without the floor.
    rate_floor: f32,
}

impl TailFit {
    /// A fit whose tail never starts below `u_min`: surprises at or below
    /// it are never rare, however quiet the signal was.
    pub(super) const fn new(u_min: f64) -> Self {
        TailFit {
            mean: 0.0,
            var: 0.0,
            beta: BETA_FLOOR,
            m2: 2.0 * BETA_FLOOR * BETA_FLOOR,
            rate: 0.0,
            n: 0,
            exceed: 0,
            u_min,
            beta_floor: 1.0,
            rate_floor: 0.0,
        }
    }

    /// A fit whose mean excess never falls below `beta_floor`, in the
    /// statistic's unit (the default floor is [`BETA_FLOOR`]).
    pub(super) fn with_beta_floor(u_min: f64, beta_floor: f64) -> Self {
        let mut fit = Self::new(u_min);
        fit.beta_floor = (beta_floor / BETA_FLOOR) as f32;
        fit.beta = fit.beta_min();
        fit.m2 = 2.0 * fit.beta * fit.beta;
        fit
    }

    /// The same fit, whose exceedance rate never falls below one excess per
    /// memory span: `max(1/n, factor(half_life))` at the last update.
    pub(super) const fn floor_rate(mut self) -> Self {
        // Any positive value marks the floor on; `learn` keeps it current.
        self.rate_floor = f32::MIN_POSITIVE;
        self
    }

    fn beta_min(&self) -> f64 {
        BETA_FLOOR * f64::from(self.beta_floor)
    }

    /// Where the tail starts.
    fn threshold(&self) -> f64 {
        (self.mean + START_SDS * self.var.sqrt()).max(self.u_min)
    }

    /// Shape and scale of the excess distribution by the method of
    /// moments (Hosking & Wallis 1987): `xi = (1 - m^2 / v) / 2`, with the
    /// scale set so that the mean excess stays `m`.
    ///
    /// With fewer than [`MIN_SHAPE_EXCEEDANCES`] excesses the variance says
    /// nothing yet about the shape: the tail is taken as exponential
    /// (`xi = 0`) with the mean excess as scale. Otherwise one or two
    /// excesses (the first samples of a fault on a series that never
    /// exceeded its threshold before) would make the tail look heavy and
    /// hide the rest of the fault.
    fn shape_scale(&self) -> (f64, f64) {
        let m = self.beta.max(self.beta_min());
        if self.exceed < MIN_SHAPE_EXCEEDANCES {
            return (XI_MIN, m);
        }
        let v = self.m2 - self.beta * self.beta;
        let xi = if v > 0.0 {
            0.5 * (1.0 - m * m / v)
        } else {
            XI_MIN
        };
        let xi = xi.clamp(XI_MIN, XI_MAX);
        (xi, m * (1.0 - xi))
    }

    /// Tail probability `P(S > s)` of a new surprise `s` under the fit; 1 at
    /// or below the tail threshold, and before anything was learnt.
    /// Whether the excesses look light-tailed: the method-of-moments shape,
    /// before clamping, is below 0 (the excesses vary less than an
    /// exponential's would), judged only once the fit has seen
    /// `LIGHT_AFTER` samples so that a handful of early excesses cannot
    /// decide it.
    pub(super) fn is_light(&self) -> bool {
        if self.n < LIGHT_AFTER || self.exceed < MIN_FIT / 10 {
            return false;
        }
        let v = self.m2 - self.beta * self.beta;
        let m = self.beta.max(self.beta_min());
        v > 0.0 && 0.5 * (1.0 - m * m / v) < 0.0
    }

    pub(super) fn p(&self, s: f64) -> f64 {
        let u = self.threshold();
        if self.n < MIN_FIT || s <= u {
            return 1.0;
        }
        let (xi, sigma) = self.shape_scale();
        let y = s - u;
        // GPD(xi, sigma) excess Y: ln(1 + xi Y / sigma) / xi is Exp(1).
        let h = if xi.abs() < 1e-9 {
            y / sigma
        } else {
            let t = xi * y / sigma;
            if t <= -1.0 {
                return 0.0;
            }
            t.ln_1p() / xi
        };
        let sf = Exp::new(1.0).map_or(0.0, |e| e.sf(h));
        (self.rate.max(f64::from(self.rate_floor)) * sf).min(1.0)
    }

    /// Learn surprise `s`; `half_life` (samples) sets the memory.
    pub(super) fn learn(&mut self, s: f64, half_life: f64) {
        self.learn_capped(s, half_life, f64::INFINITY);
    }

    /// Learns `s` with its excess over the tail threshold capped at `cap`
    /// times the current mean excess.
    pub(super) fn learn_capped(&mut self, s: f64, half_life: f64, cap: f64) {
        let u = self.threshold();
        let s = s.min(u + cap * self.beta.max(self.beta_min()));
        self.n = self.n.saturating_add(1);
        let n = f64::from(self.n);
        // Plain running means until the half-life's weight takes over.
        let a = (1.0 / n).max(super::factor(half_life));
        if self.rate_floor > 0.0 {
            self.rate_floor = (a as f32).max(f32::MIN_POSITIVE);
        }
        if self.n > 1 {
            let over = s > u;
            // The exceedance rate starts from a prior of 1/2 worth one
            // sample, so it is never 0 (which would call every excess
            // impossible) before the first excess.
            if self.n == 2 {
                self.rate = 0.5;
            }
            self.rate += a * (f64::from(u8::from(over)) - self.rate);
            if over {
                // The scale starts from a prior worth one excess: one
                // standard deviation of the surprise.
                if self.exceed == 0 {
                    self.beta = self.var.sqrt().max(self.beta_min());
                    self.m2 = 2.0 * self.beta * self.beta;
                }
                self.exceed = self.exceed.saturating_add(1);
                // Excesses arrive at `rate` per sample: weigh each one so
                // that the scale has the same memory in samples.
                let w = (1.0 / f64::from(self.exceed + 1))
                    .max(a / self.rate.max(1e-3))
                    .min(1.0);
                // Anomalies are learnt too (unlike SPOT, which skips them):
                // a signal whose spikes recur learns that they are usual.
                let y = s - u;
                self.beta += w * (y - self.beta);
                self.m2 += w * (y * y - self.m2);
            }
        }
        let d = s - self.mean;
        self.mean += a * d;
        self.var += a * (d * (s - self.mean) - self.var);
    }
}
