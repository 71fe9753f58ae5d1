//! A summary of a dataset, for `heal dataset info` and for sanity checks in tests.
//!
//! Definitions: the **median step** is the lower median of the positive deltas between
//! consecutive samples (duplicates' zero deltas are ignored); a **gap** is a delta larger than
//! twice the median step, and **gap time** is the time missing in gaps, the sum over gaps of
//! `delta - median step` (a gap of 5 minutes in a 1-minute series misses 4 minutes).

use std::fmt;

use super::Dataset;
use crate::series::Labels;
use crate::time::{format_duration, format_rfc3339};

/// The summary of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// The series.
    pub labels: Labels,
    /// Number of samples.
    pub samples: usize,
    /// Earliest timestamp, ms.
    pub first_ms: Option<i64>,
    /// Latest timestamp, ms.
    pub last_ms: Option<i64>,
    /// Median time between samples, ms.
    pub median_step_ms: Option<i64>,
    /// Number of deltas larger than twice the median step.
    pub gaps: usize,
    /// Time missing in gaps, ms.
    pub gap_ms: i64,
    /// NaN values, stale markers included.
    pub nan: usize,
    /// Truth windows over this series.
    pub windows: usize,
}

/// The summary of a dataset: one [`SeriesInfo`] per series, and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Per series, in dataset order.
    pub series: Vec<SeriesInfo>,
    /// Total samples.
    pub samples: usize,
    /// Total NaN values.
    pub nan: usize,
    /// Total gaps.
    pub gaps: usize,
    /// Total truth windows (including any over series absent from the data).
    pub windows: usize,
    /// Earliest timestamp over all series, ms.
    pub first_ms: Option<i64>,
    /// Latest timestamp over all series, ms.
    pub last_ms: Option<i64>,
}

impl SeriesInfo {
    fn of(dataset: &Dataset, index: usize) -> Self {
        let s = &dataset.series[index];
        let mut deltas: Vec<i64> = s
            .samples
            .windows(2)
            .map(|w| w[1].ts_ms - w[0].ts_ms)
            .filter(|&d| d > 0)
            .collect();
        deltas.sort_unstable();
        let median_step_ms = (!deltas.is_empty()).then(|| deltas[(deltas.len() - 1) / 2]);
        let (gaps, gap_ms) = match median_step_ms {
            Some(step) => deltas
                .iter()
                .filter(|&&d| d > 2 * step)
                .fold((0, 0), |(n, t), &d| (n + 1, t + d - step)),
            None => (0, 0),
        };
        SeriesInfo {
            labels: s.labels.clone(),
            samples: s.samples.len(),
            first_ms: s.samples.iter().map(|x| x.ts_ms).min(),
            last_ms: s.samples.iter().map(|x| x.ts_ms).max(),
            median_step_ms,
            gaps,
            gap_ms,
            nan: s.samples.iter().filter(|x| x.value.is_nan()).count(),
            windows: dataset
                .truth
                .iter()
                .filter(|w| w.series == s.labels)
                .count(),
        }
    }
}

impl DatasetInfo {
    /// Summarises a dataset.
    pub fn of(dataset: &Dataset) -> Self {
        let series: Vec<SeriesInfo> = (0..dataset.series.len())
            .map(|i| SeriesInfo::of(dataset, i))
            .collect();
        DatasetInfo {
            samples: series.iter().map(|s| s.samples).sum(),
            nan: series.iter().map(|s| s.nan).sum(),
            gaps: series.iter().map(|s| s.gaps).sum(),
            windows: dataset.truth.len(),
            first_ms: series.iter().filter_map(|s| s.first_ms).min(),
            last_ms: series.iter().filter_map(|s| s.last_ms).max(),
            series,
        }
    }
}

