//! The seasonal detector: the residual of each sample against a seasonal
//! baseline that is refitted periodically.
//!
//! Every `refit_every` samples, over the last `history` samples:
//! 1. the periods are found with augurs-seasons' periodogram (Welch's
//!    method), at most [`MAX_PERIODS`] of the strongest peaks whose period
//!    fits twice in the history;
//! 2. an MSTL decomposition (Bandara, Hyndman & Bergmeir, "MSTL: A
//!    Seasonal-Trend Decomposition Algorithm for Time Series with Multiple
//!    Seasonal Patterns", 2021; augurs-mstl's `stlrs`) splits the history
//!    into trend, one seasonal component per period, and remainder;
//!    components whose seasonal strength (Wang, Smith & Hyndman 2006) is
//!    below [`MIN_STRENGTH`] are dropped, since a periodogram always has a
//!    highest peak, even on noise;
//! 3. the last cycle of each kept component is stored.
//!
//! Between refits the forecast of the next sample is the trend (a fast
//! running mean of the deseasonalised samples) plus each stored cycle at
//! the sample's phase. The residual `x - forecast`, in units of a running
//! spread of the residuals, is turned into a surprise `ln(1 + |z|)` and
//! calibrated with the adaptive detector's tail fit (see [`Calibrator`]).
//! Without any period (too little history, or none strong enough) the
//! forecast is the running level alone.
//!
//! Online: the score of a sample uses the fit of earlier samples only.
//!
//! # Cost
//!
//! Memory is bounded but not small: the history (`history` samples of 8
//! bytes, 16 KiB by default) plus one stored cycle per period (at most half
//! the history, as f32). That is why this detector is opt-in per signal
//! (`kind: seasonal`) and not the default. Time: a refit costs about a
//! millisecond at the default history, amortised over `refit_every`
//! samples (about 4 µs a sample on average, `benches/ensemble.rs`); between
//! refits a sample costs a few dozen operations.

use std::collections::VecDeque;

use augurs_mstl::stlrs::MstlParams;
use augurs_seasons::PeriodogramDetector;

use super::adaptive::{ew_factor, Calibrator};
use super::{Assessment, Model};
use crate::config::DetectorConfig;

/// Periods modelled at most (the strongest peaks of the periodogram).
pub(crate) const MAX_PERIODS: usize = 2;

/// Peaks of the periodogram within this fraction of the highest are
/// candidate periods (augurs-seasons' default).
const PEAK_THRESHOLD: f64 = 0.9;

/// Seasonal strength below which a component is not worth forecasting.
const MIN_STRENGTH: f64 = 0.3;

/// Half-life, in samples, of the trend between refits.
const TREND_HL: f64 = 10.0;

/// Samples at the end of the first fit whose remainder sets the residuals'
/// spread.
const REFIT_SPREAD_TAIL: usize = 256;

/// Half-life, in samples, of the residuals' spread.
const SPREAD_HL: f64 = 500.0;

/// `sqrt(pi/2)`: standard deviation over mean absolute deviation.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// Residuals further than this many spreads are clipped before they update
/// the trend and the spread (as the adaptive detector winsorises its
/// level), so a spike moves the baseline only a little.
const CLIP_SIGMAS: f64 = 3.0;

/// A residual is in the tail only beyond two spreads (`ln(1 + 2)`).
const U_MIN: f64 = 1.098_612_288_668_109_8;

/// One seasonal component: its period and its last fitted cycle, stored so
/// that `cycle[phase % period]` is the component at `phase` samples after
/// the fit.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Component {
    cycle: Vec<f32>,
}

/// The seasonal model (see the module docs). [`Detector`](crate::Detector)
/// adds warm-up, limits and excursions.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub(crate) struct Seasonal {
    history: VecDeque<f64>,
    capacity: usize,
    refit_every: u32,
    min_period: u32,
    calibration_half_life: f64,
    since_fit: u32,
    /// Samples since the last fit: the phase of the next sample.
    phase: usize,
    components: Vec<Component>,
    seen: u64,
    trend: f64,
    trend_a: f64,
    spread: f64,
    spread_a: f64,
    cal: Calibrator,
}

impl Seasonal {
    pub(crate) fn new(cfg: &DetectorConfig) -> Self {
        let capacity = cfg.seasonal.history as usize;
        Seasonal {
            history: VecDeque::with_capacity(capacity),
            capacity,
            refit_every: cfg.seasonal.refit_every.max(1),
            min_period: cfg.seasonal.min_period.max(2),
            calibration_half_life: cfg.calibration_half_life,
            since_fit: 0,
            phase: 0,
            components: Vec::new(),
            seen: 0,
            trend: 0.0,
            trend_a: ew_factor(TREND_HL),
            spread: 0.0,
            spread_a: ew_factor(SPREAD_HL),
            cal: Calibrator::new(U_MIN),
        }
    }

