//! Log datasets: recorded log lines, to replay beside a series dataset (or
//! alone), in event time, through the runbooks' `logs:` signals.
//!
//! # File format
//!
//! A Parquet file, one row per line (a multi-line event is one line holding
//! its newlines), rows in time order:
//!
//! | column       | type               | meaning                                              |
//! |--------------|--------------------|------------------------------------------------------|
//! | `timestamp`  | `Datetime(ms)`     | event time, **UTC**: from the line when its source's |
//! |              |                    | format gives one, otherwise when it was read         |
//! | `line`       | `String`           | the line as read, without its line ending            |
//! | `log_source` | `String`           | the runbook log source that read it                  |
//! | `<label>`    | `String`, nullable | the source's labels (`service`, `instance`, ...)     |
//!
//! The file's key-value metadata holds, besides the two hashes every heal
//! dataset carries (see the series format), the recording's window:
//! `heal.log_start_ms` and `heal.log_end_ms`. A replay counts every slot of
//! that window, so that a quiet stretch at either end reads as zero lines
//! rather than as nothing at all. Without them (a recording of what the
//! sources already held, `--from-start`, or a file from another tool) the
//! window is the first line's time to the last's.
//!
//! Ground truth, when there is any, is the sidecar `<stem>.truth.json`, as
//! for series (`rec.logs.parquet` has `rec.logs.truth.json`), its windows
//! naming the series a `logs:` signal makes.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use stdx::Staged;

use super::parquet::{self as pq, Accept};
use super::truth::{self, truth_path, TruthWindow};
use crate::error::{Error, Result};
use crate::series::Labels;

const TIMESTAMP: &str = "timestamp";
const LINE: &str = "line";
const SOURCE: &str = "log_source";
const START_KEY: &str = "heal.log_start_ms";
const END_KEY: &str = "heal.log_end_ms";

/// Column names a label cannot take.
pub const RESERVED_COLUMNS: [&str; 3] = [TIMESTAMP, LINE, SOURCE];

/// Where lines came from: a log source and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogStream {
    /// The runbook's log source.
    pub source: String,
    /// Its labels.
    pub labels: Labels,
}

/// One recorded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Event time, ms since the epoch (UTC).
    pub ts_ms: i64,
    /// Index into [`LogDataset::streams`].
    pub stream: usize,
    /// The line.
    pub line: String,
}

/// Recorded lines, the window they were recorded over, and optional ground
/// truth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogDataset {
    /// Where the lines came from.
    pub streams: Vec<LogStream>,
    /// The lines, in time order once [`LogDataset::sort`] ran (or read from
    /// a file).
    pub lines: Vec<LogLine>,
    /// Start of the recording (ms), when known.
    pub start_ms: Option<i64>,
    /// End of the recording (ms), when known.
    pub end_ms: Option<i64>,
    /// Labelled windows over the series the log signals make.
    pub truth: Vec<TruthWindow>,
}

impl LogDataset {
    /// The index of `stream`, added if new.
    pub fn stream(&mut self, source: &str, labels: &Labels) -> usize {
        if let Some(i) = self
            .streams
            .iter()
            .position(|s| s.source == source && &s.labels == labels)
        {
            return i;
        }
        self.streams.push(LogStream {
            source: source.to_owned(),
            labels: labels.clone(),
        });
        self.streams.len() - 1
    }

    /// Sorts the lines by time, stably: lines of one instant keep the order
    /// they were read in.
    pub fn sort(&mut self) {
        if !self.lines.is_sorted_by_key(|l| l.ts_ms) {
            self.lines.sort_by_key(|l| l.ts_ms);
        }
    }

    /// The window a replay counts: the recording's, or the lines' own.
    pub fn window(&self) -> Option<(i64, i64)> {
        let first = self.lines.first().map(|l| l.ts_ms);
        let last = self.lines.last().map(|l| l.ts_ms);
        let start = match (self.start_ms, first) {
            (Some(s), Some(f)) => Some(s.min(f)),
            (s, f) => s.or(f),
        }?;
        let end = match (self.end_ms, last) {
            (Some(e), Some(l)) => Some(e.max(l)),
            (e, l) => e.or(l),
        }?;
        Some((start, end))
    }

