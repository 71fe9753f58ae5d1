//! NAB scorer: per-file raw scores and the corpus-wide normalised score.

/// Weights of one NAB cost profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Profile name as NAB spells it.
    pub name: &'static str,
    /// Reward for a window detected at its very start.
    pub tp: f64,
    /// Cost scale of a false positive.
    pub fp: f64,
    /// Cost of a missed window.
    pub fn_: f64,
}

impl Profile {
    /// NAB's `standard` profile.
    pub const STANDARD: Profile = Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    };
    /// NAB's `reward_low_FP_rate` profile.
    pub const LOW_FP: Profile = Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    };
    /// NAB's `reward_low_FN_rate` profile.
    pub const LOW_FN: Profile = Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    };
    /// The three profiles NAB reports, in its order.
    pub const ALL: [Profile; 3] = [Profile::STANDARD, Profile::LOW_FP, Profile::LOW_FN];
}

/// An anomaly window as an inclusive range of row indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowWindow {
    /// First row inside the window.
    pub start: usize,
    /// Last row inside the window (inclusive).
    pub end: usize,
}

impl RowWindow {
    fn width(&self) -> usize {
        self.end - self.start + 1
    }
}

/// One scored file: the detector's score per row and the labelled windows.
#[derive(Debug, Clone, Default)]
pub struct NabFile {
    /// File key, such as `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    /// Anomaly score per row, in row order.
    pub scores: Vec<f64>,
    /// Labelled windows, sorted and disjoint.
    pub windows: Vec<RowWindow>,
}

/// Number of leading rows NAB does not score.
pub fn probation_rows(rows: usize) -> usize {
    ((rows as f64 * 0.15).floor() as usize).min(750)
}

/// Map windows given in timestamps (inclusive) to row windows, given the
/// timestamp of every row in file order. A window covers the rows whose
/// timestamp lies within it; NAB files are mostly sorted, and a window is
/// taken as the span from the first to the last such row. Windows that cover
/// no row are dropped.
pub fn windows_to_rows(timestamps: &[i64], windows: &[(i64, i64)]) -> Vec<RowWindow> {
    let mut out: Vec<RowWindow> = windows
        .iter()
        .filter_map(|&(lo, hi)| {
            let first = timestamps.iter().position(|&t| t >= lo && t <= hi)?;
            let last = timestamps.iter().rposition(|&t| t >= lo && t <= hi)?;
            Some(RowWindow {
                start: first,
                end: last,
            })
        })
        .collect();
    out.sort_by_key(|w| w.start);
    out
}

/// NAB's scaled sigmoid.
fn sigma(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Raw score of one file under one profile, with the counts behind it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FileScore {
    /// Sum of rewards and costs.
    pub score: f64,
    /// Windows detected.
    pub tp: usize,
    /// Windows missed.
    pub fn_: usize,
    /// Detections outside every window (after probation).
    pub fp: usize,
}

impl NabFile {
    /// Raw score of this file when every row with `score >= threshold` is a
    /// detection.
    pub fn score(&self, threshold: f64, profile: Profile) -> FileScore {
        let detections = self
            .scores
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= threshold)
            .map(|(i, _)| i);
        self.score_detections(detections, profile)
    }

    /// Raw score for an explicit, increasing sequence of detected rows.
    pub fn score_detections(
        &self,
        detections: impl Iterator<Item = usize>,
        profile: Profile,
    ) -> FileScore {
        let probation = probation_rows(self.scores.len());
        let mut out = FileScore::default();
        let mut detected = vec![false; self.windows.len()];
        // Index of the window at or after the current row.
        let mut w = 0;
        for i in detections.filter(|&i| i >= probation) {
            while w < self.windows.len() && self.windows[w].end < i {
                w += 1;
            }
            match self.windows.get(w) {
                Some(win) if win.start <= i => {
                    if !detected[w] {
                        detected[w] = true;
                        let y = -((win.end - i + 1) as f64) / win.width() as f64;
                        out.score += profile.tp * sigma(y) / sigma(-1.0);
                        out.tp += 1;
                    }
                }
                _ => {
                    out.fp += 1;
                    out.score += match w.checked_sub(1).map(|p| self.windows[p]) {
                        Some(prev) => {
                            let span = (prev.width() as f64 - 1.0).max(1.0);
                            profile.fp * sigma((i - prev.end) as f64 / span)
                        }
                        None => -profile.fp,
                    };
                }
            }
        }
        out.fn_ = detected.iter().filter(|d| !**d).count();
        out.score -= profile.fn_ * out.fn_ as f64;
        out
    }
}

/// A corpus-wide result under one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileScores {
    /// Threshold the result was computed at.
    pub threshold: f64,
    /// Normalised score: 100 is perfect, 0 is a detector that never fires.
    pub normalized: f64,
    /// Windows detected, missed, and false positives over the corpus.
    pub tp: usize,
    /// Windows missed.
    pub fn_: usize,
    /// Detections outside windows.
    pub fp: usize,
}

/// Normalised corpus score at one threshold.
pub fn corpus_score(files: &[NabFile], threshold: f64, profile: Profile) -> ProfileScores {
    let mut raw = 0.0;
    let (mut tp, mut fn_, mut fp, mut windows) = (0, 0, 0, 0);
    for f in files {
        let s = f.score(threshold, profile);
        raw += s.score;
        tp += s.tp;
        fn_ += s.fn_;
        fp += s.fp;
        windows += f.windows.len();
    }
    let perfect = profile.tp * windows as f64;
    let null = -profile.fn_ * windows as f64;
    let normalized = if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        0.0
    };
    ProfileScores {
        threshold,
        normalized,
        tp,
        fn_,
        fp,
    }
}

