//! NAB-style scoring of one file (`heal score`).
//!
//! The output is what the detector reports row by row at its own
//! threshold: below the threshold the row's score, the score of a row that
//! opens an excursion, 0 for the rest of the excursion (it fires once).
//! With the configuration and threshold `heal bench nab` reports (a
//! `--params` file), the rows at or above the threshold are exactly the
//! detections that bench scored, and its `--results` files hold the same
//! output.

use std::path::Path;

use detect::{Detector, DetectorConfig};
use ingest::{Admit, DropCounts, NabRow, Sanitizer};

use crate::{Error, Result};

/// Scores rows online, in file order, with one detector of `cfg`'s kind
/// and settings. Rows the sample
/// policy drops (NaN, +-Inf, duplicate or out-of-order timestamps) score 0
/// and do not reach the detector.
pub fn score_rows(rows: &[NabRow], cfg: &DetectorConfig) -> (Vec<f64>, DropCounts) {
    let mut sanitizer = Sanitizer::default();
    let mut detector = Detector::new(cfg.clone());
    let scores = rows
        .iter()
        .map(|r| match sanitizer.admit(r.ts_ms, r.value) {
            Admit::Accept { sample, .. } => detector.update(sample.ts_ms, sample.value).score,
            Admit::Drop(_) => 0.0,
        })
        .collect();
    (scores, sanitizer.drop_counts())
}

/// Scores a NAB-style CSV (`timestamp,value`) online with the detector
/// `cfg` describes: the CSV with an `anomaly_score` column added, and what
/// the sample policy dropped.
///
/// # Errors
///
/// A file that cannot be read or parsed (named, with its row), a usage
/// error.
pub fn score_csv(input: &Path, cfg: &DetectorConfig) -> Result<(String, DropCounts)> {
    let file = ingest::read_nab_csv(input).map_err(|e| Error::Usage(e.to_string()))?;
    let (scores, drops) = score_rows(file.rows(), cfg);
    let mut out = String::with_capacity(file.text().len() + file.len() * 12);
    out.push_str("timestamp,value,anomaly_score\n");
    for (row, s) in file.rows().iter().zip(&scores) {
        out.push_str(file.row_text(row));
        out.push(',');
        // Scores are in [0, 1]; six decimals are finer than any threshold
        // anyone sets and keep the file small and its diff stable.
        push_fixed6(&mut out, *s);
        out.push('\n');
    }
    Ok((out, drops))
}

/// `nan: 2, out_of_order: 1` for the reasons that occurred.
pub fn describe_drops(d: &DropCounts) -> String {
    ingest::DropReason::ALL
        .iter()
        .filter(|&&r| d.get(r) > 0)
        .map(|&r| format!("{}: {}", r.as_str(), d.get(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends `x` (in [0, 1]) with six decimals, faster than `format!`.
fn push_fixed6(out: &mut String, x: f64) {
    let micro = (x.clamp(0.0, 1.0) * 1e6).round() as u32;
    let (int, frac) = (micro / 1_000_000, micro % 1_000_000);
    out.push(char::from(b'0' + int as u8));
    out.push('.');
    let digits = [
        frac / 100_000,
        frac / 10_000 % 10,
        frac / 1_000 % 10,
        frac / 100 % 10,
        frac / 10 % 10,
        frac % 10,
    ];
    for d in digits {
        out.push(char::from(b'0' + d as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::push_fixed6;

    #[test]
    fn fixed6_formats_unit_interval() {
        for (x, want) in [
            (0.0, "0.000000"),
            (1.0, "1.000000"),
            (0.1234567, "0.123457"),
            (0.5, "0.500000"),
        ] {
            let mut s = String::new();
            push_fixed6(&mut s, x);
            assert_eq!(s, want);
        }
    }
}
