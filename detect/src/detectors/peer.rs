//! The peer detector: "one replica differs from its siblings".
//!
//! Unlike the other detectors it looks across series, not along one: its
//! input is the values of the instances of one service at one timestamp,
//! its output a score per instance. Each timestamp is scored with the
//! median absolute deviation (MAD): the deviation of each instance from the
//! group's median, in units of `1.4826 * MAD` (a robust z that stays put
//! while up to half the group misbehaves). A robust z beyond `threshold`
//! (3.5 by default: Iglewicz & Hoaglin's cut-off for the modified z-score)
//! makes the instance *differ* at that timestamp.
//!
//! One differing timestamp is not enough: a replica restarting, or a
//! scrape landing mid-spike, differs for a moment. An instance scores only
//! once it has differed for `consecutive` timestamps in a row; it then
//! scores the two-sided normal tail probability of its robust z on the
//! crate's log scale ([`score_from_p`]). Fewer than three instances have no
//! majority to differ from: they score 0.
//!
//! When the siblings agree exactly (MAD 0) the detector uses `min_spread`
//! (in the signal's unit) as the spread, or scores 0 when it is 0.
//!
//! # Why not augurs-outlier
//!
//! augurs-outlier's MAD detector is a *double* MAD (one spread per side of
//! the median, Harrell–Davis medians), made for many series over a window.
//! A service has a handful of replicas: with five, the side of the one that
//! differs holds two deviations, its own among them, so it inflates its own
//! spread, and a replica 30 standard deviations away stays under the
//! threshold (the test `one_replica_that_stays_apart_scores_after_the_streak`
//! failed that way with it). Its DBSCAN needs an epsilon in the signal's unit. The
//! single MAD is ten lines, and the crate's 35 dependencies (rv, special,
//! lru, roots, ...) stay out of the build.
//!
//! State: one streak counter per instance seen at the previous timestamp.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::score_from_p;

/// Settings of the peer detector for one service group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// Robust z-score (deviation from the group's median over 1.4826 MADs)
    /// beyond which an instance differs from its siblings at a timestamp.
    pub threshold: f64,
    /// Timestamps in a row an instance must differ before it scores.
    pub consecutive: u32,
    /// Spread (in the signal's unit) to use when the siblings agree
    /// exactly (MAD 0); 0 means such a group is not scored.
    pub min_spread: f64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            threshold: 3.5,
            consecutive: 3,
            min_spread: 0.0,
        }
    }
}

impl PeerConfig {
    /// Every problem with these settings, each as `field: what is wrong`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            out.push(("threshold", format!("must be > 0, got {}", self.threshold)));
        }
        if self.consecutive == 0 {
            out.push(("consecutive", "must be at least 1, got 0".to_string()));
        }
        if !(self.min_spread.is_finite() && self.min_spread >= 0.0) {
            out.push((
                "min_spread",
                format!("must be >= 0, got {}", self.min_spread),
            ));
        }
        out
    }
}

/// An instance's verdict at one timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerScore {
    /// Score in [0, 1]; 0 until the instance has differed for
    /// `consecutive` timestamps in a row.
    pub score: f64,
    /// Robust z-score of the instance in its group (signed: above the
    /// median is positive); 0 when the group could not be scored.
    pub z: f64,
    /// Timestamps in a row this instance has differed, this one included.
    pub streak: u32,
}

/// The peer detector of one service group (see the module docs).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct PeerGroup {
    cfg: PeerConfig,
    /// Streaks of the instances present at the previous timestamp.
    streaks: BTreeMap<String, u32>,
    last_ts: Option<i64>,
}

/// Smallest group with a majority to differ from.
const MIN_GROUP: usize = 3;

/// `1.4826 * MAD` estimates the standard deviation of a normal sample
/// (<https://en.wikipedia.org/wiki/Median_absolute_deviation>).
const MAD_K: f64 = 1.4826;

impl PeerGroup {
    /// A group with the given settings, assumed valid
    /// ([`PeerConfig::problems`] is empty).
    pub fn new(cfg: PeerConfig) -> Self {
        PeerGroup {
            cfg,
            streaks: BTreeMap::new(),
            last_ts: None,
        }
    }

    /// Scores the instances' values at `ts_ms`, one [`PeerScore`] per entry
    /// of `values` in the same order. Non-finite values score 0 and break
    /// their instance's streak. An instance absent at this timestamp loses
    /// its streak. A timestamp not after the previous one is ignored
    /// (every instance scores 0 and no streak moves).
    pub fn update(&mut self, ts_ms: i64, values: &[(&str, f64)]) -> Vec<PeerScore> {
        let quiet = PeerScore {
            score: 0.0,
            z: 0.0,
            streak: 0,
        };
        if self.last_ts.is_some_and(|t| ts_ms <= t) {
            return vec![quiet; values.len()];
        }
        self.last_ts = Some(ts_ms);
        let zs = self.robust_z(values);
        let mut streaks = BTreeMap::new();
        let normal = Normal::standard();
        let out = values
            .iter()
            .zip(zs)
            .map(|(&(name, _), z)| {
                let differs = z.abs() > self.cfg.threshold;
                let streak = if differs {
                    self.streaks.get(name).copied().unwrap_or(0) + 1
                } else {
                    0
                };
                if streak > 0 {
                    streaks.insert(name.to_owned(), streak);
                }
                let score = if streak >= self.cfg.consecutive {
                    // Two-sided normal tail of the robust z.
                    score_from_p((2.0 * normal.sf(z.abs())).min(1.0))
                } else {
                    0.0
                };
                PeerScore { score, z, streak }
            })
            .collect();
        self.streaks = streaks;
        out
    }

