//! Honest evaluation on a NAB corpus: the threshold sweep, the
//! leave-one-category-out cross-validation, and NAB's results layout.
//!
//! Why leave one *category* out: NAB's categories are different kinds of
//! data (artificial shapes, ad-exchange prices, known-cause incidents,
//! cloud metrics, traffic sensors, tweet counts), and the part of NAB kept
//! aside from development holds categories the development part does not
//! have. A threshold (or any setting) chosen on some series and scored on
//! others *of the same kind* still flatters the detector; choosing it on the
//! other categories and scoring the left-out one asks what a new kind of
//! data can expect, which is the question the kept-aside series ask.
//!
//! The pieces, all pure:
//! - [`RawSeries`]: one series' raw scores (what every sample would fire
//!   with, NaN for a row that never reached the detector) and its windows;
//! - [`Replay`]: the excursion logic ([`fire_once`](crate::fire_once)) at a
//!   threshold, the reset threshold scaled with it;
//! - [`Sweep`]: every series' NAB result at every candidate threshold,
//!   computed once, from which the best threshold over any subset of the
//!   series is a sum;
//! - [`cross_validate`]: per left-out category, the configuration and
//!   threshold best on the other categories, scored on the left-out one;
//!   pooled over the folds and as the mean over categories;
//! - [`write_results_csv`]: one series' rows in NAB's results layout
//!   (`timestamp,value,anomaly_score`), which NAB's own scorer (and
//!   `shared/tools/nab_score.py`) reads from `<out>/<category>/<file>.csv`
//!   ([`results_path`]).
//!
//! # How a command uses it
//!
//! `heal bench nab DIR --cv`: score every series once per configuration
//! with [`Detector::scores_only`](crate::Detector::scores_only) (NaN for a
//! row the sample policy drops), build one [`Sweep`] per configuration over
//! [`default_thresholds`] with that configuration's [`Replay::of`], and
//! print [`cross_validate`]'s folds, pooled and mean figures per profile
//! next to its in-sample one. `--results OUT`: at the threshold reported,
//! write each series' [`Replay::fire`] output with [`write_results_csv`] to
//! `OUT/`[`results_path`]. `heal tune` passes its candidate configurations
//! as several sweeps, so that the choice among them is made inside each
//! fold too.
//!
//! ```
//! use detect::nab::{cross_validate, default_thresholds, Profile, RawSeries, Replay, RowWindow, Sweep};
//! use detect::{Detector, DetectorConfig};
//!
//! // Two categories of one series each: a spike in a window.
//! let series: Vec<RawSeries> = ["a/one.csv", "b/two.csv"]
//!     .iter()
//!     .map(|name| {
//!         let cfg = DetectorConfig::nab();
//!         let mut d = Detector::scores_only(cfg);
//!         let raw = (0..2000)
//!             .map(|i| {
//!                 let x = 10.0 + (i as f64 * 0.7).sin() + if i == 1500 { 40.0 } else { 0.0 };
//!                 d.update(i * 60_000, x).score
//!             })
//!             .collect();
//!         RawSeries { name: name.to_string(), raw, windows: vec![RowWindow { start: 1450, end: 1549 }] }
//!     })
//!     .collect();
//! let cfg = DetectorConfig::nab();
//! let sweep = Sweep::new(&series, &default_thresholds(), Replay::of(&cfg));
//! let cv = cross_validate(&[sweep], Profile::STANDARD).expect("two categories");
//! assert_eq!(cv.folds.len(), 2);
//! assert_eq!(cv.pooled.tp, 2);
//! ```

use std::collections::BTreeSet;

use super::scorer::{FileScore, NabFile, Profile, ProfileScores, RowWindow};

/// One series of a corpus, scored: the raw score of every row and the
/// labelled windows.
#[derive(Debug, Clone, Default)]
pub struct RawSeries {
    /// The series' key, `<category>/<file>.csv` (as in NAB's label files).
    pub name: String,
    /// The raw score of every row, in row order: what the sample would
    /// fire with (a detector built with
    /// [`Detector::scores_only`](crate::Detector::scores_only)); NaN for a
    /// row the sample policy dropped.
    pub raw: Vec<f64>,
    /// Labelled windows over row indices, sorted and disjoint.
    pub windows: Vec<RowWindow>,
}

