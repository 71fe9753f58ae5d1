//! When an incident began, from the series themselves (for replaying a case
//! whose onset is not given).
//!
//! Live, the onset is the earliest excursion onset of the incident group
//! ([`group`](super::group)), as the per-series detectors fired it. Those
//! detectors calibrate their scores on 100 samples of their own before they
//! give any (see `detectors/adaptive/tail.rs`), so on a case that holds half
//! an hour of one-minute samples they cannot fire. This finder needs only
//! `min_history` steps: it is the evidence statistic of the ranking run
//! online, one time step at a time, with no look-ahead.
//!
//! At each step `t` (a grid of `step`), every series' newest sample is
//! measured against the series' own samples in the `baseline` before it
//! (median and MAD, one-sided on the harmful side, `ln(1 + z)`, role
//! weights: the ranking's statistic), and the weighted sum over all series
//! is the system's surprise `S(t)`. `S(t)` is then compared with its own
//! history: a step whose surprise lies more than `threshold` robust
//! deviations above the median of the previous steps' surprises fires
//! (3.5 is Iglewicz & Hoaglin's cut-off for the modified z-score). Fires
//! no more than `gap_steps` apart form one change; each change's first
//! fire is an onset. BARO (Pham et al., FSE 2024) finds the onset with
//! multivariate Bayesian online changepoint detection on latency and error
//! series; summing calibrated per-series surprise is the same idea without
//! a multivariate model, which a 46-service system would need 900
//! dimensions for.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::evidence::{median, robust, slice, MAD_TO_SIGMA};
use super::rank::check_sorted;
use super::{DiagnoseConfig, DiagnoseError, Series, Sides};
use crate::Direction;

/// Settings of the onset finder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OnsetConfig {
    /// Seconds between two steps; 0 takes the median spacing of the
    /// series' samples.
    pub step_secs: u64,
    /// Steps of surprise history needed before a step can fire.
    pub min_history: u32,
    /// Robust deviations above the history's median at which a step fires.
    pub threshold: f64,
    /// Fires at most this many steps apart belong to one change.
    pub gap_steps: u32,
    /// Smallest spread of the surprise history, as a fraction of its median.
    pub rel_floor: f64,
    /// A series adds to the surprise only from this deviation (in its own
    /// spreads) on: the many series that merely wiggle would otherwise
    /// drown the few that moved.
    pub min_z: f64,
    /// Smallest spread of the surprise history, in units of one series
    /// crossing `min_z`: after a calm stretch (every step 0) a step fires
    /// only once `threshold * min_spread` series' worth moved.
    pub min_spread: f64,
    /// Fewest baseline samples a series needs to add to the surprise (more
    /// than the ranking needs: a series measured against two samples is
    /// too often surprised to help date a change).
    pub min_baseline: u32,
    /// The steps just before a fire whose surprise was at least this
    /// fraction of `threshold` are part of the change (1 turns it off).
    pub backdate: f64,
    /// [`diagnose`](super::diagnose)'s onset search: the level a move is
    /// measured from is the median of this many samples before the
    /// candidate onset (the normal the system departs from, longer than
    /// the ranking's, so that the last minutes of an earlier incident's
    /// recovery do not set it).
    pub level_samples: u32,
    /// [`diagnose`](super::diagnose)'s onset search: which side of its
    /// level a move counts on (a fault makes things worse; a recovery,
    /// which makes them better, is not an onset).
    pub sides: Sides,
}

impl Default for OnsetConfig {
    fn default() -> Self {
        OnsetConfig {
            step_secs: 0,
            min_history: 8,
            threshold: 3.5,
            gap_steps: 2,
            rel_floor: 0.05,
            min_z: 3.0,
            backdate: 0.5,
            min_baseline: 5,
            min_spread: 0.25,
            level_samples: 15,
            sides: Sides::Harmful,
        }
    }
}

/// One change the finder saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    /// The start of the step of its first fire (ms): the sample that fired
    /// is at or after it, so [`rank`](super::rank) at this onset scores it.
    pub onset_ms: i64,
    /// Its highest surprise, in robust deviations above the history.
    pub peak: f64,
}