impl fmt::Display for DatasetInfo {
    /// A table, one row per series, then a line of totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), format_rfc3339);
        let header = [
            "series", "samples", "first", "last", "step", "gaps", "gap time", "NaN", "windows",
        ];
        let rows: Vec<[String; 9]> = self
            .series
            .iter()
            .map(|s| {
                [
                    // Label values are the exporter's: no control character
                    // reaches the terminal raw.
                    stdx::text::terminal(&s.labels.to_string()).into_owned(),
                    s.samples.to_string(),
                    time(s.first_ms),
                    time(s.last_ms),
                    s.median_step_ms
                        .map_or_else(|| "-".to_string(), format_duration),
                    s.gaps.to_string(),
                    if s.gap_ms == 0 {
                        "-".to_string()
                    } else {
                        format_duration(s.gap_ms)
                    },
                    s.nan.to_string(),
                    s.windows.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                // The series column reads left to right, numbers line up on
                // the right. Padded by hand: `{cell:<w$}` panics once a
                // label makes `w` exceed 65,535.
                if i == 0 || i == 2 || i == 3 {
                    out.push_str(&stdx::text::pad_right(cell, w));
                } else {
                    out.push_str(&stdx::text::pad_left(cell, w));
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &header)?;
        for row in &rows {
            line(f, &row.each_ref().map(String::as_str))?;
        }
        write!(
            f,
            "{} series, {} samples, {} gaps, {} NaN, {} truth windows, from {} to {}",
            self.series.len(),
            self.samples,
            self.gaps,
            self.nan,
            self.windows,
            time(self.first_ms),
            time(self.last_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{SeriesData, TruthWindow};
    use crate::series::Sample;

    fn dataset() -> Dataset {
        let m = Labels::metric("m").with("a", "x");
        // 1-minute step; 0..=5, then a jump to 10 (4 missing), then 11, and a NaN.
        let mut samples: Vec<Sample> = (0..=5).map(|i| Sample::new(i * 60_000, 1.0)).collect();
        samples.push(Sample::new(10 * 60_000, f64::NAN));
        samples.push(Sample::new(11 * 60_000, 1.0));
        Dataset {
            series: vec![
                SeriesData {
                    labels: m.clone(),
                    samples,
                },
                SeriesData {
                    labels: Labels::metric("empty"),
                    samples: vec![],
                },
            ],
            truth: vec![TruthWindow {
                series: m,
                start_ms: 0,
                end_ms: 60_000,
            }],
        }
    }

    #[test]
    fn counts() {
        let info = dataset().info();
        let s = &info.series[0];
        assert_eq!(s.samples, 8);
        assert_eq!(s.median_step_ms, Some(60_000));
        assert_eq!((s.gaps, s.gap_ms), (1, 4 * 60_000));
        assert_eq!((s.nan, s.windows), (1, 1));
        assert_eq!((s.first_ms, s.last_ms), (Some(0), Some(660_000)));
        assert_eq!(info.series[1].median_step_ms, None);
        assert_eq!(
            (info.samples, info.nan, info.gaps, info.windows),
            (8, 1, 1, 1)
        );
    }

    #[test]
    fn table() {
        let expected = "\
series    samples  first                 last                  step  gaps  gap time  NaN  windows
m{a=\"x\"}        8  1970-01-01T00:00:00Z  1970-01-01T00:11:00Z    1m     1        4m    1        1
empty           0  -                     -                        -     0         -    0        0
2 series, 8 samples, 1 gaps, 1 NaN, 1 truth windows, from 1970-01-01T00:00:00Z to 1970-01-01T00:11:00Z";
        assert_eq!(dataset().info().to_string(), expected);
    }

    #[test]
    fn a_label_of_any_length_or_content_prints_without_panic_or_raw_controls() {
        // 65,523 characters was enough for `{:<w$}` to panic (issue 10, 2).
        let long = "x".repeat(70_000);
        let hostile = "a\nb\rc\u{1b}[2Jd";
        let dataset = Dataset {
            series: vec![
                SeriesData {
                    labels: Labels::metric("m").with("big", &long),
                    samples: vec![Sample::new(0, 1.0)],
                },
                SeriesData {
                    labels: Labels::metric("m").with("evil", hostile),
                    samples: vec![Sample::new(0, 1.0)],
                },
            ],
            truth: vec![],
        };
        let text = DatasetInfo::of(&dataset).to_string();
        assert!(text.contains(&long));
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "a raw control character in the table");
        assert!(text.contains(r#"m{evil="a\nb\rc\u{1b}[2Jd"}"#), "the escaped label is missing");
        // Header, two rows, totals: no label broke a line.
        assert_eq!(text.lines().count(), 4);
    }
}