impl RawSeries {
    /// The series' category: its key up to the first `/` (the whole key if
    /// it has none).
    pub fn category(&self) -> &str {
        category_of(&self.name)
    }
}

/// The category of a NAB key `<category>/<file>.csv`: everything before
/// the first `/` (the whole key when there is none).
pub fn category_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(c, _)| c)
}

/// The path, relative to a results directory, where NAB's results layout
/// puts the series `key` (`<category>/<file>.csv`): the key itself, with
/// `/` as the separator. Kept as a function so that every writer agrees.
pub fn results_path(key: &str) -> &str {
    key
}

/// How a detector's excursion logic turns raw scores into detections at a
/// threshold `t`: the reset threshold is `reset_ratio * t` and an excursion
/// ends after `reset_samples` quiet samples, as
/// [`fire_once`](crate::fire_once) replays it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replay {
    /// Reset threshold over threshold, in (0, 1].
    pub reset_ratio: f64,
    /// Samples in a row below the reset threshold that end an excursion.
    pub reset_samples: u32,
}

impl Replay {
    /// The replay of a configuration: its own reset ratio and run.
    pub fn of(cfg: &crate::DetectorConfig) -> Self {
        let ratio = if cfg.threshold > 0.0 && cfg.threshold.is_finite() {
            (cfg.reset_threshold / cfg.threshold).clamp(0.0, 1.0)
        } else {
            0.5
        };
        Replay {
            reset_ratio: ratio,
            reset_samples: cfg.reset_samples,
        }
    }

    /// What the detector reports at threshold `t`, row by row: the score of
    /// each row that fires an excursion, 0 elsewhere (and on dropped rows).
    /// This is exactly the per-row output of an online run at `t`.
    pub fn fire(&self, raw: &[f64], t: f64) -> Vec<f64> {
        crate::fire_once(raw, t, self.reset_ratio * t, self.reset_samples)
    }
}

/// The thresholds `heal bench nab` tries: 121 steps from 0.05 to 0.65.
pub fn default_thresholds() -> Vec<f64> {
    (0..=120)
        .map(|k| 0.05 + 0.6 * f64::from(k) / 120.0)
        .collect()
}

/// Every series' NAB result at every candidate threshold, under the three
/// profiles. Built once per configuration; the best threshold over any
/// subset of the series is then a sum per threshold.
#[derive(Debug, Clone)]
pub struct Sweep {
    names: Vec<String>,
    windows: Vec<usize>,
    thresholds: Vec<f64>,
    /// `scores[t][profile][series]`.
    scores: Vec<[Vec<FileScore>; 3]>,
}

impl Sweep {
    /// Replays the excursion logic over every series at every threshold and
    /// scores the detections with NAB's rules.
    pub fn new(series: &[RawSeries], thresholds: &[f64], replay: Replay) -> Self {
        let scores = thresholds
            .iter()
            .map(|&t| {
                let files: Vec<NabFile> = series
                    .iter()
                    .map(|s| NabFile {
                        name: s.name.clone(),
                        scores: replay.fire(&s.raw, t),
                        windows: s.windows.clone(),
                    })
                    .collect();
                Profile::ALL.map(|p| files.iter().map(|f| f.score(t, p)).collect())
            })
            .collect();
        Sweep {
            names: series.iter().map(|s| s.name.clone()).collect(),
            windows: series.iter().map(|s| s.windows.len()).collect(),
            thresholds: thresholds.to_vec(),
            scores,
        }
    }

    /// The series' keys, in the order they were given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The candidate thresholds.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// The result over the series for which `member` is true, at the
    /// threshold of index `t`.
    pub fn at(&self, t: usize, profile: Profile, member: impl Fn(usize) -> bool) -> Pooled {
        let k = profile_index(profile);
        let mut out = Pooled {
            threshold: self.thresholds[t],
            ..Pooled::default()
        };
        for (i, s) in self.scores[t][k].iter().enumerate() {
            if member(i) {
                out.raw += s.score;
                out.tp += s.tp;
                out.fn_ += s.fn_;
                out.fp += s.fp;
                out.windows += self.windows[i];
            }
        }
        out.profile = profile;
        out
    }

