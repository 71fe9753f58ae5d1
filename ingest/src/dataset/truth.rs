//! Ground truth: labelled anomaly windows, stored in a sidecar JSON file.
//!
//! ```json
//! {"windows": [{"series": "latency{service=\"checkout\"}",
//!               "start": "2026-01-06T14:00:00Z", "end": "2026-01-06T20:10:00Z"}]}
//! ```
//!
//! `series` is the [`Labels`] text form; `start` and `end` are RFC 3339 (naive
//! `YYYY-MM-DD HH:MM:SS` is read as UTC too) and both ends are inclusive, like NAB's windows.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::series::Labels;
use crate::time::{format_rfc3339, parse_timestamp};

/// A span of time during which a series is labelled anomalous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthWindow {
    /// The anomalous series.
    pub series: Labels,
    /// Start, ms since the epoch (UTC), inclusive.
    pub start_ms: i64,
    /// End, ms since the epoch (UTC), inclusive.
    pub end_ms: i64,
}

impl TruthWindow {
    /// True when `ts_ms` falls inside the window.
    pub fn contains(&self, ts_ms: i64) -> bool {
        (self.start_ms..=self.end_ms).contains(&ts_ms)
    }
}

/// The sidecar of a dataset file: `x.parquet` → `x.truth.json` (`x` → `x.truth.json`).
pub fn truth_path(dataset: &Path) -> PathBuf {
    dataset.with_extension("truth.json")
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TruthFile {
    windows: Vec<TruthEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TruthEntry {
    series: String,
    start: String,
    end: String,
}

/// Reads a sidecar file.
pub(crate) fn read(path: &Path) -> Result<Vec<TruthWindow>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<TruthWindow>> {
    let file: TruthFile = serde_json::from_str(text)
        .map_err(|e| Error::bad_file(path, format!("invalid truth file: {e}")))?;
    file.windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let bad = |field: &str, reason: String| {
                Error::bad_file(path, format!("window {}, field {field:?}: {reason}", i + 1))
            };
            let series: Labels = w
                .series
                .parse()
                .map_err(|e: Error| bad("series", e.to_string()))?;
            let ts = |field: &str, s: &str| {
                parse_timestamp(s)
                    .ok_or_else(|| bad(field, format!("cannot parse {s:?} as a timestamp")))
            };
            let (start_ms, end_ms) = (ts("start", &w.start)?, ts("end", &w.end)?);
            if end_ms < start_ms {
                return Err(bad("end", "is before start".to_string()));
            }
            Ok(TruthWindow {
                series,
                start_ms,
                end_ms,
            })
        })
        .collect()
}

/// The sidecar's content, pretty-printed so that diffs of truth files are readable.
pub(crate) fn to_json(windows: &[TruthWindow]) -> String {
    let file = TruthFile {
        windows: windows
            .iter()
            .map(|w| TruthEntry {
                series: w.series.to_string(),
                start: format_rfc3339(w.start_ms),
                end: format_rfc3339(w.end_ms),
            })
            .collect(),
    };
    // Serializing plain strings cannot fail.
    let mut json = serde_json::to_string_pretty(&file).unwrap_or_default();
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("d/x.truth.json"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn sidecar_path() {
        assert_eq!(
            truth_path(Path::new("d/x.parquet")),
            Path::new("d/x.truth.json")
        );
        assert_eq!(truth_path(Path::new("x")), Path::new("x.truth.json"));
    }

    #[test]
    fn json_round_trip() {
        let w = vec![TruthWindow {
            series: r#"m{a="b"}"#.parse().unwrap(),
            start_ms: 1_767_571_200_000,
            end_ms: 1_767_571_200_500,
        }];
        let json = to_json(&w);
        assert!(json.contains(r#""series": "m{a=\"b\"}""#), "{json}");
        assert!(
            json.contains(r#""start": "2026-01-05T00:00:00Z""#),
            "{json}"
        );
        assert!(
            json.contains(r#""end": "2026-01-05T00:00:00.500Z""#),
            "{json}"
        );
        assert_eq!(parse(Path::new("t"), &json).unwrap(), w);
        assert!(w[0].contains(1_767_571_200_500) && !w[0].contains(1_767_571_200_501));
    }

    #[test]
    fn bad_sidecars() {
        assert_eq!(
            err(
                r#"{"windows":[{"series":"m{","start":"2026-01-05T00:00:00Z","end":"2026-01-05T00:00:00Z"}]}"#
            ),
            r#"reading d/x.truth.json: window 1, field "series": parsing labels "m{": expected a label name at offset 2, found end of input"#
        );
        assert_eq!(
            err(
                r#"{"windows":[{"series":"m","start":"2026-01-05T00:00:00Z","end":"2026-01-05T00:00:00Z"},{"series":"m","start":"noon","end":"2026-01-05T00:00:00Z"}]}"#
            ),
            r#"reading d/x.truth.json: window 2, field "start": cannot parse "noon" as a timestamp"#
        );
        assert_eq!(
            err(
                r#"{"windows":[{"series":"m","start":"2026-01-05T00:00:01Z","end":"2026-01-05T00:00:00Z"}]}"#
            ),
            r#"reading d/x.truth.json: window 1, field "end": is before start"#
        );
        assert_eq!(
            err(r#"{"windows":[{"series":"m","start":"2026-01-05T00:00:01Z"}]}"#),
            "reading d/x.truth.json: invalid truth file: missing field `end` at line 1 column 57"
        );
        assert_eq!(
            err(r#"{"window":[]}"#),
            "reading d/x.truth.json: invalid truth file: unknown field `window`, expected `windows` at line 1 column 9"
        );
    }
}