    /// Lines per source.
    pub fn lines_per_source(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            *out.entry(self.streams[l.stream].source.as_str())
                .or_default() += 1;
        }
        out
    }

    /// Writes the dataset (its lines sorted by time) and its truth sidecar
    /// atomically, as [`super::Dataset::write`] does.
    ///
    /// # Errors
    ///
    /// A label named like a column, a stream index out of range, I/O.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut sorted = self.clone();
        sorted.sort();
        sorted.validate(path)?;
        let bytes = sorted.parquet_bytes(path)?;
        let data = Staged::new(path, |f| {
            std::io::Write::write_all(f, &bytes).map_err(|e| Error::io("writing", path, e))
        })?;
        let sidecar_path = truth_path(path);
        if !sorted.truth.is_empty() {
            let json = truth::to_json(&sorted.truth);
            Staged::new(&sidecar_path, |f| {
                std::io::Write::write_all(f, json.as_bytes())
                    .map_err(|e| Error::io("writing", &sidecar_path, e))
            })?
            .commit()?;
        } else {
            match std::fs::remove_file(&sidecar_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing stale", &sidecar_path, e)),
            }
        }
        data.commit()?;
        tracing::debug!(path = %path.display(), lines = sorted.lines.len(), "wrote log dataset");
        Ok(())
    }

    fn validate(&self, path: &Path) -> Result<()> {
        for s in &self.streams {
            if let Some((k, _)) = s.labels.iter().find(|(k, _)| RESERVED_COLUMNS.contains(k)) {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "log source {:?}: a label cannot be called {k:?} (a column of the file)",
                        s.source
                    ),
                ));
            }
        }
        if let Some(l) = self.lines.iter().find(|l| l.stream >= self.streams.len()) {
            return Err(Error::bad_file(
                path,
                format!(
                    "a line at {} names stream {} of {}",
                    l.ts_ms,
                    l.stream,
                    self.streams.len()
                ),
            ));
        }
        Ok(())
    }

    fn parquet_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let rows = self.lines.len();
        let names: std::collections::BTreeSet<&str> = self
            .streams
            .iter()
            .flat_map(|s| s.labels.iter().map(|(k, _)| k))
            .collect();
        let mut columns = vec![
            Int64Chunked::from_vec(
                TIMESTAMP.into(),
                self.lines.iter().map(|l| l.ts_ms).collect(),
            )
            .into_datetime(TimeUnit::Milliseconds, None)
            .into_column(),
            Column::new(
                LINE.into(),
                self.lines
                    .iter()
                    .map(|l| l.line.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                SOURCE.into(),
                self.lines
                    .iter()
                    .map(|l| self.streams[l.stream].source.as_str())
                    .collect::<Vec<_>>(),
            ),
        ];
        for name in names {
            let cells: Vec<Option<&str>> = self
                .lines
                .iter()
                .map(|l| self.streams[l.stream].labels.get(name))
                .collect();
            columns.push(Column::new(name.into(), cells));
        }
        let mut df = DataFrame::new(rows, columns).map_err(|source| Error::Parquet {
            action: "writing",
            path: path.to_path_buf(),
            source,
        })?;
        let mut extra = Vec::new();
        if let Some(s) = self.start_ms {
            extra.push((START_KEY.to_owned(), s.to_string()));
        }
        if let Some(e) = self.end_ms {
            extra.push((END_KEY.to_owned(), e.to_string()));
        }
        pq::hashed_bytes(&mut df, self.content_hash(), extra, path)
    }

    /// SHA-256 of what a replay sees: the window, each line's time, its
    /// stream (source and labels) and its text, in order.
    fn content_hash(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"heal-logs-v1\0");
        let field = |h: &mut sha2::Sha256, bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        for w in [self.start_ms, self.end_ms] {
            h.update(w.map_or([0xff; 9], |v| {
                let mut b = [0u8; 9];
                b[1..].copy_from_slice(&v.to_le_bytes());
                b
            }));
        }
        h.update((self.lines.len() as u64).to_le_bytes());
        for l in &self.lines {
            let s = &self.streams[l.stream];
            h.update(l.ts_ms.to_le_bytes());
            field(&mut h, s.source.as_bytes());
            h.update((s.labels.len() as u64).to_le_bytes());
            for (k, v) in s.labels.iter() {
                field(&mut h, k.as_bytes());
                field(&mut h, v.as_bytes());
            }
            field(&mut h, l.line.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a log dataset and its truth sidecar, checking the hashes as
    /// [`super::Dataset::read`] does.
    ///
    /// # Errors
    ///
    /// Not a log dataset (a missing column names which), corrupt, I/O.
    pub fn read(path: impl AsRef<Path>) -> Result<LogDataset> {
        let path = path.as_ref();
        let not_parquet = format!(
            "not a heal log dataset (not a Parquet file): `heal record --log-source NAME --runbooks DIR -o {}` makes one",
            path.display()
        );
        let decoded = pq::read_hashed(path, Accept::Unhashed, &not_parquet)?;
        let mut dataset = decode(path, &decoded.df)?;
        let number = |key: &str| -> Result<Option<i64>> {
            match decoded.metadata.iter().find(|(k, _)| k == key) {
                None => Ok(None),
                Some((_, v)) => v.parse().map(Some).map_err(|_| {
                    Error::bad_file(path, format!("metadata {key} is {v:?}, not a number"))
                }),
            }
        };
        dataset.start_ms = number(START_KEY)?;
        dataset.end_ms = number(END_KEY)?;
        match &decoded.content_hash {
            Some(expected) => pq::check_content_hash(path, expected, &dataset.content_hash())?,
            None => pq::warn_unhashed(path),
        }
        dataset.sort();
        let sidecar = truth_path(path);
        if sidecar.exists() {
            dataset.truth = truth::read(&sidecar)?;
        }
        tracing::debug!(path = %path.display(), lines = dataset.lines.len(), "read log dataset");
        Ok(dataset)
    }
}

/// The lines of a decoded table, in file order.
fn decode(path: &Path, df: &DataFrame) -> Result<LogDataset> {
    let bad = |reason: String| Error::bad_file(path, reason);
    let column = |name: &str| {
        df.column(name).map_err(|_| {
            let hint = if df.column("value").is_ok() {
                " (this is a series dataset: give it as DATASET, not as --logs)"
            } else {
                ""
            };
            bad(format!("missing column {name:?}{hint}"))
        })
    };
    let strings = |name: &str, col: &Column| -> Result<Vec<Option<String>>> {
        Ok(col
            .str()
            .map_err(|_| {
                bad(format!(
                    "column {name:?} has type {}, expected str",
                    col.dtype()
                ))
            })?
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect())
    };
    let (ts, per_ms) = pq::timestamps(path, column(TIMESTAMP)?)?;
    let lines = strings(LINE, column(LINE)?)?;
    let sources = strings(SOURCE, column(SOURCE)?)?;
    let mut labels: Vec<(&str, Vec<Option<String>>)> = Vec::new();
    for col in df.columns() {
        let name = col.name().as_str();
        if RESERVED_COLUMNS.contains(&name) {
            continue;
        }
        labels.push((name, strings(name, col)?));
    }
    let mut out = LogDataset::default();
    let mut current: Option<(usize, usize)> = None;
    for (row, (line, source)) in lines.into_iter().zip(sources).enumerate() {
        let null = |column: &str| bad(format!("row {}: column {column:?} is null", row + 1));
        let ts_ms = ts[row].ok_or_else(|| null(TIMESTAMP))?.div_euclid(per_ms);
        let line = line.ok_or_else(|| null(LINE))?;
        let source = source.ok_or_else(|| null(SOURCE))?;
        // Rows of one stream come in runs: the label set is built when the
        // cells change, not per row.
        let same = current.is_some_and(|(prev, stream)| {
            out.streams[stream].source == source
                && labels.iter().all(|(_, cells)| cells[prev] == cells[row])
        });
        let stream = match (same, current) {
            (true, Some((_, stream))) => stream,
            _ => {
                let set = Labels::from_pairs(
                    labels
                        .iter()
                        .filter_map(|(name, cells)| cells[row].as_deref().map(|v| (*name, v))),
                );
                out.stream(&source, &set)
            }
        };
        current = Some((row, stream));
        out.lines.push(LogLine {
            ts_ms,
            stream,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LogDataset {
        let mut d = LogDataset {
            start_ms: Some(0),
            end_ms: Some(120_000),
            ..LogDataset::default()
        };
        let api = d.stream("api", &Labels::from_pairs([("service", "api")]));
        let db = d.stream(
            "db",
            &Labels::from_pairs([("service", "db"), ("instance", "db-1")]),
        );
        for (ts, stream, line) in [
            (30_000, api, "GET /x 200"),
            (1_000, db, "checkpoint starting\n  at wal 0/1"),
            (30_000, db, "ERROR: \"quoted\" \u{1b}[2J"),
            (60_000, api, "GET /y 500"),
        ] {
            d.lines.push(LogLine {
                ts_ms: ts,
                stream,
                line: line.into(),
            });
        }
        d
    }

    #[test]
    fn round_trips_in_time_order_with_window_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.logs.parquet");
        let d = sample();
        d.write(&path).unwrap();
        let back = LogDataset::read(&path).unwrap();
        let mut want = d.clone();
        want.sort();
        let text = |d: &LogDataset| -> Vec<(i64, String, String)> {
            d.lines
                .iter()
                .map(|l| {
                    let s = &d.streams[l.stream];
                    (l.ts_ms, format!("{}{}", s.source, s.labels), l.line.clone())
                })
                .collect()
        };
        assert_eq!(text(&back), text(&want));
        // Lines of one instant keep their order.
        assert_eq!(back.lines[1].line, "GET /x 200");
        assert_eq!((back.start_ms, back.end_ms), (Some(0), Some(120_000)));
        assert_eq!(back.window(), Some((0, 120_000)));
        assert_eq!(back.lines_per_source()["db"], 2);
    }

    #[test]
    fn a_changed_byte_or_a_series_dataset_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.logs.parquet");
        sample().write(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(6).position(|w| w == b"GET /y").unwrap();
        bytes[at] = b'P';
        std::fs::write(&path, &bytes).unwrap();
        let err = LogDataset::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("file hash") || err.contains("corrupt"),
            "{err}"
        );

        let series = dir.path().join("s.parquet");
        crate::dataset::tests::sample_dataset()
            .write(&series)
            .unwrap();
        let err = LogDataset::read(&series).unwrap_err().to_string();
        assert!(err.contains("missing column \"line\""), "{err}");
        assert!(err.contains("series dataset"), "{err}");

        std::fs::write(dir.path().join("t.csv"), "a,b\n").unwrap();
        let err = LogDataset::read(dir.path().join("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a heal log dataset"), "{err}");
    }

    #[test]
    fn a_label_named_like_a_column_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LogDataset::default();
        let s = d.stream("api", &Labels::from_pairs([("line", "7")]));
        d.lines.push(LogLine {
            ts_ms: 0,
            stream: s,
            line: "x".into(),
        });
        let err = d
            .write(dir.path().join("x.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be called \"line\""), "{err}");
    }

    #[test]
    fn the_window_covers_lines_outside_the_recorded_one() {
        let mut d = sample();
        d.sort();
        d.start_ms = Some(5_000);
        d.end_ms = None;
        assert_eq!(d.window(), Some((1_000, 60_000)));
        assert_eq!(LogDataset::default().window(), None);
    }
}
