//! Throughput and memory of the NAB configuration's detector (`kind:
//! novelty`, [`DetectorConfig::nab`]), up to 100,000 series.
//!
//! `cargo bench -p detect --bench novelty`. Memory first: 100,000 series,
//! each in the steady state of 3,000 points of a daily-shaped series with
//! noise (every hour-of-day bucket and tail fit in use), summed with
//! [`Detector::state_bytes`]. Then the time to score one point per series
//! per step, interleaved by time as a live watcher sees them, on one core:
//! 1 series x 100,000 points, 1,000 series x 1,000 points and 100,000
//! series x 100 points (the detectors are cloned from the warmed-up state
//! outside the measured loop, so the 100,000-series case measures steady
//! state, not warm-up). The target is at least 1 million points per second.

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use detect::{Detector, DetectorConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const STEP_MS: i64 = 300_000;
const WARM: usize = 3_000;

/// A daily-shaped series with noise and the odd spike, `n` points from
/// point `from` on.
fn series(seed: u64, from: usize, n: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 3.0).expect("valid normal");
    (from..from + n)
        .map(|i| {
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let x = 100.0 + 30.0 * phase.sin() + normal.sample(&mut rng);
            if rng.gen_bool(0.001) {
                x + 60.0
            } else {
                x
            }
        })
        .collect()
}

/// One detector in the steady state after [`WARM`] points.
fn warmed() -> Detector {
    let mut d = Detector::new(DetectorConfig::nab());
    for (t, &x) in series(1, 0, WARM).iter().enumerate() {
        d.update(t as i64 * STEP_MS, x);
    }
    d.end_excursion();
    d
}

fn memory() {
    const SERIES: usize = 100_000;
    // Every series holds the same state: its size does not depend on the
    // values, and warming 100,000 detectors separately would take long.
    let proto = warmed();
    let dets: Vec<Detector> = (0..SERIES).map(|_| proto.clone()).collect();
    let total: usize = dets.iter().map(Detector::state_bytes).sum();
    println!(
        "memory novelty {:>6.0} bytes per series ({} series, {:.1} MiB)",
        total as f64 / SERIES as f64,
        SERIES,
        total as f64 / (1 << 20) as f64
    );
    black_box(dets);
}

fn bench(c: &mut Criterion) {
    memory();
    let proto = warmed();
    let mut group = c.benchmark_group("novelty");
    group.sample_size(10);
    for (n_series, points) in [(1usize, 100_000usize), (1_000, 1_000), (100_000, 100)] {
        // Time-major: every series' point t, then t + 1.
        let one = series(2, WARM, points);
        let xs: Vec<f64> = one
            .iter()
            .flat_map(|&x| (0..n_series).map(move |s| x + s as f64 * 1e-3))
            .collect();
        group.throughput(Throughput::Elements((n_series * points) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n_series), &xs, |b, xs| {
            b.iter_batched(
                || vec![proto.clone(); n_series],
                |mut dets| {
                    let mut alarms = 0usize;
                    for (t, row) in xs.chunks_exact(n_series).enumerate() {
                        let ts = (WARM + t) as i64 * STEP_MS;
                        for (d, &x) in dets.iter_mut().zip(row) {
                            let s = d.update(ts, x);
                            alarms += usize::from(s.excursion.is_some_and(|e| e.first));
                        }
                    }
                    black_box((alarms, dets))
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