/// The system's surprise at each step of `[from_ms, to_ms)`: `(t, S)` for
/// the step `[t, t + step)`, from the first step at which some series has
/// a baseline.
pub fn surprise(
    series: &[Series<'_>],
    from_ms: i64,
    to_ms: i64,
    diag: &DiagnoseConfig,
    cfg: &OnsetConfig,
) -> Result<Vec<(i64, f64)>, DiagnoseError> {
    check_sorted(series)?;
    let step = step_ms(series, cfg);
    let m = diag.measure();
    let min_baseline = cfg.min_baseline as usize;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut t = from_ms;
    while t < to_ms {
        let mut s = 0.0;
        let mut measured = 0usize;
        for ser in series {
            // The newest sample of the step [t, t + step).
            let newest = slice(ser.samples, t, t.saturating_add(step)).last();
            let Some(&(ts, x)) = newest else { continue };
            if !x.is_finite() {
                continue;
            }
            let base = slice(ser.samples, ts.saturating_sub(m.baseline_ms), ts);
            let Some((level, spread)) = robust(base, min_baseline, m.rel_floor, &mut buf) else {
                continue;
            };
            measured += 1;
            let d = (x - level) / spread;
            let z = match ser.role.harmful(ser.metric) {
                Direction::Up => d,
                Direction::Down => -d,
                Direction::Both => d.abs(),
            };
            if z >= cfg.min_z {
                s += diag.weights.of(ser.role) * z.ln_1p();
            }
        }
        // Steps before any series has a baseline say nothing (not "calm").
        if measured > 0 {
            out.push((t, s));
        }
        t = t.saturating_add(step);
    }
    Ok(out)
}

/// The changes in `[from_ms, to_ms)`, in time order (see the module docs).
pub fn find_onsets(
    series: &[Series<'_>],
    from_ms: i64,
    to_ms: i64,
    diag: &DiagnoseConfig,
    cfg: &OnsetConfig,
) -> Result<Vec<Onset>, DiagnoseError> {
    let s = surprise(series, from_ms, to_ms, diag, cfg)?;
    Ok(changes(&s, cfg))
}

/// Fires and their grouping over a surprise curve.
pub(crate) fn changes(s: &[(i64, f64)], cfg: &OnsetConfig) -> Vec<Onset> {
    // z of each step against the steps before it (no look-ahead).
    let mut hist = Vec::new();
    let mut dev = Vec::new();
    let z: Vec<Option<f64>> = (0..s.len())
        .map(|i| {
            if i < cfg.min_history as usize {
                return None;
            }
            hist.clear();
            hist.extend(s[..i].iter().map(|p| p.1));
            let med = median(&mut hist);
            dev.clear();
            dev.extend(s[..i].iter().map(|p| (p.1 - med).abs()));
            // The same relative floor as the series' own spreads: a history
            // of near-identical surprises must not make a small rise huge.
            // And at least one series' worth of surprise: a history of calm
            // steps (all 0) must not turn one series crossing `min_z` into
            // a change of the whole system.
            let spread = (median(&mut dev) * MAD_TO_SIGMA)
                .max(cfg.rel_floor * med.abs())
                .max(cfg.min_spread * cfg.min_z.max(1.0).ln_1p());
            Some((s[i].1 - med) / spread)
        })
        .collect();
    let mut out: Vec<Onset> = Vec::new();
    let mut last_fire: Option<usize> = None;
    for (i, zi) in z.iter().enumerate() {
        let Some(zi) = *zi else { continue };
        if zi < cfg.threshold {
            continue;
        }
        let joins = last_fire.is_some_and(|j| i - j <= cfg.gap_steps as usize);
        match out.last_mut() {
            Some(o) if joins => o.peak = o.peak.max(zi),
            _ => {
                // Back-date the onset over the steps just before that were
                // already half-way there (a change that builds up over a
                // step or two began where it started to show), as the
                // excursion logic's hysteresis does.
                let mut first = i;
                while first > 0
                    && last_fire.is_none_or(|j| first - 1 > j)
                    && z[first - 1].is_some_and(|p| p >= cfg.threshold * cfg.backdate)
                {
                    first -= 1;
                }
                out.push(Onset {
                    onset_ms: s[first].0,
                    peak: zi,
                });
            }
        }
        last_fire = Some(i);
    }
    out
}

/// The step: configured, or the median spacing of the series' samples
/// (60 s when no series has two samples).
pub(crate) fn step_ms(series: &[Series<'_>], cfg: &OnsetConfig) -> i64 {
    if cfg.step_secs > 0 {
        return i64::try_from(cfg.step_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    }
    let mut gaps: Vec<f64> = series
        .iter()
        .flat_map(|s| s.samples.windows(2).map(|w| (w[1].0 - w[0].0) as f64))
        .filter(|g| *g > 0.0)
        .collect();
    if gaps.is_empty() {
        return 60_000;
    }
    (median(&mut gaps).round() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_surprise_never_fires_and_a_jump_does_once() {
        let mut s: Vec<(i64, f64)> = (0..30)
            .map(|i| (i * 60_000, 10.0 + ((i * 7) % 5) as f64 * 0.1))
            .collect();
        let cfg = OnsetConfig::default();
        assert!(changes(&s, &cfg).is_empty());
        for (k, x) in [(30, 30.0), (31, 28.0), (32, 10.2), (33, 29.0)] {
            s.push((k * 60_000, x));
        }
        let c = changes(&s, &cfg);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].onset_ms, 30 * 60_000);
    }
}