    /// The periods currently modelled.
    #[cfg(test)]
    fn periods(&self) -> Vec<usize> {
        self.components.iter().map(|c| c.cycle.len()).collect()
    }

    /// The seasonal part of the forecast of the next sample.
    fn season(&self) -> f64 {
        self.components
            .iter()
            .map(|c| f64::from(c.cycle[self.phase % c.cycle.len()]))
            .sum()
    }

    fn sigma(&self) -> f64 {
        MAD_TO_SIGMA * self.spread
    }

    /// Finds the periods and fits the decomposition on the history.
    fn refit(&mut self) {
        self.since_fit = 0;
        let had_components = !self.components.is_empty();
        let n = self.history.len();
        let data: Vec<f64> = self.history.iter().copied().collect();
        // At least four cycles in the history: Welch's method averages
        // segments of two periods, and a period seen twice is too easily
        // the trend's leakage.
        let max_period = (n / 4) as u32;
        if max_period <= self.min_period {
            return;
        }
        let detector = PeriodogramDetector::builder()
            .min_period(self.min_period)
            .max_period(max_period)
            .build();
        // Peaks come from the weakest to the strongest. Welch's periodogram
        // only knows periods `segment / k`, too coarse to stay in phase for
        // long (48 is seen as 46 or 49): each peak is refined to the lag of
        // highest autocorrelation between its neighbouring periods.
        let peaks: Vec<_> = detector.periodogram(&data).peaks(PEAK_THRESHOLD).collect();
        let mut periods: Vec<usize> = peaks
            .iter()
            .rev()
            .map(|pk| {
                let (a, b) = (
                    pk.prev_period.min(pk.next_period),
                    pk.prev_period.max(pk.next_period),
                );
                let lo = (a.max(self.min_period) as usize).min(pk.period as usize);
                let hi = (b as usize).max(pk.period as usize).min(n / 4);
                best_lag(&data, lo, hi).unwrap_or(pk.period as usize)
            })
            .filter(|&p| p >= 2 && 4 * p <= n)
            .collect();
        periods.dedup();
        periods.truncate(MAX_PERIODS);
        periods.sort_unstable();
        periods.dedup();
        if periods.is_empty() {
            self.components.clear();
            return;
        }
        let y: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        let Ok(fit) = MstlParams::new().fit(&y, &periods) else {
            self.components.clear();
            return;
        };
        let strength = fit.seasonal_strength();
        self.components = periods
            .iter()
            .zip(fit.seasonal())
            .zip(strength)
            .filter(|(_, s)| *s >= MIN_STRENGTH)
            .map(|((&p, comp), _)| Component {
                cycle: comp[comp.len() - p..].to_vec(),
            })
            .collect();
        self.phase = 0;
        if self.components.is_empty() {
            return;
        }
        // The trend restarts from the fit's last trend value.
        if let Some(&t) = fit.trend().last() {
            self.trend = f64::from(t);
        }
        // At the first fit, the residuals' spread so far measured the
        // cycle itself: restart it from the fit's remainder.
        if !had_components {
            let rem = fit.remainder();
            let tail = &rem[rem.len().saturating_sub(REFIT_SPREAD_TAIL)..];
            let mad =
                tail.iter().map(|r| f64::from(r.abs())).sum::<f64>() / tail.len().max(1) as f64;
            if mad > 0.0 {
                self.spread = mad;
            }
        }
    }

    fn update_inner(&mut self, x: f64) -> Assessment {
        self.seen += 1;
        let n = self.seen as f64;
        if self.seen == 1 {
            self.trend = x;
            self.push(x);
            return Assessment {
                score: 0.0,
                above: true,
                level: x,
                sigma: 0.0,
            };
        }
        let season = self.season();
        let forecast = self.trend + season;
        let sigma = self.sigma();
        let r = x - forecast;
        let s = if r == 0.0 {
            0.0
        } else if sigma > 0.0 {
            (r.abs() / sigma).ln_1p()
        } else {
            1e6f64.ln_1p()
        };
        let p = self.cal.p(s);
        if sigma > 0.0 || r == 0.0 {
            self.cal.learn(s, self.calibration_half_life);
        }
        // Learn, after scoring: a winsorised residual updates the trend and
        // the spread (plain running means at first).
        let bound = CLIP_SIGMAS * sigma;
        let clipped = if sigma > 0.0 {
            r.clamp(-bound, bound)
        } else {
            r
        };
        self.trend += self.trend_a.max(1.0 / n) * clipped;
        self.spread += self.spread_a.max(1.0 / (n - 1.0)) * (clipped.abs() - self.spread);
        self.phase += 1;
        self.push(x);
        self.since_fit += 1;
        if self.since_fit >= self.refit_every && self.history.len() >= self.capacity / 2 {
            self.refit();
        }
        Assessment {
            score: crate::score_from_p(p),
            above: r > 0.0,
            level: forecast,
            sigma,
        }
    }

