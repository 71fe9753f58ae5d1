//! Importing CSV files into datasets.
//!
//! Two layouts:
//!
//! - **NAB** ([`import_nab_csv`]): one series per file, header `timestamp,value`, timestamps
//!   `YYYY-MM-DD HH:MM:SS` taken as UTC (RFC 3339 and integer epoch seconds or milliseconds are
//!   accepted too). Ground truth comes from NAB's `labels/combined_windows.json`.
//! - **Long** ([`import_long_csv`]): any number of series, one sample per row; the header has
//!   `timestamp`, `value`, and every other column is a label. The metric name is the column
//!   `__name__`, as in the dataset file itself; `name` is deliberately an ordinary label (so a
//!   label called `name`, common in Kubernetes, stays representable). An empty cell means the row's
//!   series does not have that label.
//!
//! Samples are stored as recorded (NaN included), sorted by time; see the
//! [dataset docs](super). Errors name the file, the row as its 1-based line number, and the
//! column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Dataset, SeriesData, TruthWindow};
use crate::error::{Error, Result};
use crate::nab::{read_nab_csv, read_nab_windows};
use crate::series::{Labels, Sample, METRIC_NAME_LABEL};
use crate::time::parse_timestamp;

/// Where the ground truth of an imported NAB file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NabTruth {
    /// NAB's `labels/combined_windows.json`.
    pub windows_file: PathBuf,
    /// The file's key in it; [`nab_key`] of the data file when `None`.
    pub key: Option<String>,
}

/// NAB's key for a data file: `"<parent directory>/<file name>"`, e.g.
/// `"realKnownCause/nyc_taxi.csv"` for `.../data/realKnownCause/nyc_taxi.csv`.
pub fn nab_key(path: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!("{}/{}", name(path.parent()), name(Some(path)))
}

/// Imports one NAB data file as a one-series dataset.
///
/// The series gets `labels`, plus `__name__` = the file stem when `labels` has no name. With
/// `truth`, each of the file's NAB windows becomes a [`TruthWindow`] over that series.
pub fn import_nab_csv(
    path: impl AsRef<Path>,
    labels: Labels,
    truth: Option<&NabTruth>,
) -> Result<Dataset> {
    let path = path.as_ref();
    let file = read_nab_csv(path)?;
    if file.is_empty() {
        return Err(Error::bad_file(path, "no data rows"));
    }
    let labels = match labels.name() {
        Some(_) => labels,
        None => labels.with(
            METRIC_NAME_LABEL,
            path.file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
        ),
    };
    let mut samples: Vec<Sample> = file
        .rows()
        .iter()
        .map(|r| Sample::new(r.ts_ms, r.value))
        .collect();
    // Stable, so repeated timestamps keep their file order.
    samples.sort_by_key(|s| s.ts_ms);

    let truth = match truth {
        None => Vec::new(),
        Some(t) => {
            let key = t.key.clone().unwrap_or_else(|| nab_key(path));
            let mut all = read_nab_windows(&t.windows_file)?;
            let windows = all.remove(&key).ok_or_else(|| {
                Error::bad_file(&t.windows_file, format!("no entry for key {key:?}"))
            })?;
            windows
                .into_iter()
                .map(|(start_ms, end_ms)| TruthWindow {
                    series: labels.clone(),
                    start_ms,
                    end_ms,
                })
                .collect()
        }
    };
    Ok(Dataset {
        series: vec![SeriesData { labels, samples }],
        truth,
    })
}

/// Imports a long-form CSV file: `timestamp`, `value`, and one column per label.
pub fn import_long_csv(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(Error::bad_file(path, "file is empty"));
    }
    let mut seen = BTreeMap::new();
    for (i, name) in header.iter().enumerate() {
        if seen.insert(name, i).is_some() {
            return Err(Error::bad_file(path, format!("duplicate column {name:?}")));
        }
    }
    let find = |name: &str| {
        seen.get(name)
            .copied()
            .ok_or_else(|| Error::bad_file(path, format!("missing column {name:?}")))
    };
    let (ts_i, value_i) = (find("timestamp")?, find("value")?);
    let label_cols: Vec<(usize, &str)> = header
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != ts_i && i != value_i)
        .collect();

    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut record = csv::StringRecord::new();
    // The previous row's label cells and set: consecutive rows of one series share the set.
    let mut prev: Option<(Vec<String>, Labels)> = None;
    while reader.read_record(&mut record).map_err(|e| {
        // The csv crate reads an unclosed quote to the end of the file and
        // then reports a short record: say what is really wrong.
        unterminated_quote(path).unwrap_or_else(|| csv_error(path, e))
    })? {
        let row = record.position().map_or(0, |p| p.line());
        let ts_text = &record[ts_i];
        let ts_ms = parse_timestamp(ts_text).ok_or_else(|| {
            Error::bad_row(
                path,
                row,
                "timestamp",
                format!("cannot parse {ts_text:?} as a timestamp"),
            )
        })?;
        let value_text = &record[value_i];
        let value: f64 = value_text.parse().map_err(|_| {
            Error::bad_row(
                path,
                row,
                "value",
                format!("cannot parse {value_text:?} as a number"),
            )
        })?;
        let same = prev.as_ref().is_some_and(|(cells, _)| {
            label_cols
                .iter()
                .zip(cells)
                .all(|(&(i, _), c)| &record[i] == c)
        });
        if !same {
            let cells = label_cols
                .iter()
                .map(|&(i, _)| record[i].to_string())
                .collect();
            let labels = Labels::from_pairs(label_cols.iter().map(|&(i, name)| (name, &record[i])));
            prev = Some((cells, labels));
        }
        if let Some((_, labels)) = &prev {
            series
                .entry(labels.clone())
                .or_default()
                .push(Sample::new(ts_ms, value));
        }
    }
    // A quote left open in the last field swallows the rest of the file
        // without a short record: checked at the end as well.
    if let Some(e) = unterminated_quote(path) {
        return Err(e);
    }
    if series.is_empty() {
        return Err(Error::bad_file(path, "no data rows"));
    }
    let mut dataset = Dataset {
        series: series
            .into_iter()
            .map(|(labels, samples)| SeriesData { labels, samples })
            .collect(),
        truth: Vec::new(),
    };
    dataset.sort();
    Ok(dataset)
}