/// Thresholds worth trying for a corpus: up to `max` distinct score values,
/// spread evenly by rank over the positive scores, plus 1.0. A detection
/// set only changes at a score value, so these cover the useful range.
pub fn candidate_thresholds(files: &[NabFile], max: usize) -> Vec<f64> {
    let mut all: Vec<f64> = files
        .iter()
        .flat_map(|f| f.scores.iter().copied())
        .filter(|s| *s > 0.0 && s.is_finite())
        .collect();
    all.sort_by(|a, b| a.total_cmp(b));
    all.dedup();
    let mut out: Vec<f64> = if all.len() <= max {
        all
    } else {
        (0..max)
            .map(|k| all[k * (all.len() - 1) / (max - 1)])
            .collect()
    };
    out.push(1.0);
    out.dedup();
    out
}

/// The threshold among `candidates` that maximises the normalised score
/// under `profile`, with that score. Ties go to the higher threshold (fewer
/// detections).
pub fn best_threshold(files: &[NabFile], candidates: &[f64], profile: Profile) -> ProfileScores {
    let mut best = corpus_score(files, f64::INFINITY, profile);
    for &t in candidates {
        let s = corpus_score(files, t, profile);
        if s.normalized > best.normalized || (s.normalized == best.normalized && t > best.threshold)
        {
            best = s;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize, windows: &[(usize, usize)]) -> NabFile {
        NabFile {
            name: "t".into(),
            scores: vec![0.0; n],
            windows: windows
                .iter()
                .map(|&(start, end)| RowWindow { start, end })
                .collect(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probation_rows(1000), 150);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(22695), 750);
    }

    #[test]
    fn no_detection_costs_fn_per_window() {
        let f = file(1000, &[(300, 399), (600, 699)]);
        let s = f.score_detections(std::iter::empty(), Profile::STANDARD);
        assert_eq!((s.tp, s.fn_, s.fp), (0, 2, 0));
        assert!(close(s.score, -2.0));
        let s = f.score_detections(std::iter::empty(), Profile::LOW_FN);
        assert!(close(s.score, -4.0));
    }

    #[test]
    fn detection_at_window_start_is_worth_tp() {
        let f = file(1000, &[(300, 399)]);
        let s = f.score_detections([300].into_iter(), Profile::STANDARD);
        assert_eq!((s.tp, s.fn_, s.fp), (1, 0, 0));
        assert!(close(s.score, 1.0), "{}", s.score);
    }

    #[test]
    fn later_detection_is_worth_less_and_only_the_first_counts() {
        let f = file(1000, &[(300, 399)]);
        // Halfway: sigma(-0.5)/sigma(-1).
        let s = f.score_detections([350, 360, 399].into_iter(), Profile::STANDARD);
        let expected = sigma(-50.0 / 100.0) / sigma(-1.0);
        assert!(close(s.score, expected), "{} vs {}", s.score, expected);
        assert_eq!((s.tp, s.fp), (1, 0));
        // The last row of the window is worth almost nothing.
        let s = f.score_detections([399].into_iter(), Profile::STANDARD);
        assert!(s.score > 0.0 && s.score < 0.05, "{}", s.score);
    }

    #[test]
    fn false_positive_before_any_window_costs_full_fp() {
        let f = file(1000, &[(600, 699)]);
        let s = f.score_detections([200, 650].into_iter(), Profile::STANDARD);
        assert_eq!((s.tp, s.fp), (1, 1));
        let win = sigma(-50.0 / 100.0) / sigma(-1.0);
        assert!(close(s.score, win - 0.11));
    }

    #[test]
    fn false_positive_right_after_window_is_cheap_far_after_costs_fp() {
        let f = file(2000, &[(300, 400)]);
        let just_after = f.score_detections([401].into_iter(), Profile::STANDARD);
        // sigma(1/100) ~ -0.025
        assert!(close(just_after.score, -1.0 + 0.11 * sigma(0.01)));
        let far = f.score_detections([1500].into_iter(), Profile::STANDARD);
        assert!(close(far.score, -1.0 - 0.11));
    }

    #[test]
    fn detections_in_probation_are_ignored() {
        let f = file(1000, &[(100, 120)]);
        // Window lies in probation (150 rows): a detection there is not scored.
        let s = f.score_detections([110].into_iter(), Profile::STANDARD);
        assert_eq!((s.tp, s.fn_), (0, 1));
    }

    #[test]
    fn corpus_normalisation() {
        let mut a = file(1000, &[(300, 399)]);
        a.scores[300] = 0.9;
        let b = file(1000, &[(500, 599)]);
        let s = corpus_score(&[a.clone(), b.clone()], 0.5, Profile::STANDARD);
        // One perfect window, one miss: (1 - 1 - (-2)) / (2 - (-2)) = 50.
        assert!(close(s.normalized, 50.0), "{}", s.normalized);
        let best = best_threshold(&[a, b], &[0.1, 0.9, 0.95], Profile::STANDARD);
        assert!(close(best.normalized, 50.0));
        assert_eq!(best.threshold, 0.9);
    }

    #[test]
    fn windows_map_to_rows_inclusively() {
        let ts: Vec<i64> = (0..10).map(|i| i * 10).collect();
        let w = windows_to_rows(&ts, &[(25, 60), (200, 300)]);
        assert_eq!(w, vec![RowWindow { start: 3, end: 6 }]);
    }
}
