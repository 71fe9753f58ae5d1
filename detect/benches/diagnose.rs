//! Cost of cross-service diagnosis, per call.
//!
//! `cargo bench -p detect --bench diagnose`. The input is a seeded system of
//! 100, 1,000 and 10,000 series (ten metrics per service, named like the
//! RCA development set's, so every role occurs), 36 one-minute samples each
//! (30 minutes of baseline and the 6 after an onset), one service
//! saturating at the onset, and a call tree of fan-out 3 over the services. It
//! measures what the engine pays when an incident group opens or grows
//! (`rank` at the group's onset; `rank_uncalibrated` without the placebo
//! calibration), what `heal diagnose --onset detected` pays (`diagnose`
//! searching the last ten minutes for the onset, then ranking), the changes
//! finder over the whole stretch (`find_onsets`), and grouping 1,000
//! anomalies. Generation is outside the measured loops.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use detect::diagnose::{
    diagnose, find_onsets, group, rank, Anomaly, DiagnoseConfig, GroupConfig, OnsetChoice,
    OnsetConfig, Series, Topology,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const STEP_MS: i64 = 60_000;
const SAMPLES: i64 = 36;
const ONSET: i64 = 30 * STEP_MS;
const METRICS: [&str; 10] = [
    "cpu_usage_percent",
    "memory_usage_mib",
    "server_latency_p90_seconds",
    "server_latency_p99_seconds",
    "client_latency_p90_seconds",
    "success_rate_percent",
    "workload_ops",
    "syscall_read",
    "network_transmit_bytes",
    "node_cpu_usage_percent",
];

type Samples = Vec<(i64, f64)>;

struct System {
    series: Vec<(String, &'static str, Samples)>,
    topology: Topology,
}

/// A call tree of fan-out 3 (service `i` is called by `(i - 1) / 3`): the
/// depth of a real system, logarithmic in its size.
fn tree(names: &[String]) -> Topology {
    Topology::from_edges((1..names.len()).map(|i| (names[(i - 1) / 3].as_str(), names[i].as_str())))
        .expect("valid topology")
}

fn system(n_series: usize) -> System {
    let mut rng = StdRng::seed_from_u64(13);
    let noise = Normal::new(0.0, 1.0).expect("valid normal");
    let services = n_series / METRICS.len();
    let names: Vec<String> = (0..services).map(|i| format!("svc-{i:04}")).collect();
    let faulty = services / 2;
    let mut series = Vec::with_capacity(n_series);
    for (i, svc) in names.iter().enumerate() {
        for m in METRICS {
            let level = rng.gen_range(1.0..100.0);
            let v = (0..SAMPLES)
                .map(|k| {
                    let ts = k * STEP_MS + rng.gen_range(0..2_000);
                    let mut x = level * (1.0 + 0.05 * noise.sample(&mut rng));
                    if i == faulty && k >= 30 && m.starts_with("cpu") {
                        x *= 4.0;
                    }
                    (ts, x)
                })
                .collect();
            series.push((svc.clone(), m, v));
        }
    }
    System {
        series,
        topology: tree(&names),
    }
}

fn bench(c: &mut Criterion) {
    let cfg = DiagnoseConfig::default();
    let mut g = c.benchmark_group("diagnose");
    g.sample_size(20);
    for n in [100usize, 1_000, 10_000] {
        let sys = system(n);
        let series: Vec<Series<'_>> = sys
            .series
            .iter()
            .map(|(s, m, v)| Series::new(s, m, v))
            .collect();
        g.bench_with_input(BenchmarkId::new("rank", n), &series, |b, s| {
            b.iter(|| rank(black_box(s), Some(&sys.topology), ONSET, &cfg).expect("ranked"))
        });
        if n == 1_000 {
            // What calibration costs: the same ranking scored by ln(1 + z).
            let raw = DiagnoseConfig {
                calibrate: false,
                ..DiagnoseConfig::default()
            };
            g.bench_with_input(BenchmarkId::new("rank_uncalibrated", n), &series, |b, s| {
                b.iter(|| rank(black_box(s), Some(&sys.topology), ONSET, &raw).expect("ranked"))
            });
            // `heal diagnose --onset detected`: the onset searched over the
            // last ten minutes (a ranking per step), then the ranking.
            g.bench_with_input(BenchmarkId::new("diagnose_detected", n), &series, |b, s| {
                b.iter(|| {
                    diagnose(
                        black_box(s),
                        &[],
                        Some(&sys.topology),
                        OnsetChoice::Detect {
                            from_ms: SAMPLES * STEP_MS - 10 * STEP_MS,
                            to_ms: SAMPLES * STEP_MS,
                            min_after_ms: 2 * STEP_MS,
                        },
                        &cfg,
                        &OnsetConfig::default(),
                    )
                    .expect("diagnosed")
                })
            });
        }
        if n <= 1_000 {
            g.bench_with_input(BenchmarkId::new("find_onsets", n), &series, |b, s| {
                b.iter(|| {
                    find_onsets(
                        black_box(s),
                        0,
                        SAMPLES * STEP_MS,
                        &cfg,
                        &OnsetConfig::default(),
                    )
                    .expect("found")
                })
            });
        }
    }
    let names: Vec<String> = (0..1_000).map(|i| format!("svc-{i:04}")).collect();
    let topology = tree(&names);
    let mut rng = StdRng::seed_from_u64(7);
    let anomalies: Vec<Anomaly<'_>> = names
        .iter()
        .map(|s| {
            let on = rng.gen_range(0..600) * STEP_MS;
            Anomaly {
                service: s,
                onset_ms: on,
                last_ms: on + rng.gen_range(0..5) * STEP_MS,
            }
        })
        .collect();
    g.bench_function("group/1000", |b| {
        b.iter(|| {
            group(
                black_box(&anomalies),
                Some(&topology),
                &GroupConfig::default(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
