//! Throughput of the decision loop replay and the live loop share
//! ([`heal::pipeline::Pipeline`]: sample policy, the series' detector, the
//! rule engine and the evidence recorder), in samples per second.
//!
//! `cargo bench -p heal --bench pipeline`. Each benchmark feeds 2,000
//! evaluations of 1 minute to 10, 100 and 1,000 series of one signal (four
//! instances per service), interleaved by time as the live loop sees them;
//! the values are seeded noise around 100 with the odd spike (one sample in
//! 2,000 at +60), so a few incidents open and their steps are planned (in
//! dry-run) and verified. Input generation is outside the measured loop.
//!
//! What each benchmark stresses:
//! - `push`: one sample at a time (`Pipeline::push`), no peer comparison:
//!   policy, detector, engine and evidence per sample.
//! - `push_slot`: a timestamp's samples together (`Pipeline::push_slot`,
//!   what both drivers call), the same signal with `peer:`: the per-service
//!   peer groups on top.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use heal::pipeline::{Pipeline, SeriesHandle};
use ingest::Labels;
use lab::rng::SplitMix64;
use remediate::{EngineOptions, RunbookSet};

const EVALUATIONS: usize = 2_000;
const STEP_MS: i64 = 60_000;

fn runbooks(peer: bool) -> RunbookSet {
    let peer = if peer {
        "    peer: { threshold: 3.5, consecutive: 3, min_spread: 1 }\n"
    } else {
        ""
    };
    let text = format!(
        "signals:
  - name: lat
    query: lat
{peer}rules:
  - name: restart-on-latency
    when: {{signal: lat, direction: up, for: 0s}}
    then:
      - action: restart
        target: svc/{{{{service}}}}/{{{{instance}}}}
    verify: {{wait: 5m}}
"
    );
    RunbookSet::from_sources(&[("bench.yaml".into(), text)]).expect("the bench runbook is valid")
}

/// `series * EVALUATIONS` values, time-major.
fn input(series: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(42);
    (0..series * EVALUATIONS)
        .map(|_| {
            let x = 100.0 + 5.0 * rng.noise();
            if rng.unit() < 0.0005 {
                x + 60.0
            } else {
                x
            }
        })
        .collect()
}

fn pipeline(series: usize, peer: bool) -> (Pipeline, Vec<SeriesHandle>) {
    let mut p = Pipeline::new(runbooks(peer), EngineOptions::default());
    let handles = (0..series)
        .map(|i| {
            let labels = Labels::metric("lat")
                .with("service", format!("svc-{}", i / 4))
                .with("instance", format!("svc-{}-{}", i / 4, i % 4));
            p.register(&labels).expect("the signal watches it")
        })
        .collect();
    (p, handles)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    for series in [10usize, 100, 1_000] {
        let xs = input(series);
        group.throughput(Throughput::Elements((series * EVALUATIONS) as u64));
        group.bench_with_input(BenchmarkId::new("push", series), &xs, |b, xs| {
            b.iter(|| {
                let (mut p, handles) = pipeline(series, false);
                let mut events = 0usize;
                for (t, row) in xs.chunks_exact(series).enumerate() {
                    let ts = t as i64 * STEP_MS;
                    for (&h, &x) in handles.iter().zip(row) {
                        events += p.push(h, ts, x).events.len();
                    }
                }
                black_box(events)
            });
        });
        group.bench_with_input(BenchmarkId::new("push_slot", series), &xs, |b, xs| {
            b.iter(|| {
                let (mut p, handles) = pipeline(series, true);
                let mut events = 0usize;
                let mut slot = Vec::with_capacity(series);
                for (t, row) in xs.chunks_exact(series).enumerate() {
                    slot.clear();
                    slot.extend(handles.iter().copied().zip(row.iter().copied()));
                    let pushed = p.push_slot(t as i64 * STEP_MS, &slot);
                    events += pushed.iter().map(|p| p.events.len()).sum::<usize>();
                }
                black_box(events)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