    /// The best threshold over the series for which `member` is true (ties
    /// to the higher threshold, as NAB's optimiser and
    /// [`best_threshold`](super::best_threshold) break them), with its
    /// result.
    pub fn best(&self, profile: Profile, member: impl Fn(usize) -> bool) -> (usize, Pooled) {
        let mut best: Option<(usize, Pooled)> = None;
        for t in 0..self.thresholds.len() {
            let p = self.at(t, profile, &member);
            if best.is_none_or(|(_, b)| p.raw >= b.raw) {
                best = Some((t, p));
            }
        }
        best.expect("a sweep has at least one threshold")
    }
}

fn profile_index(p: Profile) -> usize {
    Profile::ALL
        .iter()
        .position(|q| *q == p)
        .expect("one of NAB's three profiles")
}

/// A NAB result summed over some series: raw score and counts; normalised
/// against the windows those series hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pooled {
    /// The profile it was scored under.
    pub profile: Profile,
    /// The threshold it was scored at (for a pooled cross-validated figure,
    /// the threshold of the last fold; see [`Fold::threshold`]).
    pub threshold: f64,
    /// Sum of the series' raw NAB scores.
    pub raw: f64,
    /// Windows detected.
    pub tp: usize,
    /// Windows missed.
    pub fn_: usize,
    /// Detections outside every window.
    pub fp: usize,
    /// Windows of the series.
    pub windows: usize,
}

impl Default for Pooled {
    fn default() -> Self {
        Pooled {
            profile: Profile::STANDARD,
            threshold: f64::NAN,
            raw: 0.0,
            tp: 0,
            fn_: 0,
            fp: 0,
            windows: 0,
        }
    }
}

impl Pooled {
    /// NAB's normalised score, `100 (S - S_null) / (S_perfect - S_null)`;
    /// `None` for series with no window (their result is only the cost of
    /// their false alarms, [`Self::raw`]).
    pub fn normalized(&self) -> Option<f64> {
        let perfect = self.profile.tp * self.windows as f64;
        let null = -self.profile.fn_ * self.windows as f64;
        (perfect > null).then(|| 100.0 * (self.raw - null) / (perfect - null))
    }

    fn add(&mut self, o: &Pooled) {
        self.raw += o.raw;
        self.tp += o.tp;
        self.fn_ += o.fn_;
        self.fp += o.fp;
        self.windows += o.windows;
    }

    /// As a [`ProfileScores`] (normalised 0 for series without windows).
    pub fn to_profile_scores(&self) -> ProfileScores {
        ProfileScores {
            threshold: self.threshold,
            normalized: self.normalized().unwrap_or(0.0),
            tp: self.tp,
            fn_: self.fn_,
            fp: self.fp,
        }
    }
}

/// One fold of [`cross_validate`]: a left-out category and what the
/// configuration and threshold chosen without it scored on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// The left-out category.
    pub category: String,
    /// Series in it.
    pub series: usize,
    /// Index (into the candidates given) of the configuration chosen on
    /// the other categories.
    pub config: usize,
    /// The threshold chosen on the other categories.
    pub threshold: f64,
    /// The result of that choice on the other categories (in-sample for
    /// this fold).
    pub train: Pooled,
    /// Its result on the left-out category: the held-out figure.
    pub held_out: Pooled,
}

/// Leave-one-category-out cross-validation under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    /// The profile.
    pub profile: Profile,
    /// One fold per category, in category order.
    pub folds: Vec<Fold>,
    /// The held-out results of every fold added up (every series scored
    /// once, by a choice made without its category), normalised against
    /// all windows: comparable with the in-sample corpus score.
    pub pooled: Pooled,
    /// The mean of the folds' normalised held-out scores over the
    /// categories that have windows.
    pub mean: f64,
    /// In-sample: the configuration and threshold best on every series,
    /// and their result.
    pub in_sample_config: usize,
    /// The in-sample result.
    pub in_sample: Pooled,
}