/// The error for a quoted field that is never closed, if the file has one:
/// `row 3: unterminated quote (the field opened with " on line 3 never
/// closes)`. Reads the file again (streaming), following the RFC 4180 rules
/// the csv crate applies: a quote opens a field only at its start, and `""`
/// inside a quoted field is a quote.
fn unterminated_quote(path: &Path) -> Option<Error> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut line = 1usize;
    let mut opened_at = 0usize;
    let (mut in_quotes, mut at_field_start, mut quote_pending) = (false, true, false);
    for byte in std::io::BufReader::new(file).bytes() {
        let b = byte.ok()?;
        if in_quotes {
            if quote_pending {
                quote_pending = false;
                if b != b'"' {
                    // The quote closed the field.
                    in_quotes = false;
                }
                // else: `""`, an escaped quote.
                if in_quotes {
                    continue;
                }
            } else {
                if b == b'"' {
                    quote_pending = true;
                }
                if b == b'\n' {
                    line += 1;
                }
                continue;
            }
        }
        match b {
            b'"' if at_field_start => {
                in_quotes = true;
                opened_at = line;
                at_field_start = false;
            }
            b',' => at_field_start = true,
            b'\n' => {
                line += 1;
                at_field_start = true;
            }
            b'\r' => {}
            _ => at_field_start = false,
        }
    }
    (in_quotes && !quote_pending).then(|| {
        Error::bad_file(
            path,
            format!(
                "row {opened_at}: unterminated quote (the field opened with \" on line {opened_at} never closes)"
            ),
        )
    })
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let message = e.to_string();
    let line = |pos: Option<csv::Position>| pos.map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io("reading", path, io),
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => Error::bad_file(
            path,
            format!(
                "row {}: expected {expected_len} fields, found {len}",
                line(pos)
            ),
        ),
        csv::ErrorKind::Utf8 { pos, err } => Error::bad_file(
            path,
            format!("row {}: field {} is not UTF-8", line(pos), err.field() + 1),
        ),
        _ => Error::bad_file(path, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::format_rfc3339;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn nab_key_of_path() {
        assert_eq!(
            nab_key(Path::new("/x/data/realKnownCause/nyc_taxi.csv")),
            "realKnownCause/nyc_taxi.csv"
        );
    }

    #[test]
    fn imports_nab_with_windows() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "data/cat/exchange-2_cpc.csv",
            "timestamp,value\n2014-07-01 00:05:00,2\n2014-07-01 00:00:00,1\n2014-07-01T00:10:00Z,nan",
        );
        let w = write(
            dir.path(),
            "labels/combined_windows.json",
            r#"{"cat/exchange-2_cpc.csv": [["2014-07-01 00:00:00.000000", "2014-07-01 00:05:00.000000"]]}"#,
        );
        let truth = NabTruth {
            windows_file: w.clone(),
            key: None,
        };
        let d = import_nab_csv(&p, Labels::new().with("source", "nab"), Some(&truth)).unwrap();
        let s = &d.series[0];
        assert_eq!(
            s.labels.to_string(),
            r#"{__name__="exchange-2_cpc",source="nab"}"#
        );
        let ts: Vec<_> = s.samples.iter().map(|x| format_rfc3339(x.ts_ms)).collect();
        assert_eq!(
            ts,
            [
                "2014-07-01T00:00:00Z",
                "2014-07-01T00:05:00Z",
                "2014-07-01T00:10:00Z"
            ]
        );
        assert!(s.samples[2].value.is_nan());
        assert_eq!(d.truth.len(), 1);
        assert_eq!(d.truth[0].series, s.labels);
        assert_eq!(format_rfc3339(d.truth[0].end_ms), "2014-07-01T00:05:00Z");

        let named = import_nab_csv(&p, Labels::metric("cpc"), None).unwrap();
        assert_eq!(named.series[0].labels, Labels::metric("cpc"));
        assert!(named.truth.is_empty());

        let wrong_key = NabTruth {
            windows_file: w.clone(),
            key: Some("cat/other.csv".into()),
        };
        assert_eq!(
            import_nab_csv(&p, Labels::new(), Some(&wrong_key))
                .unwrap_err()
                .to_string(),
            format!(
                r#"reading {}: no entry for key "cat/other.csv""#,
                w.display()
            )
        );
    }

    #[test]
    fn nab_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| {
            let p = write(dir.path(), "x.csv", text);
            let e = import_nab_csv(&p, Labels::new(), None)
                .unwrap_err()
                .to_string();
            e.replace(&p.display().to_string(), "x.csv")
        };
        assert_eq!(err(""), "reading x.csv: file is empty");
        assert_eq!(err("timestamp,value\n"), "reading x.csv: no data rows");
        assert_eq!(
            err("timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:00:00,1O\n"),
            r#"reading x.csv: row 3, column "value": cannot parse "1O" as a number"#
        );
        assert_eq!(
            err("timestamp,value\n2014-07-01,1\n"),
            r#"reading x.csv: row 2, column "timestamp": cannot parse "2014-07-01" as a timestamp"#
        );
    }

    #[test]
    fn imports_long_csv() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "x.csv",
            "__name__,timestamp,host,value,name\n\
             cpu,2026-01-05T00:01:00Z,a,1,\n\
             cpu,2026-01-05T00:00:00Z,a,0.5,\n\
             cpu,2026-01-05 00:00:00,,3,x\n\
             mem,1767571200,b,4,\n",
        );
        let d = import_long_csv(&p).unwrap();
        let names: Vec<_> = d.series.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            names,
            [r#"cpu{host="a"}"#, r#"cpu{name="x"}"#, r#"mem{host="b"}"#]
        );
        let s = &d.series[0].samples;
        assert_eq!(s[0].value, 0.5);
        assert_eq!(s[1].ts_ms - s[0].ts_ms, 60_000);
        assert_eq!(d.series[2].samples[0].ts_ms, 1_767_571_200_000);
        assert_eq!(d.num_samples(), 4);
    }

    #[test]
    fn long_csv_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| {
            let p = write(dir.path(), "x.csv", text);
            let e = import_long_csv(&p).unwrap_err().to_string();
            e.replace(&p.display().to_string(), "x.csv")
        };
        assert_eq!(err(""), "reading x.csv: file is empty");
        assert_eq!(err("timestamp,value\n"), "reading x.csv: no data rows");
        assert_eq!(
            err("time,value\n"),
            r#"reading x.csv: missing column "timestamp""#
        );
        assert_eq!(
            err("timestamp,val\n"),
            r#"reading x.csv: missing column "value""#
        );
        assert_eq!(
            err("timestamp,value,a,a\n"),
            r#"reading x.csv: duplicate column "a""#
        );
        assert_eq!(
            err("timestamp,value,__name__\n2026-01-05T00:00:00Z,1,m\n2026-01-05T00:01:00Z,abc,m\n"),
            r#"reading x.csv: row 3, column "value": cannot parse "abc" as a number"#
        );
        assert_eq!(
            err("__name__,timestamp,value\nm,2026-01-05 25:00:00,1\n"),
            r#"reading x.csv: row 2, column "timestamp": cannot parse "2026-01-05 25:00:00" as a timestamp"#
        );
        assert_eq!(
            err("timestamp,value,__name__\n2026-01-05T00:00:00Z,1\n"),
            "reading x.csv: row 2: expected 3 fields, found 2"
        );
        // Issue 10, 9: an unclosed quote said "expected 5 fields, found 4".
        assert_eq!(
            err("timestamp,value,__name__,a,b\n2026-01-05T00:00:00Z,1,m,\"x,y\n2026-01-05T00:01:00Z,1,m,x,y\n"),
            "reading x.csv: row 2: unterminated quote (the field opened with \" on line 2 never closes)"
        );
        // In the last field it swallows the rest of the file without a short record.
        assert_eq!(
            err("timestamp,value,__name__\n2026-01-05T00:00:00Z,1,\"m\n2026-01-05T00:01:00Z,1,m\n"),
            "reading x.csv: row 2: unterminated quote (the field opened with \" on line 2 never closes)"
        );
        // Quotes that close, escaped quotes and a quote inside an unquoted field are fine.
        assert!(import_long_csv(write(
            dir.path(),
            "ok.csv",
            "timestamp,value,__name__,a\n2026-01-05T00:00:00Z,1,m,\"x \"\"q\"\", y\"\n2026-01-05T00:01:00Z,1,m,a\"b\n"
        ))
        .is_ok());
        assert_eq!(
            import_long_csv("/nonexistent/x.csv")
                .unwrap_err()
                .to_string(),
            "reading /nonexistent/x.csv: No such file or directory (os error 2)"
        );
    }
}
