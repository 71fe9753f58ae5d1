//! The ensemble: the adaptive and changepoint detectors (and, opt-in, the
//! seasonal one) combined into one calibrated score.
//!
//! Every member already reports a calibrated tail probability `p_i` on the
//! crate's log scale (`score = log(p) / log(1e-12)`, [`score_from_p`](crate::score_from_p)), so
//! they combine as probabilities, not as ad-hoc weights: by weighted
//! Bonferroni, each member gets a share `v_i` of the false-alarm budget
//! (shares add up to 1) and the ensemble's probability is
//! `min(min_i p_i / v_i, 1)`: the chance that any member is that extreme
//! by luck is at most that. A threshold therefore means the same thing for
//! the ensemble as for its members.
//!
//! The shares: the changepoint member gets 1 % (the seasonal one, when it
//! runs, 10 %), the adaptive member the rest. With equal shares the
//! changepoint member's false alarms cost more than its finds on NAB
//! (nab-dev, standard profile at each one's best threshold, with the
//! adaptive defaults before their retuning: 63.4 with 1/2 each, 68.5 with
//! 1 %, the adaptive detector alone 69.2; the low-FP profile rose from 57.7
//! alone to 59.4). With the retuned adaptive defaults: ensemble 76.6,
//! low-FP 65.7, low-FN 82.7; adaptive alone 76.9, 66.2, 82.9. The
//! changepoint member must be a hundred times surer than the adaptive one
//! to decide alone; it mostly tips samples the adaptive member already
//! finds unusual.
//!
//! The adaptive member runs with its excursions turned off (it never
//! fires, so every sample reports its own score); the ensemble's
//! excursions, band and hysteresis are the shared ones of [`Online`]
//! (`excursion.rs`, lifted from the adaptive detector), with the band
//! taken from the adaptive member's level and spread.
//!
//! Cost: the adaptive detector's 1.1 KiB plus the changepoint model's
//! 0.7 KiB, boxed: 3,336 bytes per series with everything around them
//! (`benches/ensemble.rs`, measured at 100,000 series); per sample, the
//! adaptive update plus the changepoint recursion over its 24 run lengths,
//! about 1.5 million samples per second on one core of the CI machine.
//!
//! [`Online`]: super::Online

use super::changepoint::Changepoint;
use super::seasonal::Seasonal;
use super::{Assessment, Model};
use crate::{AdaptiveDetector, DetectorConfig};

/// `ln(1e-12)`, the log-probability of a score of 1.
const LN_P_FLOOR: f64 = -27.631_021_115_928_547;

/// Share of the false-alarm budget of the changepoint member.
const CHANGEPOINT_SHARE: f64 = 0.01;
/// Share of the seasonal member, when it runs.
const SEASONAL_SHARE: f64 = 0.1;
/// Share of the adaptive member: the rest.
const ADAPTIVE_SHARE: f64 = 1.0 - CHANGEPOINT_SHARE;
const ADAPTIVE_SHARE_WITH_SEASONAL: f64 = 1.0 - CHANGEPOINT_SHARE - SEASONAL_SHARE;

/// The tail probability a score stands for (inverse of
/// [`score_from_p`](crate::score_from_p)).
#[cfg(test)]
fn p_from_score(score: f64) -> f64 {
    (score * LN_P_FLOOR).exp()
}

/// Combines calibrated scores by weighted Bonferroni: member `i` with
/// share `v_i` of the false-alarm budget (the shares add up to 1) gives
/// `p = min_i p_i / v_i`. On the log scale that is
/// `max_i (s_i + ln(v_i) / ln(1e12))`: no exponential needed.
pub(crate) fn combine(members: &[(f64, f64)]) -> f64 {
    members
        .iter()
        .map(|&(score, share)| score + share.ln() / -LN_P_FLOOR)
        .fold(0.0, f64::max)
        .min(1.0)
}

/// The ensemble's members (see the module docs).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub(crate) struct Ensemble {
    adaptive: AdaptiveDetector,
    changepoint: Changepoint,
    seasonal: Option<Box<Seasonal>>,
}

impl Ensemble {
    pub(crate) fn new(cfg: &DetectorConfig) -> Self {
        Ensemble {
            adaptive: AdaptiveDetector::new(DetectorConfig {
                threshold: f64::INFINITY,
                ..cfg.clone()
            }),
            changepoint: Changepoint::new(cfg),
            seasonal: cfg.ensemble.seasonal.then(|| Box::new(Seasonal::new(cfg))),
        }
    }
}

impl Model for Ensemble {
    fn update(&mut self, ts_ms: i64, x: f64) -> Assessment {
        let (level, sigma) = (self.adaptive.level(), self.adaptive.sigma());
        let first = self.adaptive.update(ts_ms, x).score;
        let cp = self.changepoint.update(x).score;
        let score = match &mut self.seasonal {
            Some(s) => {
                let se = s.update(ts_ms, x).score;
                combine(&[
                    (first, ADAPTIVE_SHARE_WITH_SEASONAL),
                    (cp, CHANGEPOINT_SHARE),
                    (se, SEASONAL_SHARE),
                ])
            }
            None => combine(&[(first, ADAPTIVE_SHARE), (cp, CHANGEPOINT_SHARE)]),
        };
        Assessment {
            score,
            above: x > level,
            level,
            sigma,
        }
    }

    fn baseline(&self) -> (f64, f64) {
        (self.adaptive.level(), self.adaptive.sigma())
    }

