//! Datasets: recorded series plus optional ground truth, as files.
//!
//! # File format
//!
//! A dataset is a Parquet file in long form, one row per sample:
//!
//! | column      | type                | meaning                                         |
//! |-------------|---------------------|-------------------------------------------------|
//! | `timestamp` | `Datetime(ms)`      | sample time, **UTC** (stored without a zone)    |
//! | `value`     | `Float64`           | sample value, NaN and ±Inf kept as recorded     |
//! | `<label>`   | `String`, nullable  | one column per label name, `__name__` included; |
//! |             |                     | null when the series does not have that label   |
//!
//! Rows are sorted by series (label sets in [`Labels`] order) then by time. Raw data is stored
//! as recorded: NaN, duplicates of a timestamp and the like are kept, and it is the
//! [`crate::Sanitizer`] that decides what reaches a detector; a dataset is evidence, not an
//! opinion about it. A label cannot be called `timestamp` or `value`. A series without samples
//! has no row, so it is not stored.
//!
//! Ground truth, when there is any, is a sidecar JSON file next to it, `<stem>.truth.json`
//! (`x.parquet` has `x.truth.json`); see [`TruthWindow`].
//!
//! # Writing
//!
//! [`Dataset::write`] writes each file to a temporary file in the destination directory, flushes
//! it to disk, then renames it over the destination: a rename within a directory is atomic on
//! POSIX file systems, so a reader sees the old file or the new one, never a partial one, and an
//! error (or a crash) leaves the destination untouched. The pair is not atomic as a whole (no
//! portable way exists to rename two files at once); the sidecar is renamed first, then the
//! Parquet file. Writing a dataset without truth removes a stale sidecar so that old windows are
//! never attached to new data.

mod csv_import;
mod info;
mod logs;
mod parquet;
mod truth;

use std::fs;
use std::io::Write;
use std::path::Path;

pub use csv_import::{import_long_csv, import_nab_csv, nab_key, NabTruth};
pub use info::{DatasetInfo, SeriesInfo};
pub use logs::{LogDataset, LogLine, LogStream};
#[cfg(test)]
pub(crate) use truth::read as truth_read;
pub use truth::{truth_path, TruthWindow};

use stdx::Staged;

use crate::error::{Error, Result};
use crate::series::{Labels, Sample};

/// The samples of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series.
    pub labels: Labels,
    /// Its samples, in time order.
    pub samples: Vec<Sample>,
}

/// Series and, optionally, labelled anomaly windows (ground truth).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// The series, sorted by labels once [`Dataset::sort`] ran (or read from a file).
    pub series: Vec<SeriesData>,
    /// Ground truth: when and where anomalies are.
    pub truth: Vec<TruthWindow>,
}

impl Dataset {
    /// Reads a dataset file and its truth sidecar, if there is one.
    ///
    /// A file heal wrote is checked by its file hash before it is decoded and
    /// by its content hash after; a file without hashes (another tool) loads
    /// with a warning; a file with a content hash only (an earlier heal) is
    /// refused, pointing to `heal dataset rewrite` ([`Dataset::read_to_rewrite`]).
    pub fn read(path: impl AsRef<Path>) -> Result<Dataset> {
        Self::read_accepting(path.as_ref(), parquet::Accept::Unhashed)
    }

    /// [`Dataset::read`], also accepting a file with a content hash but no
    /// file hash (written by an earlier heal), checked by its content hash:
    /// for `heal dataset rewrite`, which writes it again with both.
    pub fn read_to_rewrite(path: impl AsRef<Path>) -> Result<Dataset> {
        Self::read_accepting(path.as_ref(), parquet::Accept::ContentOnly)
    }

    fn read_accepting(path: &Path, accept: parquet::Accept) -> Result<Dataset> {
        let series = parquet::read(path, accept)?;
        let sidecar = truth_path(path);
        let truth = if sidecar.exists() {
            truth::read(&sidecar)?
        } else {
            Vec::new()
        };
        let dataset = Dataset { series, truth };
        tracing::debug!(
            path = %path.display(),
            series = dataset.series.len(),
            samples = dataset.num_samples(),
            windows = dataset.truth.len(),
            "read dataset"
        );
        Ok(dataset)
    }

    /// Writes the dataset (sorted) and its truth sidecar atomically; see the [module docs](self).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut sorted = self.clone();
        sorted.sort();
        sorted.validate(path)?;

