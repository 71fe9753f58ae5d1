//! Fast access to the Numenta Anomaly Benchmark (NAB) corpus, for scoring and benchmarking.
//!
//! A NAB file is `timestamp,value` with naive `YYYY-MM-DD HH:MM:SS` timestamps (UTC). NAB scores
//! a detector row by row in file order, so [`read_nab_csv`] keeps every row exactly as it is, in
//! file order: rows that repeat a timestamp or go back in time are kept (unlike a
//! [`crate::Dataset`], which is sorted), and the original text of each row stays available
//! ([`NabFile::timestamp_text`], [`NabFile::row_text`], [`NabFile::text`]) so that a scorer can
//! write results next to the untouched input.
//!
//! Speed: the whole file is read into one `String` and rows are spans into it, so there is no
//! allocation per row; timestamps are parsed by hand (see `time.rs`) and values with std's
//! `f64::from_str` (Eisel-Lemire). That runs well above a million rows per second in an optimised
//! build. The csv crate is not used here because NAB files never quote fields, and its per-record
//! machinery is the largest cost on 2-column files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::time::{parse_naive, parse_timestamp};

/// The header every NAB data file starts with.
pub const NAB_HEADER: &str = "timestamp,value";

/// One row of a NAB file; its text lives in the [`NabFile`] it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NabRow {
    /// The timestamp, ms since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
    /// 1-based line number in the file (the header is line 1).
    pub line: u32,
    start: u32,
    comma: u32,
    end: u32,
}

/// A NAB data file: its original text and its rows, in file order.
#[derive(Debug, Clone)]
pub struct NabFile {
    text: String,
    rows: Vec<NabRow>,
}

impl NabFile {
    /// The rows, in file order.
    pub fn rows(&self) -> &[NabRow] {
        &self.rows
    }

    /// Takes the rows, dropping the text.
    pub fn into_rows(self) -> Vec<NabRow> {
        self.rows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the file has a header only.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The whole file, byte for byte.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A row's timestamp exactly as written.
    pub fn timestamp_text(&self, row: &NabRow) -> &str {
        &self.text[row.start as usize..row.comma as usize]
    }

    /// A row's value exactly as written.
    pub fn value_text(&self, row: &NabRow) -> &str {
        &self.text[row.comma as usize + 1..row.end as usize]
    }

    /// A row's line exactly as written, without its line terminator.
    pub fn row_text(&self, row: &NabRow) -> &str {
        &self.text[row.start as usize..row.end as usize]
    }
}

/// Reads a NAB data file, keeping every row in file order.
///
/// Timestamps may also be RFC 3339 or integer epoch seconds/ms (slower path). Lines may end with
/// `\n` or `\r\n`, the last one may lack a terminator, and blank lines are skipped.
pub fn read_nab_csv(path: impl AsRef<Path>) -> Result<NabFile> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    parse_nab_csv(path, bytes)
}

/// Parses the content of a NAB data file; `path` is for error messages.
pub(crate) fn parse_nab_csv(path: &Path, bytes: Vec<u8>) -> Result<NabFile> {
    if u32::try_from(bytes.len()).is_err() {
        return Err(Error::bad_file(path, "file is larger than 4 GiB"));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        )
    })?;
    let b = text.as_bytes();
    if b.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    let (header, mut pos) = next_line(b, 0);
    let header = std::str::from_utf8(header).unwrap_or_default();
    let header = header.strip_prefix('\u{feff}').unwrap_or(header);
    if header != NAB_HEADER {
        return Err(Error::bad_file(
            path,
            format!("expected header {NAB_HEADER:?}, found {header:?}"),
        ));
    }
    // NAB files are 30-byte rows; reserving from the size avoids regrowing the vector.
    let mut rows = Vec::with_capacity(b.len() / 24);
    let mut line: u32 = 1;
    while pos < b.len() {
        line += 1;
        let start = pos;
        let (content, next) = next_line(b, pos);
        pos = next;
        if content.is_empty() {
            continue;
        }
        let end = start + content.len();
        let Some(comma) = content.iter().position(|&c| c == b',') else {
            return Err(Error::bad_row(
                path,
                line.into(),
                "value",
                "missing (no ',' in row)",
            ));
        };
        let ts_text = &text[start..start + comma];
        let value_text = &text[start + comma + 1..end];
        let ts_ms = parse_naive(ts_text.as_bytes())
            .or_else(|| parse_timestamp(ts_text))
            .ok_or_else(|| {
                Error::bad_row(
                    path,
                    line.into(),
                    "timestamp",
                    format!("cannot parse {ts_text:?} as a timestamp"),
                )
            })?;
        let value: f64 = value_text.parse().map_err(|_| {
            Error::bad_row(
                path,
                line.into(),
                "value",
                format!("cannot parse {value_text:?} as a number"),
            )
        })?;
        // In range: the whole file is under 4 GiB, checked above.
        rows.push(NabRow {
            ts_ms,
            value,
            line,
            start: start as u32,
            comma: (start + comma) as u32,
            end: end as u32,
        });
    }
    Ok(NabFile { text, rows })
}