/// Leave-one-category-out cross-validation: for each category, the
/// configuration (one [`Sweep`] per candidate configuration, all over the
/// same series in the same order) and threshold with the best result on
/// the *other* categories, scored on the left-out one.
///
/// With one candidate this chooses only the threshold; with several it
/// also chooses among configurations, so a search over settings is
/// charged for its choice. Categories are the keys' prefixes
/// ([`category_of`]). Returns `None` when there are no candidates or fewer
/// than two categories.
pub fn cross_validate(candidates: &[Sweep], profile: Profile) -> Option<CrossValidation> {
    let first = candidates.first()?;
    let cats: Vec<&str> = first.names.iter().map(|n| category_of(n)).collect();
    let distinct: BTreeSet<&str> = cats.iter().copied().collect();
    if distinct.len() < 2 {
        return None;
    }
    let best_over = |member: &dyn Fn(usize) -> bool| -> (usize, usize, Pooled) {
        let mut best: Option<(usize, usize, Pooled)> = None;
        for (c, sweep) in candidates.iter().enumerate() {
            let (t, p) = sweep.best(profile, member);
            if best.is_none_or(|(_, _, b)| p.raw > b.raw) {
                best = Some((c, t, p));
            }
        }
        best.expect("at least one candidate")
    };
    let mut folds = Vec::new();
    let mut pooled = Pooled {
        profile,
        ..Pooled::default()
    };
    for cat in &distinct {
        let (c, t, train) = best_over(&|i| cats[i] != *cat);
        let held_out = candidates[c].at(t, profile, |i| cats[i] == *cat);
        pooled.add(&held_out);
        pooled.threshold = held_out.threshold;
        folds.push(Fold {
            category: (*cat).to_string(),
            series: cats.iter().filter(|c| **c == *cat).count(),
            config: c,
            threshold: candidates[c].thresholds[t],
            train,
            held_out,
        });
    }
    let scored: Vec<f64> = folds
        .iter()
        .filter_map(|f| f.held_out.normalized())
        .collect();
    let mean = if scored.is_empty() {
        0.0
    } else {
        scored.iter().sum::<f64>() / scored.len() as f64
    };
    let (in_sample_config, _, in_sample) = best_over(&|_| true);
    Some(CrossValidation {
        profile,
        folds,
        pooled,
        mean,
        in_sample_config,
        in_sample,
    })
}

