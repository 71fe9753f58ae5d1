//! Post-incident reports of the example runbooks on scripted anomalies,
//! checked against golden files. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p remediate --test report` and review the diff.

use std::collections::BTreeMap;
use std::path::Path;

use detect::{Excursion, Scored};
use remediate::engine::{Engine, EngineOptions, Incident, Observation};
use remediate::{report, RunbookSet};

const MIN: i64 = 60_000;
/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;

/// Compares `actual` with the golden file at `path` (relative to this
/// crate), or rewrites the file when `UPDATE_GOLDEN=1`.
fn check(actual: &str, path: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output; rerun with UPDATE_GOLDEN=1 and review the diff.\n--- actual ---\n{actual}",
        path.display()
    );
}

fn examples() -> RunbookSet {
    RunbookSet::load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn labels(name: &str, service: &str, instance: &str) -> BTreeMap<String, String> {
    [
        ("__name__", name),
        ("service", service),
        ("instance", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// One sample a minute for `minutes`; `at(m)` gives value and excursion
/// (onset minute, peak score), always above the baseline.
fn replay(
    engine: &mut Engine,
    signal: &str,
    labels: &BTreeMap<String, String>,
    minutes: i64,
    at: impl Fn(i64) -> (f64, Option<(i64, f64)>),
) {
    for m in 0..minutes {
        let (value, ex) = at(m);
        let excursion = ex.map(|(onset, peak_score)| Excursion {
            onset_ms: T0 + onset * MIN,
            above: true,
            peak_score,
            first: onset == m,
            in_band: false,
        });
        let scored = Scored {
            score: excursion.map_or(0.3, |e| e.peak_score),
            excursion,
        };
        engine.observe(&Observation {
            signal,
            labels,
            ts_ms: T0 + m * MIN,
            value,
            scored,
        });
    }
}

/// Checkout p99 latency shifts up at minute 10 and stays up: restart, then
/// rollback, then a page, and the incident is still open when data ends.
fn checkout_at(m: i64) -> (f64, Option<(i64, f64)>) {
    if m < 10 {
        (0.25, None)
    } else {
        (1.4, Some((10, if m < 20 { 0.99995 } else { 0.9999995 })))
    }
}

/// Payments error ratio spikes for 4 minutes; draining the instance is
/// verified by the error ratio being under 1%.
fn payments_at(m: i64) -> (f64, Option<(i64, f64)>) {
    match m {
        0..=4 => (0.002, None),
        5..=8 => (0.08, Some((5, 0.9999999))),
        9..=12 => (0.004, Some((5, 0.9999999))),
        _ => (0.002, None),
    }
}

/// Same spike, errors staying high longer, and the instance label carries a
/// shell injection: the drain is refused, the rollback (service only) goes on.
fn hostile_at(m: i64) -> (f64, Option<(i64, f64)>) {
    match m {
        0..=4 => (0.002, None),
        5..=12 => (0.08, Some((5, 0.9999999))),
        _ => (0.002, None),
    }
}

/// A scenario: the value and the excursion `(onset minute, peak score)` at
/// each minute.
type Scenario = fn(i64) -> (f64, Option<(i64, f64)>);

/// The first incident of one scenario run alone through the example runbooks.
fn first_incident(
    signal: &str,
    service: &str,
    instance: &str,
    minutes: i64,
    at: Scenario,
) -> Incident {
    let set = examples();
    let mut engine = Engine::new(&set, EngineOptions { dry_run: true });
    let l = labels(signal, service, instance);
    replay(&mut engine, signal, &l, minutes, at);
    engine.finish(T0 + minutes * MIN).remove(0)
}

fn checkout_latency() -> Incident {
    first_incident(
        "http_latency_p99_seconds",
        "checkout",
        "checkout-0",
        60,
        checkout_at,
    )
}

fn payments_errors() -> Incident {
    first_incident(
        "http_error_ratio",
        "payments",
        "payments-0",
        30,
        payments_at,
    )
}

fn payments_hostile_label() -> Incident {
    first_incident(
        "http_error_ratio",
        "payments",
        "payments-0; rm -rf /",
        30,
        hostile_at,
    )
}

#[test]
fn checkout_latency_report() {
    check(
        &report::markdown(&checkout_latency()),
        "tests/golden/checkout_latency.md",
    );
}

#[test]
fn payments_errors_report() {
    check(
        &report::markdown(&payments_errors()),
        "tests/golden/payments_errors.md",
    );
}

#[test]
fn hostile_label_report() {
    check(
        &report::markdown(&payments_hostile_label()),
        "tests/golden/payments_hostile_label.md",
    );
}

#[test]
fn incidents_as_json_lines() {
    // Both faults through one engine, samples interleaved in event time, as
    // a replay of the dataset would feed them: every rule that matches opens
    // its own incident, ids in order of opening.
    let set = examples();
    let mut engine = Engine::new(&set, EngineOptions { dry_run: true });
    let checkout = labels("http_latency_p99_seconds", "checkout", "checkout-0");
    let payments = labels("http_error_ratio", "payments", "payments-0");
    for m in 0..60 {
        for (signal, l, at) in [
            (
                "http_latency_p99_seconds",
                &checkout,
                checkout_at as fn(i64) -> _,
            ),
            ("http_error_ratio", &payments, payments_at),
        ] {
            let (value, ex) = at(m);
            let excursion = ex.map(|(onset, peak_score)| Excursion {
                onset_ms: T0 + onset * MIN,
                above: true,
                peak_score,
                first: onset == m,
                in_band: false,
            });
            let scored = Scored {
                score: excursion.map_or(0.3, |e| e.peak_score),
                excursion,
            };
            engine.observe(&Observation {
                signal,
                labels: l,
                ts_ms: T0 + m * MIN,
                value,
                scored,
            });
        }
    }
    let incidents = engine.finish(T0 + 60 * MIN);
    let lines = report::json_lines(&incidents);
    check(&lines, "tests/golden/incidents.jsonl");

    let parsed: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<(&str, &str)> = parsed
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("inc-000001", "error-ratio-spike"),
            ("inc-000002", "error-ratio-notify"),
            ("inc-000003", "latency-p99-high"),
        ]
    );
    let first = &parsed[0];
    assert_eq!(first["onset"], "2026-03-01T00:05:00Z");
    assert_eq!(first["onset_ms"], T0 + 5 * MIN);
    assert_eq!(first["resolved"], "2026-03-01T00:13:00Z");
    assert_eq!(first["resolved_ms"], T0 + 13 * MIN);
    assert_eq!(first["actions"][0]["planned"], "2026-03-01T00:06:00Z");
    assert_eq!(first["actions"][0]["planned_ms"], T0 + 6 * MIN);
    assert_eq!(first["actions"][0]["decision"]["reason"], "dry_run");
    assert_eq!(first["actions"][0]["verification"]["outcome"], "recovered");
    assert_eq!(
        first["actions"][0]["verification"]["decided"],
        "2026-03-01T00:09:00Z"
    );
    assert_eq!(parsed[2]["status"], "open");
    assert_eq!(parsed[2]["unresolved_at"], "2026-03-01T01:00:00Z");
}