/// The line starting at `pos` without its terminator (`\n` or `\r\n`), and where the next starts.
#[inline]
fn next_line(b: &[u8], pos: usize) -> (&[u8], usize) {
    let rest = &b[pos..];
    let (mut content, next) = match rest.iter().position(|&c| c == b'\n') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, b.len()),
    };
    if let [head @ .., b'\r'] = content {
        content = head;
    }
    (content, next)
}

/// Anomaly windows per NAB key (`"<category>/<file>.csv"`), as inclusive `(start_ms, end_ms)`.
pub type NabWindows = BTreeMap<String, Vec<(i64, i64)>>;

/// Reads NAB's `labels/combined_windows.json`.
pub fn read_nab_windows(path: impl AsRef<Path>) -> Result<NabWindows> {
    let path = path.as_ref();
    let text = fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let raw: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(path, format!("invalid windows file: {e}")))?;
    raw.into_iter()
        .map(|(key, windows)| {
            let parsed = windows
                .iter()
                .enumerate()
                .map(|(i, (start, end))| {
                    let ts = |s: &str| {
                        parse_timestamp(s).ok_or_else(|| {
                            Error::bad_file(
                                path,
                                format!(
                                    "window {} of {key:?}: cannot parse {s:?} as a timestamp",
                                    i + 1
                                ),
                            )
                        })
                    };
                    let (start_ms, end_ms) = (ts(start)?, ts(end)?);
                    if end_ms < start_ms {
                        return Err(Error::bad_file(
                            path,
                            format!("window {} of {key:?}: ends before it starts", i + 1),
                        ));
                    }
                    Ok((start_ms, end_ms))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((key, parsed))
        })
        .collect()
}

/// One data file of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NabEntry {
    /// NAB's key for the file, `"<category>/<name>.csv"`, as used in the label files.
    pub key: String,
    /// Where the file is.
    pub path: PathBuf,
}

/// A NAB corpus directory: `data/<category>/*.csv` and `labels/combined_windows.json`.
#[derive(Debug, Clone)]
pub struct NabCorpus {
    root: PathBuf,
    files: Vec<NabEntry>,
    windows: NabWindows,
}

impl NabCorpus {
    /// Lists the data files (sorted by key) and loads the anomaly windows.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let data = root.join("data");
        let mut files = Vec::new();
        for category in sorted_dir(&data)? {
            if !category.is_dir() {
                continue;
            }
            let cat_name = file_name(&category);
            for file in sorted_dir(&category)? {
                if file.extension().is_some_and(|e| e == "csv") && file.is_file() {
                    files.push(NabEntry {
                        key: format!("{cat_name}/{}", file_name(&file)),
                        path: file,
                    });
                }
            }
        }
        let windows = read_nab_windows(root.join("labels").join("combined_windows.json"))?;
        Ok(NabCorpus {
            root,
            files,
            windows,
        })
    }

    /// The corpus directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data files, sorted by key.
    pub fn files(&self) -> &[NabEntry] {
        &self.files
    }

    /// The windows of one file by key; empty when it has none or is not labelled.
    pub fn windows(&self, key: &str) -> &[(i64, i64)] {
        self.windows.get(key).map_or(&[], Vec::as_slice)
    }

    /// All windows, by key.
    pub fn all_windows(&self) -> &NabWindows {
        &self.windows
    }

    /// Reads one data file.
    pub fn read(&self, entry: &NabEntry) -> Result<NabFile> {
        read_nab_csv(&entry.path)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io("listing", dir, e))?;
    paths.sort();
    Ok(paths)
}