/// Writes one series' rows in NAB's results layout: the header
/// `timestamp,value,anomaly_score`, then per row the timestamp and value as
/// the data file spells them and the detector's score at the reported
/// threshold ([`Replay::fire`]). `rows` and `scores` are in row order and
/// of the same length (extra items of either are ignored). Writes to any
/// `fmt::Write`, so that the caller decides where the text goes.
pub fn write_results_csv<'a>(
    out: &mut impl std::fmt::Write,
    rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    scores: &[f64],
) -> std::fmt::Result {
    out.write_str("timestamp,value,anomaly_score\n")?;
    for ((ts, value), score) in rows.into_iter().zip(scores) {
        let score = if score.is_finite() { *score } else { 0.0 };
        writeln!(out, "{ts},{value},{score}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(
        name: &str,
        n: usize,
        window: Option<(usize, usize)>,
        hits: &[(usize, f64)],
    ) -> RawSeries {
        let mut raw = vec![0.0; n];
        for &(i, s) in hits {
            raw[i] = s;
        }
        RawSeries {
            name: name.to_string(),
            raw,
            windows: window
                .map(|(start, end)| vec![RowWindow { start, end }])
                .unwrap_or_default(),
        }
    }

    const REPLAY: Replay = Replay {
        reset_ratio: 0.5,
        reset_samples: 5,
    };

    #[test]
    fn categories_are_key_prefixes() {
        assert_eq!(category_of("realKnownCause/nyc_taxi.csv"), "realKnownCause");
        assert_eq!(category_of("plain.csv"), "plain.csv");
        assert_eq!(results_path("a/b.csv"), "a/b.csv");
    }

    #[test]
    fn the_sweep_matches_the_corpus_scorer() {
        let s = vec![
            series("a/1.csv", 1000, Some((500, 599)), &[(520, 0.5), (800, 0.3)]),
            series(
                "b/1.csv",
                1000,
                Some((300, 399)),
                &[(200, 0.45), (310, 0.2)],
            ),
        ];
        let ts = [0.1, 0.25, 0.4, 0.6];
        let sweep = Sweep::new(&s, &ts, REPLAY);
        for (k, &t) in ts.iter().enumerate() {
            let files: Vec<NabFile> = s
                .iter()
                .map(|x| NabFile {
                    name: x.name.clone(),
                    scores: REPLAY.fire(&x.raw, t),
                    windows: x.windows.clone(),
                })
                .collect();
            for p in Profile::ALL {
                let want = super::super::corpus_score(&files, t, p);
                let got = sweep.at(k, p, |_| true);
                assert!((got.normalized().unwrap() - want.normalized).abs() < 1e-9);
                assert_eq!((got.tp, got.fn_, got.fp), (want.tp, want.fn_, want.fp));
            }
        }
    }

    #[test]
    fn the_threshold_is_chosen_without_the_left_out_category() {
        // Category a wants a low threshold (its window hit scores 0.3, no
        // false alarm); category b has a false alarm at 0.35 and its hit at
        // 0.5, so it wants a high one; c has no window, one false alarm at
        // 0.2. Each fold must use the other categories' choice.
        let s = vec![
            series("a/1.csv", 1000, Some((500, 599)), &[(510, 0.3)]),
            series(
                "b/1.csv",
                1000,
                Some((500, 599)),
                &[(200, 0.35), (510, 0.5)],
            ),
            series("c/1.csv", 1000, None, &[(300, 0.2)]),
        ];
        let ts = [0.15, 0.25, 0.4];
        let sweep = Sweep::new(&s, &ts, REPLAY);
        let cv = cross_validate(std::slice::from_ref(&sweep), Profile::STANDARD).unwrap();
        assert_eq!(cv.folds.len(), 3);
        let fold = |c: &str| cv.folds.iter().find(|f| f.category == c).unwrap();
        // Leaving a out: b and c prefer 0.4 (no false alarm, b's hit) and
        // a misses its window at 0.4.
        assert_eq!(fold("a").threshold, 0.4);
        assert_eq!(fold("a").held_out.fn_, 1);
        // Leaving b out: a's hit needs <= 0.3, c's alarm is 0.2 so 0.25
        // wins; b at 0.25 has its false alarm and its hit.
        assert_eq!(fold("b").threshold, 0.25);
        assert_eq!((fold("b").held_out.tp, fold("b").held_out.fp), (1, 1));
        // Leaving c out: a wants <= 0.3, b at 0.25 gains a (costs 0.11
        // less than the missing hit of a): 0.25 again; c's alarm is below.
        assert_eq!(fold("c").threshold, 0.25);
        assert_eq!(fold("c").held_out.fp, 0);
        assert!(fold("c").held_out.normalized().is_none());
        // Pooled: a missed (-1), b hit with a false alarm, c clean.
        assert_eq!(cv.pooled.windows, 2);
        assert_eq!((cv.pooled.tp, cv.pooled.fn_, cv.pooled.fp), (1, 1, 1));
        // The in-sample choice sees all three and does at least as well.
        assert!(cv.in_sample.raw >= cv.pooled.raw);
        assert!(cross_validate(&[], Profile::STANDARD).is_none());
    }

    #[test]
    fn several_candidates_are_chosen_among_per_fold() {
        let good_for_a = vec![
            series("a/1.csv", 1000, Some((500, 599)), &[(505, 0.5)]),
            series("b/1.csv", 1000, Some((500, 599)), &[]),
        ];
        let good_for_b = vec![
            series("a/1.csv", 1000, Some((500, 599)), &[]),
            series("b/1.csv", 1000, Some((500, 599)), &[(505, 0.5)]),
        ];
        let ts = [0.3];
        let c = [
            Sweep::new(&good_for_a, &ts, REPLAY),
            Sweep::new(&good_for_b, &ts, REPLAY),
        ];
        let cv = cross_validate(&c, Profile::STANDARD).unwrap();
        // Leaving a out, b prefers candidate 1, which misses a: the
        // held-out result is 0 windows found, though each is perfect
        // somewhere.
        assert_eq!(cv.folds[0].config, 1);
        assert_eq!(cv.folds[1].config, 0);
        assert_eq!(cv.pooled.tp, 0);
        assert_eq!(cv.in_sample.tp, 1);
    }

    #[test]
    fn results_rows_are_nab_layout() {
        let mut out = String::new();
        let rows = [("2014-01-01 00:00:00", "1.5"), ("2014-01-01 00:05:00", "2")];
        write_results_csv(&mut out, rows, &[0.0, f64::NAN]).unwrap();
        assert_eq!(
            out,
            "timestamp,value,anomaly_score\n2014-01-01 00:00:00,1.5,0\n2014-01-01 00:05:00,2,0\n"
        );
        let mut out = String::new();
        write_results_csv(&mut out, rows, &[0.25, 0.0]).unwrap();
        assert!(out.contains("00:00:00,1.5,0.25\n"), "{out}");
    }
}