    fn heap_bytes(&self) -> usize {
        self.seasonal
            .as_ref()
            .map_or(0, |s| std::mem::size_of::<Seasonal>() + s.heap_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::Detector;
    use crate::DetectorKind;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    const STEP: i64 = 300_000;

    fn noise(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = Normal::new(mean, sd).unwrap();
        (0..n).map(|_| d.sample(&mut rng)).collect()
    }

    fn ensemble_cfg() -> DetectorConfig {
        DetectorConfig {
            kind: DetectorKind::Ensemble,
            ..DetectorConfig::sensitive()
        }
    }

    #[test]
    fn combine_is_weighted_bonferroni_on_the_log_scale() {
        assert_eq!(combine(&[(0.0, 0.5), (0.0, 0.5)]), 0.0);
        // One member certain: still nearly certain.
        assert!(combine(&[(1.0, 0.5), (0.0, 0.5)]) > 0.97);
        // Equal shares: p doubles.
        let s = combine(&[(0.5, 0.5), (0.1, 0.5)]);
        let want = crate::score_from_p(2.0 * p_from_score(0.5));
        assert!((s - want).abs() < 1e-12, "{s} vs {want}");
        // A member with a small share must be far more surprising to count:
        // p / 0.01.
        let s = combine(&[(0.1, 0.99), (0.5, 0.01)]);
        let want = crate::score_from_p(100.0 * p_from_score(0.5));
        assert!((s - want).abs() < 1e-12, "{s} vs {want}");
        // Monotone in every member's score.
        assert!(combine(&[(0.6, 0.5), (0.1, 0.5)]) > combine(&[(0.5, 0.5), (0.1, 0.5)]));
        assert!(combine(&[(0.1, 0.5), (0.6, 0.5)]) > combine(&[(0.1, 0.5), (0.5, 0.5)]));
    }

    #[test]
    fn fires_once_per_excursion_on_a_level_shift() {
        let mut xs = noise(1, 3000, 100.0, 3.0);
        xs.extend(noise(2, 300, 140.0, 3.0));
        let mut d = Detector::new(ensemble_cfg());
        let mut fired = Vec::new();
        for (i, &x) in xs.iter().enumerate() {
            let s = d.update(i as i64 * STEP, x);
            if s.excursion.is_some_and(|e| e.first) {
                fired.push(i);
            }
            assert!((0.0..=1.0).contains(&s.score));
        }
        let at_shift: Vec<_> = fired.iter().filter(|&&i| i >= 3000).collect();
        assert_eq!(at_shift.len(), 1, "fired at {fired:?}");
        assert!(*at_shift[0] < 3005, "fired late: {fired:?}");
    }

    #[test]
    fn scores_at_least_what_the_adaptive_member_says_minus_the_price() {
        let xs = noise(3, 4000, 10.0, 1.0);
        let cfg = ensemble_cfg();
        let mut ens = Ensemble::new(&cfg);
        let mut alone = AdaptiveDetector::new(DetectorConfig {
            threshold: f64::INFINITY,
            ..cfg.clone()
        });
        let price = -ADAPTIVE_SHARE.ln() / -LN_P_FLOOR;
        for (i, &x) in xs.iter().enumerate() {
            let e = ens.update(i as i64 * STEP, x).score;
            let a = alone.update(i as i64 * STEP, x).score;
            assert!(
                e >= a - price - 1e-9,
                "sample {i}: ensemble {e}, adaptive {a}"
            );
        }
    }

    #[test]
    fn no_look_ahead() {
        let mut xs = noise(4, 2500, 50.0, 2.0);
        xs.extend(noise(5, 500, 60.0, 2.0));
        let run = |xs: &[f64]| {
            let mut d = Detector::new(ensemble_cfg());
            xs.iter()
                .enumerate()
                .map(|(i, &x)| d.update(i as i64 * STEP, x))
                .collect::<Vec<_>>()
        };
        let full = run(&xs);
        let cut = run(&xs[..2600]);
        assert_eq!(full[..2600], cut[..]);
    }

    /// The shared excursion logic is the adaptive detector's: replaying the
    /// adaptive detector's own raw scores through [`super::super::fire_once`]
    /// gives exactly what the adaptive detector reports with excursions on.
    #[test]
    fn shared_excursions_match_the_adaptive_detectors() {
        let mut xs = noise(6, 3000, 20.0, 2.0);
        for i in (500..3000).step_by(211) {
            xs[i] += 25.0;
        }
        xs.extend(noise(7, 300, 35.0, 2.0));
        let cfg = DetectorConfig::sensitive();
        let mut raw = Detector::scores_only(cfg.clone());
        let mut real = Detector::new(cfg.clone());
        let mut rs = Vec::new();
        let mut want = Vec::new();
        for (i, &x) in xs.iter().enumerate() {
            rs.push(raw.update(i as i64 * STEP, x).score);
            want.push(real.update(i as i64 * STEP, x).score);
        }
        let got =
            super::super::fire_once(&rs, cfg.threshold, cfg.reset_threshold, cfg.reset_samples);
        assert_eq!(got, want);
        assert!(want.iter().filter(|&&s| s >= cfg.threshold).count() >= 3);
    }

    #[test]
    fn forget_excursion_returns_to_the_snapshot() {
        let mut xs = noise(8, 2000, 10.0, 1.0);
        xs.extend(vec![40.0; 20]);
        let mut d = Detector::new(ensemble_cfg());
        let mut fired = false;
        for (i, &x) in xs.iter().enumerate() {
            fired |= d
                .update(i as i64 * STEP, x)
                .excursion
                .is_some_and(|e| e.first);
        }
        assert!(fired);
        assert!(d.forget_excursion());
        assert!(!d.forget_excursion());
        // The fault was forgotten: the same fault fires again, at once.
        let s = d.update(xs.len() as i64 * STEP, 40.0);
        assert!(s.excursion.is_some_and(|e| e.first), "{s:?}");
    }
}