    /// Signed robust z of every value (0 for non-finite values, and for
    /// every value of a group that cannot be scored).
    fn robust_z(&self, values: &[(&str, f64)]) -> Vec<f64> {
        let finite: Vec<f64> = values
            .iter()
            .map(|&(_, v)| v)
            .filter(|v| v.is_finite())
            .collect();
        if finite.len() < MIN_GROUP {
            return vec![0.0; values.len()];
        }
        let med = median(&finite);
        let devs: Vec<f64> = finite.iter().map(|v| (v - med).abs()).collect();
        let mad = median(&devs);
        let spread = if mad > 0.0 { mad } else { self.cfg.min_spread };
        if spread <= 0.0 {
            // The siblings agree exactly and no `min_spread` was given.
            return vec![0.0; values.len()];
        }
        values
            .iter()
            .map(|&(_, v)| {
                if v.is_finite() {
                    (v - med) / (MAD_K * spread)
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// The median (the mean of the two middle values of an even count).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal as RNormal};

    const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

    /// Five replicas with noise; `odd` adds `shift` to replica "c" from
    /// timestamp `from` on.
    fn run(group: &mut PeerGroup, n: usize, from: usize, shift: f64) -> Vec<Vec<PeerScore>> {
        let mut rng = StdRng::seed_from_u64(7);
        let noise = RNormal::new(0.0, 1.0).unwrap();
        (0..n)
            .map(|t| {
                let values: Vec<(&str, f64)> = NAMES
                    .iter()
                    .map(|&name| {
                        let mut v = 50.0 + noise.sample(&mut rng);
                        if name == "c" && t >= from {
                            v += shift;
                        }
                        (name, v)
                    })
                    .collect();
                group.update(t as i64 * 15_000, &values)
            })
            .collect()
    }

    #[test]
    fn one_replica_that_stays_apart_scores_after_the_streak() {
        let mut g = PeerGroup::new(PeerConfig::default());
        let out = run(&mut g, 20, 10, 30.0);
        // Before the shift nobody scores.
        for row in &out[..10] {
            assert!(row.iter().all(|s| s.score == 0.0), "{row:?}");
        }
        // "c" differs from the shift on, scores from the third timestamp.
        assert_eq!(out[10][2].streak, 1);
        assert_eq!(out[10][2].score, 0.0);
        assert_eq!(out[11][2].score, 0.0);
        assert!(out[12][2].score > 0.5, "{:?}", out[12][2]);
        assert!(out[12][2].z > 0.0);
        // The siblings never score.
        for row in &out[10..] {
            for (i, s) in row.iter().enumerate() {
                if i != 2 {
                    assert_eq!(s.score, 0.0, "{i}: {s:?}");
                }
            }
        }
    }

    #[test]
    fn a_blip_does_not_score() {
        let mut g = PeerGroup::new(PeerConfig::default());
        let mut rng = StdRng::seed_from_u64(3);
        let noise = RNormal::new(0.0, 1.0).unwrap();
        for t in 0..30 {
            let values: Vec<(&str, f64)> = NAMES
                .iter()
                .map(|&n| {
                    let blip = if n == "a" && t % 3 == 0 { 40.0 } else { 0.0 };
                    (n, 10.0 + noise.sample(&mut rng) + blip)
                })
                .collect();
            let out = g.update(t * 1000, &values);
            assert!(out.iter().all(|s| s.score == 0.0), "t {t}: {out:?}");
        }
    }

    #[test]
    fn a_missing_instance_loses_its_streak() {
        let mut g = PeerGroup::new(PeerConfig::default());
        let row = |c: f64| vec![("a", 1.0), ("b", 1.1), ("c", c), ("d", 0.9), ("e", 1.05)];
        g.update(0, &row(9.0));
        g.update(1, &row(9.0));
        let without_c = vec![("a", 1.0), ("b", 1.1), ("d", 0.9), ("e", 1.05)];
        g.update(2, &without_c);
        let out = g.update(3, &row(9.0));
        assert_eq!(out[2].streak, 1);
        assert_eq!(out[2].score, 0.0);
    }

    #[test]
    fn small_or_identical_groups() {
        let mut g = PeerGroup::new(PeerConfig {
            consecutive: 1,
            ..PeerConfig::default()
        });
        let two = g.update(0, &[("a", 1.0), ("b", 100.0)]);
        assert!(two.iter().all(|s| s.score == 0.0));
        // Siblings identical: MAD 0, not scored without min_spread.
        let same = g.update(1, &[("a", 5.0), ("b", 5.0), ("c", 5.0), ("d", 9.0)]);
        assert!(same.iter().all(|s| s.score == 0.0), "{same:?}");
        let mut g = PeerGroup::new(PeerConfig {
            consecutive: 1,
            min_spread: 0.1,
            ..PeerConfig::default()
        });
        let same = g.update(1, &[("a", 5.0), ("b", 5.0), ("c", 5.0), ("d", 9.0)]);
        assert!(same[3].score > 0.5, "{same:?}");
        assert_eq!(same[0].score, 0.0);
        // A timestamp that does not advance is ignored.
        let again = g.update(1, &[("a", 5.0), ("b", 5.0), ("c", 5.0), ("d", 9.0)]);
        assert!(again.iter().all(|s| s.streak == 0));
    }

    #[test]
    fn problems_are_all_reported() {
        let bad = PeerConfig {
            threshold: -1.0,
            consecutive: 0,
            min_spread: f64::NAN,
        };
        let fields: Vec<_> = bad.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["threshold", "consecutive", "min_spread"]);
        assert!(PeerConfig::default().problems().is_empty());
    }
}