/// Where the shared NAB development subset is. `HEAL_NAB_DEV` (set by
/// `.ci/run` when the machine has the corpus) names it, and then it must be
/// there: a missing or incomplete corpus fails the test instead of skipping
/// it. Without the variable, the corpus beside the repository is used when
/// present, and the test skips (with a note) when it is not.
#[cfg(test)]
pub(crate) fn nab_dev_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HEAL_NAB_DEV") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("data").is_dir() && dir.join("labels/combined_windows.json").is_file(),
            "HEAL_NAB_DEV={} says the NAB corpus is there, and it is not (no data/ or labels/combined_windows.json)",
            dir.display()
        );
        return Some(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/nab-dev");
    if dir.join("data").is_dir() {
        Some(dir)
    } else {
        println!(
            "note: {} is absent and HEAL_NAB_DEV unset, skipping",
            dir.display()
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::format_rfc3339;

    fn parse(text: &str) -> Result<NabFile> {
        parse_nab_csv(Path::new("data/x.csv"), text.as_bytes().to_vec())
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn keeps_rows_and_text_in_file_order() {
        let text = "timestamp,value\r\n2014-07-01 00:30:00,1.5\r\n2014-07-01 00:00:00,10844\r\n\r\n2014-07-01 00:00:00,-2e3";
        let f = parse(text).unwrap();
        let ts: Vec<_> = f.rows().iter().map(|r| format_rfc3339(r.ts_ms)).collect();
        assert_eq!(
            ts,
            [
                "2014-07-01T00:30:00Z",
                "2014-07-01T00:00:00Z",
                "2014-07-01T00:00:00Z"
            ]
        );
        let values: Vec<_> = f.rows().iter().map(|r| r.value).collect();
        assert_eq!(values, [1.5, 10844.0, -2000.0]);
        let lines: Vec<_> = f.rows().iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 5]);
        let r = f.rows()[1];
        assert_eq!(f.timestamp_text(&r), "2014-07-01 00:00:00");
        assert_eq!(f.value_text(&r), "10844");
        assert_eq!(f.row_text(&r), "2014-07-01 00:00:00,10844");
        assert_eq!(f.text(), text);
    }

    #[test]
    fn header_only_is_no_rows() {
        assert!(parse("timestamp,value\n").unwrap().is_empty());
        assert!(parse("\u{feff}timestamp,value").unwrap().is_empty());
    }

    #[test]
    fn bad_input_messages() {
        assert_eq!(err(""), "reading data/x.csv: file is empty");
        assert_eq!(
            err("time,value\n"),
            r#"reading data/x.csv: expected header "timestamp,value", found "time,value""#
        );
        assert_eq!(
            err("timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:00:00\n"),
            r#"reading data/x.csv: row 3, column "value": missing (no ',' in row)"#
        );
        assert_eq!(
            err("timestamp,value\n2014-07-01 00:00:00,abc\n"),
            r#"reading data/x.csv: row 2, column "value": cannot parse "abc" as a number"#
        );
        assert_eq!(
            err("timestamp,value\n2014-07-01 00:00:00,\n"),
            r#"reading data/x.csv: row 2, column "value": cannot parse "" as a number"#
        );
        assert_eq!(
            err("timestamp,value\n2014-07-01 00:00:00,1,2\n"),
            r#"reading data/x.csv: row 2, column "value": cannot parse "1,2" as a number"#
        );
        assert_eq!(
            err("timestamp,value\n\n2014-02-30 00:00:00,1\n"),
            r#"reading data/x.csv: row 3, column "timestamp": cannot parse "2014-02-30 00:00:00" as a timestamp"#
        );
        assert_eq!(
            parse_nab_csv(Path::new("data/x.csv"), vec![b't', 0xff])
                .unwrap_err()
                .to_string(),
            "reading data/x.csv: not UTF-8 at byte 1"
        );
    }

    #[test]
    fn missing_file_names_it() {
        let e = read_nab_csv("/nonexistent/x.csv").unwrap_err().to_string();
        assert!(e.starts_with("reading /nonexistent/x.csv: "), "{e}");
    }

    #[test]
    fn windows_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.json");
        fs::write(
            &p,
            r#"{"a/x.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"]], "a/y.csv": []}"#,
        )
        .unwrap();
        let w = read_nab_windows(&p).unwrap();
        assert_eq!(w["a/y.csv"], []);
        let (s, e) = w["a/x.csv"][0];
        assert_eq!(
            (format_rfc3339(s), format_rfc3339(e)),
            (
                "2014-04-10T07:15:00Z".to_string(),
                "2014-04-11T16:45:00Z".to_string()
            )
        );

        fs::write(&p, r#"{"a/x.csv": [["2014-04-10 07:15:00", "soon"]]}"#).unwrap();
        assert_eq!(
            read_nab_windows(&p).unwrap_err().to_string(),
            format!(
                r#"reading {}: window 1 of "a/x.csv": cannot parse "soon" as a timestamp"#,
                p.display()
            )
        );
        fs::write(
            &p,
            r#"{"a/x.csv": [["2014-04-10 07:15:00", "2014-04-09 07:15:00"]]}"#,
        )
        .unwrap();
        assert_eq!(
            read_nab_windows(&p).unwrap_err().to_string(),
            format!(
                r#"reading {}: window 1 of "a/x.csv": ends before it starts"#,
                p.display()
            )
        );
        fs::write(&p, r#"{"a/x.csv": [["2014-04-10 07:15:00"]]}"#).unwrap();
        let e = read_nab_windows(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("reading {}: invalid windows file: ", p.display())),
            "{e}"
        );
    }

    #[test]
    fn corpus_lists_sorted_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "data/b/z.csv",
            "data/b/a.csv",
            "data/a/m.csv",
            "data/a/notes.txt",
        ] {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "timestamp,value\n2014-07-01 00:00:00,1\n").unwrap();
        }
        fs::create_dir_all(dir.path().join("labels")).unwrap();
        fs::write(
            dir.path().join("labels/combined_windows.json"),
            r#"{"b/a.csv": [["2014-07-01 00:00:00", "2014-07-01 01:00:00"]]}"#,
        )
        .unwrap();
        let c = NabCorpus::open(dir.path()).unwrap();
        let keys: Vec<_> = c.files().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a/m.csv", "b/a.csv", "b/z.csv"]);
        assert_eq!(c.windows("b/a.csv").len(), 1);
        assert!(c.windows("a/m.csv").is_empty());
        assert_eq!(c.read(&c.files()[0]).unwrap().len(), 1);
    }

    #[test]
    fn reads_the_nab_dev_subset() {
        let Some(dir) = nab_dev_dir() else { return };
        let c = NabCorpus::open(&dir).unwrap();
        assert_eq!(c.files().len(), 24);
        let mut total = 0;
        for entry in c.files() {
            let f = c.read(entry).unwrap();
            assert!(!f.is_empty(), "{}", entry.key);
            // The text is kept: rows rebuild the file exactly, apart from line terminators.
            let rebuilt: Vec<&str> = f.rows().iter().map(|r| f.row_text(r)).collect();
            let original: Vec<&str> = f.text().lines().skip(1).filter(|l| !l.is_empty()).collect();
            assert_eq!(rebuilt, original, "{}", entry.key);
            total += f.len();
            assert!(c.all_windows().contains_key(&entry.key), "{}", entry.key);
        }
        assert!(total > 100_000, "{total}");
        let taxi = c.windows("realKnownCause/nyc_taxi.csv");
        assert_eq!(taxi.len(), 5);
    }
}