        let data = Staged::new(path, |f| parquet::write(f, &sorted.series, path))?;
        let sidecar_path = truth_path(path);
        let sidecar = if sorted.truth.is_empty() {
            None
        } else {
            let json = truth::to_json(&sorted.truth);
            Some(Staged::new(&sidecar_path, |f| {
                f.write_all(json.as_bytes())
                    .map_err(|e| Error::io("writing", &sidecar_path, e))
            })?)
        };
        match sidecar {
            Some(s) => s.commit()?,
            None => match fs::remove_file(&sidecar_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing stale", &sidecar_path, e)),
            },
        }
        data.commit()?;
        tracing::debug!(
            path = %path.display(),
            series = sorted.series.len(),
            samples = sorted.num_samples(),
            windows = sorted.truth.len(),
            "wrote dataset"
        );
        Ok(())
    }

    /// Sorts series by labels, each series' samples by time (stably, so duplicates keep their
    /// order) and the truth by series then start.
    pub fn sort(&mut self) {
        self.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in &mut self.series {
            if !s.samples.is_sorted_by_key(|x| x.ts_ms) {
                s.samples.sort_by_key(|x| x.ts_ms);
            }
        }
        self.truth.sort_by(|a, b| {
            (&a.series, a.start_ms, a.end_ms).cmp(&(&b.series, b.start_ms, b.end_ms))
        });
    }

    /// The series with these labels.
    pub fn get(&self, labels: &Labels) -> Option<&SeriesData> {
        self.series.iter().find(|s| &s.labels == labels)
    }

    /// Total number of samples.
    pub fn num_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// A summary: per-series counts, steps, gaps, NaNs and windows.
    pub fn info(&self) -> DatasetInfo {
        DatasetInfo::of(self)
    }

    /// Checks the format's rules on a sorted dataset.
    fn validate(&self, path: &Path) -> Result<()> {
        let invalid = |reason: String| Error::InvalidDataset {
            path: path.to_path_buf(),
            reason,
        };
        for pair in self.series.windows(2) {
            if pair[0].labels == pair[1].labels {
                return Err(invalid(format!("series {} appears twice", pair[0].labels)));
            }
        }
        for s in &self.series {
            let data_columns = [parquet::TIMESTAMP, parquet::VALUE];
            if let Some(k) = data_columns.iter().find(|k| s.labels.get(k).is_some()) {
                return Err(invalid(format!(
                    "series {}: label {k:?} clashes with a data column",
                    s.labels
                )));
            }
        }
        for w in &self.truth {
            if w.end_ms < w.start_ms {
                return Err(invalid(format!(
                    "truth window for {}: end is before start",
                    w.series
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_dataset() -> Dataset {
        let a = Labels::metric("cpu").with("host", "a");
        let b = Labels::metric("mem").with("zone", "eu\"1\"");
        let c = Labels::metric("cpu");
        Dataset {
            series: vec![
                SeriesData {
                    labels: a.clone(),
                    samples: vec![Sample::new(1_000, 1.0), Sample::new(61_000, -2.5)],
                },
                SeriesData {
                    labels: b,
                    samples: vec![Sample::new(0, 1e300), Sample::new(60_000, f64::INFINITY)],
                },
                SeriesData {
                    labels: c,
                    samples: vec![Sample::new(-5_000, 0.0)],
                },
            ],
            truth: vec![TruthWindow {
                series: a,
                start_ms: 1_000,
                end_ms: 61_000,
            }],
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let mut d = sample_dataset();
        d.write(&path).unwrap();
        assert_eq!(files_in(dir.path()), ["x.parquet", "x.truth.json"]);
        let back = Dataset::read(&path).unwrap();
        d.sort();
        assert_eq!(back, d);
        let names: Vec<_> = back.series.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(names, ["cpu", r#"cpu{host="a"}"#, r#"mem{zone="eu\"1\""}"#]);
    }

    #[test]
    fn synth_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.parquet");
        let d = crate::synth(1);
        d.write(&path).unwrap();
        assert_eq!(Dataset::read(&path).unwrap(), d);
    }

    #[test]
    fn empty_dataset_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.parquet");
        Dataset::default().write(&path).unwrap();
        assert_eq!(Dataset::read(&path).unwrap(), Dataset::default());
    }

    #[test]
    fn write_sorts_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let d = Dataset {
            series: vec![SeriesData {
                labels: Labels::metric("m"),
                samples: vec![
                    Sample::new(2, 2.0),
                    Sample::new(1, 1.0),
                    Sample::new(2, 3.0),
                ],
            }],
            truth: vec![],
        };
        d.write(&path).unwrap();
        let back = Dataset::read(&path).unwrap();
        assert_eq!(
            back.series[0].samples,
            [
                Sample::new(1, 1.0),
                Sample::new(2, 2.0),
                Sample::new(2, 3.0)
            ]
        );
    }

    #[test]
    fn nan_and_stale_marker_bits_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let stale = f64::from_bits(crate::STALE_MARKER_BITS);
        let d = Dataset {
            series: vec![SeriesData {
                labels: Labels::metric("m"),
                samples: vec![Sample::new(1, f64::NAN), Sample::new(2, stale)],
            }],
            truth: vec![],
        };
        d.write(&path).unwrap();
        let back = Dataset::read(&path).unwrap();
        let bits: Vec<_> = back.series[0]
            .samples
            .iter()
            .map(|s| s.value.to_bits())
            .collect();
        assert_eq!(bits, [f64::NAN.to_bits(), crate::STALE_MARKER_BITS]);
    }

    #[test]
    fn rewrite_without_truth_removes_stale_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let mut d = sample_dataset();
        d.write(&path).unwrap();
        d.truth.clear();
        d.write(&path).unwrap();
        assert_eq!(files_in(dir.path()), ["x.parquet"]);
        assert!(Dataset::read(&path).unwrap().truth.is_empty());
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        fs::write(&path, "old").unwrap();
        let mut d = sample_dataset();
        d.series[1].labels = Labels::metric("m").with("value", "1");
        assert_eq!(
            d.write(&path).unwrap_err().to_string(),
            format!(
                r#"writing {}: series m{{value="1"}}: label "value" clashes with a data column"#,
                path.display()
            )
        );
        d.series[1].labels = d.series[0].labels.clone();
        assert_eq!(
            d.write(&path).unwrap_err().to_string(),
            format!(
                r#"writing {}: series cpu{{host="a"}} appears twice"#,
                path.display()
            )
        );
        let mut d = sample_dataset();
        d.truth[0].end_ms = 0;
        assert_eq!(
            d.write(&path).unwrap_err().to_string(),
            format!(
                r#"writing {}: truth window for cpu{{host="a"}}: end is before start"#,
                path.display()
            )
        );
        assert_eq!(files_in(dir.path()), ["x.parquet"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    }

    #[test]
    fn write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/x.parquet");
        let e = sample_dataset().write(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "creating {}/no/such/.x.parquet.tmp-",
                dir.path().display()
            )),
            "{e}"
        );
        assert!(e.ends_with("No such file or directory (os error 2)"), "{e}");
    }
}
