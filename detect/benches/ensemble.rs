//! Throughput and memory of every detector kind, the ensemble first.
//!
//! `cargo bench -p detect --bench ensemble`. Each benchmark scores 10,000
//! points per series for 1 and 1,000 independent series (one detector
//! each; the seasonal detector 1 and 10), interleaved by time as a live watcher would see them, on one
//! core, no I/O. The input is seeded Gaussian noise with the odd spike and
//! a level shift; its generation is outside the measured loop. The target
//! for the ensemble is at least 1 million points per second.
//!
//! Before the timings it prints each kind's memory per series in steady
//! state: 100,000 series, each fed 3,000 points (more than the seasonal
//! history, so its buffer is full and fitted), then
//! [`Detector::state_bytes`] summed over them (inline size plus heap).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use detect::{Detector, DetectorConfig, DetectorKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const POINTS: usize = 10_000;
const STEP_MS: i64 = 60_000;

/// `series * points` values, time-major (all series' point 0 first).
fn input(series: usize, points: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(42);
    let normal = Normal::new(100.0, 5.0).expect("valid normal");
    (0..series * points)
        .map(|i| {
            let x = normal.sample(&mut rng) + if i / series > points / 2 { 20.0 } else { 0.0 };
            if rng.gen_bool(0.001) {
                x + 50.0
            } else {
                x
            }
        })
        .collect()
}

fn cfg(kind: DetectorKind) -> DetectorConfig {
    DetectorConfig {
        kind,
        ..DetectorConfig::default()
    }
}

/// Memory per series in steady state, at 100,000 series (seasonal: 10,000,
/// its 16 KiB history each would take 1.6 GiB at 100,000; the figure per
/// series is the same).
fn memory() {
    const FED: usize = 3_000;
    let one = input(1, FED);
    for kind in DetectorKind::ALL {
        let series = if kind == DetectorKind::Seasonal {
            10_000
        } else {
            100_000
        };
        // Every series sees the same values: the state's size does not
        // depend on them, and scoring 3e8 distinct points would take long.
        let mut proto = Detector::new(cfg(kind));
        for (t, &x) in one.iter().enumerate() {
            proto.update(t as i64 * STEP_MS, x);
        }
        proto.end_excursion();
        let dets: Vec<Detector> = (0..series).map(|_| proto.clone()).collect();
        let total: usize = dets.iter().map(Detector::state_bytes).sum();
        println!(
            "memory {:<12} {:>8.0} bytes per series ({} series, {:.1} MiB)",
            kind.as_str(),
            total as f64 / series as f64,
            series,
            total as f64 / (1 << 20) as f64
        );
        black_box(dets);
    }
}

fn bench(c: &mut Criterion) {
    memory();
    for kind in [
        DetectorKind::Ensemble,
        DetectorKind::Novelty,
        DetectorKind::Changepoint,
        DetectorKind::Adaptive,
        DetectorKind::Seasonal,
    ] {
        let mut group = c.benchmark_group(kind.as_str());
        group.sample_size(10);
        // The seasonal detector costs microseconds a point (its refits):
        // 1,000 series of it would take minutes per sample.
        let counts: &[usize] = if kind == DetectorKind::Seasonal {
            &[1, 10]
        } else {
            &[1, 1_000]
        };
        for &series in counts {
            let xs = input(series, POINTS);
            group.throughput(Throughput::Elements((series * POINTS) as u64));
            group.bench_with_input(BenchmarkId::from_parameter(series), &xs, |b, xs| {
                b.iter(|| {
                    let mut dets: Vec<Detector> =
                        (0..series).map(|_| Detector::new(cfg(kind))).collect();
                    let mut alarms = 0usize;
                    for (t, row) in xs.chunks_exact(series).enumerate() {
                        let ts = t as i64 * STEP_MS;
                        for (d, &x) in dets.iter_mut().zip(row) {
                            let s = d.update(ts, x);
                            alarms += usize::from(s.excursion.is_some_and(|e| e.first));
                        }
                    }
                    black_box(alarms)
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