    fn push(&mut self, x: f64) {
        if self.history.len() == self.capacity {
            self.history.pop_front();
        }
        self.history.push_back(x);
    }
}

/// The lag in `lo..=hi` at which `data` correlates best with itself.
fn best_lag(data: &[f64], lo: usize, hi: usize) -> Option<usize> {
    let n = data.len();
    let mean = data.iter().sum::<f64>() / n as f64;
    (lo..=hi.min(n.saturating_sub(1)))
        .map(|lag| {
            let c: f64 = data[lag..]
                .iter()
                .zip(data)
                .map(|(a, b)| (a - mean) * (b - mean))
                .sum();
            (lag, c / (n - lag) as f64)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(lag, _)| lag)
}

impl Model for Seasonal {
    fn update(&mut self, _ts_ms: i64, x: f64) -> Assessment {
        self.update_inner(x)
    }

    fn baseline(&self) -> (f64, f64) {
        (self.trend + self.season(), self.sigma())
    }

    fn heap_bytes(&self) -> usize {
        self.history.capacity() * std::mem::size_of::<f64>()
            + self.components.capacity() * std::mem::size_of::<Component>()
            + self
                .components
                .iter()
                .map(|c| c.cycle.capacity() * std::mem::size_of::<f32>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// A daily-like cycle of `period` samples with noise.
    fn seasonal(seed: u64, n: usize, period: usize, amp: f64, sd: f64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = Normal::new(0.0, sd).unwrap();
        (0..n)
            .map(|i| {
                let ph = (i % period) as f64 / period as f64 * std::f64::consts::TAU;
                100.0 + amp * ph.sin() + d.sample(&mut rng)
            })
            .collect()
    }

    fn cfg() -> DetectorConfig {
        DetectorConfig::default()
    }

    #[test]
    fn finds_the_period_and_forecasts_the_cycle() {
        let xs = seasonal(1, 3000, 48, 20.0, 1.0);
        let mut m = Seasonal::new(&cfg());
        for &x in &xs {
            m.update_inner(x);
        }
        let periods = m.periods();
        assert!(
            periods.iter().any(|&p| (46..=50).contains(&p)),
            "periods {periods:?}"
        );
        // The residual spread is the noise's, not the cycle's (20 * 0.64).
        assert!(m.sigma() < 3.0, "sigma {}", m.sigma());
    }

    #[test]
    fn a_missing_peak_scores_higher_than_the_usual_cycle() {
        let mut xs = seasonal(2, 4000, 48, 20.0, 1.0);
        // Flatten one peak (the signal stays well within its usual range).
        let start = 3600 + 6;
        for x in &mut xs[start..start + 12] {
            *x = 100.0;
        }
        let mut m = Seasonal::new(&cfg());
        let s: Vec<f64> = xs.iter().map(|&x| m.update_inner(x).score).collect();
        let usual = s[2000..3600].iter().cloned().fold(0.0, f64::max);
        let missing = s[start..start + 12].iter().cloned().fold(0.0, f64::max);
        assert!(missing > usual + 0.1, "missing {missing} vs usual {usual}");
    }

    #[test]
    fn noise_alone_keeps_no_component() {
        let xs = seasonal(3, 3000, 48, 0.0, 1.0);
        let mut m = Seasonal::new(&cfg());
        for &x in &xs {
            m.update_inner(x);
        }
        assert!(m.periods().is_empty(), "periods {:?}", m.periods());
    }

    #[test]
    fn no_look_ahead() {
        let xs = seasonal(4, 3000, 30, 5.0, 1.0);
        let run = |xs: &[f64]| {
            let mut m = Seasonal::new(&cfg());
            xs.iter()
                .map(|&x| m.update_inner(x).score)
                .collect::<Vec<_>>()
        };
        let full = run(&xs);
        let cut = run(&xs[..2222]);
        assert_eq!(full[..2222], cut[..]);
    }

    #[test]
    fn memory_is_bounded_by_the_history() {
        let xs = seasonal(5, 10_000, 48, 20.0, 1.0);
        let mut m = Seasonal::new(&cfg());
        for &x in &xs {
            m.update_inner(x);
        }
        assert_eq!(m.history.len(), 2048);
        // History (16 KiB) plus at most MAX_PERIODS cycles of at most half
        // the history, as f32.
        let bound = 2048 * 8 + MAX_PERIODS * (1024 * 4 + std::mem::size_of::<Component>());
        assert!(m.heap_bytes() <= bound, "{} > {bound}", m.heap_bytes());
    }
}
