//! Throughput of the default detector, in points per second.
//!
//! `cargo bench -p detect --bench detector`. Each benchmark scores 10,000
//! points per series for 1, 100, 1,000 and 10,000 independent series (one detector
//! each), interleaved by time as a live watcher would see them. The input is
//! seeded Gaussian noise with the odd spike; its generation is outside the
//! measured loop.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use detect::{AdaptiveDetector, DetectorConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const POINTS: usize = 10_000;
const STEP_MS: i64 = 60_000;

/// `series * POINTS` values, time-major (all series' point 0 first).
fn input(series: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(42);
    let normal = Normal::new(100.0, 5.0).expect("valid normal");
    (0..series * POINTS)
        .map(|_| {
            let x = normal.sample(&mut rng);
            if rng.gen_bool(0.001) {
                x + 50.0
            } else {
                x
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("adaptive_default");
    group.sample_size(10);
    for series in [1usize, 100, 1_000, 10_000] {
        let xs = input(series);
        group.throughput(Throughput::Elements((series * POINTS) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(series), &xs, |b, xs| {
            b.iter(|| {
                let mut dets: Vec<AdaptiveDetector> = (0..series)
                    .map(|_| AdaptiveDetector::new(DetectorConfig::default()))
                    .collect();
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

criterion_group!(benches, bench);
criterion_main!(benches);
