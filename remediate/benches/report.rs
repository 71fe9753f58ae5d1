//! Cost of the evidence kept for reports and of rendering them.
//!
//! `cargo bench -p remediate --bench report`.
//!
//! - `ring_push`: one sample into a series' [`EvidenceRing`], which every
//!   watched series pays on every sample (10,000 samples per iteration).
//! - `recorder_push`: one sample into an open incident's evidence, through
//!   decimation (100,000 samples per iteration, so the cap is hit often).
//! - `html`: one HTML report with a full evidence (64 + 2,000 points), what
//!   `GET /incidents/ID` costs.
//! - `atom`: the feed of 1,000 closed incidents.
//!
//! Inputs are deterministic and built outside the measured loop.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use remediate::report::{self, EvidencePoint, EvidenceRecorder, EvidenceRing, RING_LEN};
use remediate::Incident;

const T0: i64 = 1_772_323_200_000;

fn point(i: i64) -> EvidencePoint {
    let v = 100.0 + ((i * 7919) % 21 - 10) as f64 / 2.0 + if i % 997 == 0 { 60.0 } else { 0.0 };
    EvidencePoint::new(T0 + i * 15_000, v, (85.0, 115.0))
}

fn incident(k: usize) -> Incident {
    let series: BTreeMap<String, String> = [
        ("__name__", "http_error_ratio"),
        ("service", "payments"),
        ("instance", "payments-0"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    Incident {
        id: format!("inc-{k:06}"),
        series,
        service: "payments".into(),
        signal: "http_error_ratio".into(),
        rule: "error-ratio-spike".into(),
        description: Some("5xx ratio spiking on one instance.".into()),
        severity: Default::default(),
        above: true,
        onset_ms: T0 + 64 * 15_000,
        opened_ms: T0 + 65 * 15_000,
        peak_score: 0.99999,
        peer_z: None,
        chain_len: 2,
        actions: Vec::new(),
        resolved_ms: Some(T0 + 2_064 * 15_000),
        unresolved_at_ms: None,
        diagnosis: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("evidence");
    group.throughput(Throughput::Elements(10_000));
    let points: Vec<EvidencePoint> = (0..100_000).map(point).collect();
    group.bench_function("ring_push", |b| {
        let mut ring = EvidenceRing::new();
        b.iter(|| {
            for p in &points[..10_000] {
                ring.push(black_box(*p));
            }
        })
    });
    let mut ring = EvidenceRing::new();
    for p in &points[..RING_LEN] {
        ring.push(*p);
    }
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("recorder_push", |b| {
        b.iter(|| {
            let mut r = EvidenceRecorder::new(&ring);
            for p in &points {
                r.push(black_box(*p));
            }
            r.finish()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("render");
    let mut r = EvidenceRecorder::new(&ring);
    for p in &points[RING_LEN..RING_LEN + 1_999] {
        r.push(*p);
    }
    let evidence = r.finish();
    assert_eq!(evidence.points.len(), RING_LEN + 1_999);
    let inc = incident(1);
    group.bench_function("html", |b| {
        b.iter(|| report::html(black_box(&inc), Some(&evidence)))
    });
    let incidents: Vec<Incident> = (1..=1_000).map(incident).collect();
    group.bench_function("atom_1000", |b| {
        b.iter(|| report::atom(black_box(&incidents), "http://127.0.0.1:9090/feed.atom", T0))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
