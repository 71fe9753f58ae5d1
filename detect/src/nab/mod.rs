//! The Numenta Anomaly Benchmark (NAB) scoring rules, as pure functions.
//!
//! NAB rewards a detector for flagging each labelled anomaly window early and
//! charges it for every detection outside a window. The rules implemented
//! here are those of NAB v1.1 as written down in the dataset README
//! (`shared/datasets/nab-dev/README.md`):
//!
//! - the first `min(floor(0.15 N), 750)` rows of a file are probation and not
//!   scored;
//! - `sigma(y) = 2 / (1 + exp(5 y)) - 1`, and `-1` for `y > 3`;
//! - in a window `[L, R]` of `W` rows only the earliest detection counts,
//!   worth `tp * sigma(-(R - i + 1) / W) / sigma(-1)`; a window with no
//!   detection costs `-fn`;
//! - a detection outside every window costs `fp * sigma((i - R_prev) / (W_prev - 1))`
//!   after a window, or `-fp` when no window came before it;
//! - the corpus score is normalised to `100 (S - S_null) / (S_perfect - S_null)`.
//!
//! Everything works on row indices: callers map timestamps to rows
//! ([`windows_to_rows`]) so this module never parses anything.

mod cv;
mod scorer;

pub use cv::{
    category_of, cross_validate, default_thresholds, results_path, write_results_csv,
    CrossValidation, Fold, Pooled, RawSeries, Replay, Sweep,
};
pub use scorer::{
    best_threshold, candidate_thresholds, corpus_score, probation_rows, windows_to_rows, FileScore,
    NabFile, Profile, ProfileScores, RowWindow,
};
