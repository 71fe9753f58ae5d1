//! End to end through the public API, on the small fixtures in `tests/fixtures/`:
//! `nab_quirks.csv` has the quirks of real NAB files (a repeated timestamp, a row going back in
//! time, a NaN, a gap, no final newline), `long.csv` two series in long form.

use std::path::{Path, PathBuf};

use ingest::{
    import_long_csv, import_nab_csv, read_nab_csv, Admit, Dataset, DropReason, Labels, NabTruth,
    Sanitizer, SanitizerConfig,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn nab_reader_keeps_file_order_and_text() {
    let f = read_nab_csv(fixture("nab_quirks.csv")).unwrap();
    assert_eq!(f.len(), 10);
    let texts: Vec<&str> = f.rows().iter().map(|r| f.timestamp_text(r)).collect();
    assert_eq!(texts[3..5], ["2014-04-01 00:10:00", "2014-04-01 00:07:00"]);
    assert_eq!(f.value_text(&f.rows()[9]), "14.5");
    // Writing the rows back gives the file, final newline aside.
    let mut rebuilt = String::from("timestamp,value");
    for r in f.rows() {
        rebuilt.push('\n');
        rebuilt.push_str(f.row_text(r));
    }
    assert_eq!(rebuilt, f.text());
}

#[test]
fn sanitizer_on_nab_quirks() {
    let f = read_nab_csv(fixture("nab_quirks.csv")).unwrap();
    let mut s = Sanitizer::new(SanitizerConfig {
        learn_deltas: 3,
        ..SanitizerConfig::default()
    });
    let gaps: Vec<i64> = f
        .rows()
        .iter()
        .filter_map(|r| match s.admit(r.ts_ms, r.value) {
            Admit::Accept { gap_before_ms, .. } => gap_before_ms,
            Admit::Drop(_) => None,
        })
        .collect();
    let c = s.drop_counts();
    assert_eq!(
        [
            DropReason::Duplicate,
            DropReason::OutOfOrder,
            DropReason::Nan
        ]
        .map(|r| c.get(r)),
        [1, 1, 1]
    );
    // Step learned from the first 3 accepted deltas (5, 5 and 10 minutes, the NaN at 00:15
    // dropped): the 25-minute jump to 00:45 is then a gap.
    assert_eq!(s.step_ms(), Some(5 * 60_000));
    assert_eq!(gaps, [25 * 60_000]);
}

#[test]
fn nab_import_write_read_info() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quirks.parquet");
    let truth = NabTruth {
        windows_file: fixture("nab_windows.json"),
        key: None,
    };
    let d = import_nab_csv(
        fixture("nab_quirks.csv"),
        Labels::new().with("source", "nab"),
        Some(&truth),
    )
    .unwrap();
    assert_eq!(
        d.series[0].labels.to_string(),
        r#"nab_quirks{source="nab"}"#
    );
    assert_eq!(d.truth.len(), 1);
    d.write(&out).unwrap();

    let back = Dataset::read(&out).unwrap();
    assert_eq!(back.truth, d.truth);
    // NaN is stored as recorded, so compare bit patterns.
    let bits = |d: &Dataset| -> Vec<(i64, u64)> {
        d.series[0]
            .samples
            .iter()
            .map(|s| (s.ts_ms, s.value.to_bits()))
            .collect()
    };
    assert_eq!(bits(&back), bits(&d));

    let info = back.info();
    let s = &info.series[0];
    assert_eq!((s.samples, s.nan, s.windows), (10, 1, 1));
    assert_eq!(s.median_step_ms, Some(5 * 60_000));
    assert_eq!((s.gaps, s.gap_ms), (1, 20 * 60_000));
    let table = info.to_string();
    assert!(table.starts_with("series"), "{table}");
    assert!(table.contains(r#"nab_quirks{source="nab"}"#), "{table}");
}

#[test]
fn long_import_write_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("long.parquet");
    let d = import_long_csv(fixture("long.csv")).unwrap();
    let names: Vec<String> = d.series.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        [
            r#"http_error_ratio{service="checkout"}"#,
            r#"http_request_rate{instance="checkout-0",service="checkout"}"#,
        ]
    );
    d.write(&out).unwrap();
    assert!(!ingest::truth_path(&out).exists());
    assert_eq!(Dataset::read(&out).unwrap(), d);
}
