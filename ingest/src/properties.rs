//! Property tests of ingest's parsers of untrusted input: label selectors,
//! long-form CSV and NAB imports, Parquet datasets. Mutations of valid
//! inputs and garbage; each must give a value or an error, never a panic.
//! (Prometheus answers have theirs beside the client, which keeps its
//! decoder private.) See `stdx::fuzz` for the seed and replay.

use std::path::Path;

use stdx::fuzz::{check, garbage, mutated, Rng};

use crate::dataset::import_long_csv;
use crate::series::Labels;

fn bytes_case(rng: &mut Rng, base: &[u8], garbage_len: usize) -> Vec<u8> {
    if rng.one_in(10) {
        garbage(rng, garbage_len)
    } else {
        mutated(rng, base, 8)
    }
}

#[test]
fn label_selectors_never_panic() {
    let base =
        br#"http_requests_total{service="checkout",instance="a:1", "odd name"="x\"y\\z\n",}"#;
    check(
        "labels",
        10000,
        |rng| String::from_utf8_lossy(&bytes_case(rng, base, 128)).into_owned(),
        |text| {
            if let Ok(labels) = text.parse::<Labels>() {
                // What parses prints and parses back to the same labels.
                let printed = labels.to_string();
                assert_eq!(printed.parse::<Labels>().ok(), Some(labels), "{printed}");
            }
        },
    );
}

#[test]
fn nab_csv_never_panics() {
    let base = b"timestamp,value\n2014-04-01 00:00:00,20.5\n2014-04-01 00:05:00,21\n2014-04-01 00:10:00,nan\n";
    check(
        "nab_csv",
        5000,
        |rng| bytes_case(rng, base, 256),
        |bytes| {
            let _ = crate::nab::parse_nab_csv(Path::new("x.csv"), bytes.clone());
        },
    );
}

#[test]
fn long_csv_never_panics() {
    let base = b"timestamp,value,__name__,service\n2026-01-05T00:00:00Z,1.5,up,\"a,b\"\n2026-01-05T00:01:00Z,NaN,up,\"x \"\"y\"\"\"\n1767571320000,2,up,c\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.csv");
    check(
        "long_csv",
        1000,
        |rng| bytes_case(rng, base, 256),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            if let Err(e) = import_long_csv(&path) {
                let _ = e.to_string();
            }
        },
    );
}

/// This property found that Polars' decoder trusts sizes in a page header:
/// about one single-bit flip in 10,000 of this small file made it ask for
/// ~2^61 bytes, which aborts the process (an allocation failure is not a
/// panic; `catch_unwind` cannot stop it). Datasets now carry a hash of their
/// bytes, checked before Polars sees them; `HEAL_FUZZ_SEED=4
/// HEAL_FUZZ_CASES=2000`, which aborted, now passes.
#[test]
fn parquet_datasets_never_panic_and_corruption_is_never_silent() {
    // A small dataset heal wrote (with its hashes), then mutated.
    // Reading must return, and a mutated file must either fail or decode to
    // exactly the data that was written: the hash leaves no third way.
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("base.parquet");
    let series = vec![
        crate::dataset::SeriesData {
            labels: Labels::metric("m").with("service", "a"),
            samples: (0..200)
                .map(|i| crate::series::Sample::new(i * 60_000, (i % 7) as f64))
                .collect(),
        },
        crate::dataset::SeriesData {
            labels: Labels::metric("n"),
            samples: vec![crate::series::Sample::new(0, f64::NAN)],
        },
    ];
    let dataset = crate::dataset::Dataset {
        series: series.clone(),
        truth: vec![],
    };
    dataset.write(&original).unwrap();
    let base = std::fs::read(&original).unwrap();
    let written = crate::dataset::Dataset::read(&original).unwrap();
    let path = dir.path().join("x.parquet");
    check(
        "parquet",
        2000,
        |rng| {
            let mut bytes = base.clone();
            // Mostly single flips (the realistic corruption), sometimes more.
            if rng.one_in(4) {
                bytes = mutated(rng, &bytes, 4);
            } else {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            bytes
        },
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            match crate::dataset::Dataset::read(&path) {
                Ok(d) => assert!(
                    d.series.len() == written.series.len()
                        && d.series.iter().zip(&written.series).all(|(a, b)| {
                            a.labels == b.labels
                                && a.samples.len() == b.samples.len()
                                && a.samples.iter().zip(&b.samples).all(|(x, y)| {
                                    x.ts_ms == y.ts_ms && x.value.to_bits() == y.value.to_bits()
                                })
                        }),
                    "a corrupted file loaded with other data"
                ),
                Err(e) => {
                    let m = e.to_string();
                    assert!(m.starts_with(&format!("reading {}", path.display())), "{m}");
                    assert!(!m.contains("Error {"), "a debug dump: {m}");
                }
            }
        },
    );
}

#[test]
fn truth_and_nab_window_files_never_panic() {
    let truth = include_bytes!("../../datasets/synth-42.truth.json");
    let nab: &[u8] = br#"{"realKnownCause/nyc_taxi.csv": [["2014-10-30 15:30:00.000000", "2014-11-03 22:30:00.000000"]], "a/b.csv": []}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.json");
    check(
        "window_files",
        1500,
        |rng| {
            let nab_case = rng.one_in(2);
            let base: &[u8] = if nab_case { nab } else { truth };
            (nab_case, bytes_case(rng, base, 256))
        },
        |(nab_case, bytes)| {
            std::fs::write(&path, bytes).unwrap();
            if *nab_case {
                let _ = crate::nab::read_nab_windows(&path);
            } else {
                let _ = crate::dataset::truth_read(&path);
            }
        },
    );
}
