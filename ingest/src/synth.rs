//! A deterministic synthetic dataset with known faults, for tests, demos and tuning.
//!
//! # Scenario
//!
//! 4 services, `checkout`, `payments`, `search` and `inventory`, each with the labels
//! `service="<svc>"` and `instance="<svc>-0"` and 4 signals (the metric name, `__name__`):
//!
//! | signal                     | unit      | shape                                                  |
//! |----------------------------|-----------|--------------------------------------------------------|
//! | `http_request_rate`        | req/s     | daily sinusoid (peak 15:00, trough 03:00 UTC, ±40 %),  |
//! |                            |           | weekend traffic at 80 %, 3 % Gaussian noise            |
//! | `http_error_ratio`         | 0..1      | 0.2 % with small Gaussian noise, clamped to [0, 1]      |
//! | `http_latency_p99_seconds` | s         | follows load mildly (±12 %), 5 % log-normal noise       |
//! | `process_memory_bytes`     | bytes     | flat plus a little load-driven heap, 4 MB noise        |
//!
//! 7 days at a 60 s step, from Monday 2026-01-05T00:00:00Z to 2026-01-11T23:59:00Z
//! (10 080 timestamps per series).
//!
//! Injected faults, each with a [`TruthWindow`] over the faulty series from the fault's start to
//! its end plus a 10-minute tail (detectors legitimately fire a little after a fault ends, e.g.
//! on the recovery edge):
//!
//! | fault          | series                                      | fault time (UTC)                      |
//! |----------------|---------------------------------------------|---------------------------------------|
//! | level shift    | `http_latency_p99_seconds{service="checkout"}` | 2026-01-06 14:00 to 20:00, p99 x2.5 |
//! | spike          | `http_error_ratio{service="payments"}`      | 2026-01-07 09:30 to 09:34, ratio ~25 % |
//! | memory leak    | `process_memory_bytes{service="search"}`    | 2026-01-08 02:00 to 08:00, +6 MB/min, then a restart back to baseline |
//! | variance change| `http_request_rate{service="inventory"}`    | 2026-01-10 10:00 to 16:00, noise x5   |
//!
//! Everything else is clean, except for a few missing samples: three runs of 2 to 5 consecutive
//! samples (each a gap, delta > 2 steps) and one single missing sample (not a gap), in
//! seed-chosen series at seed-chosen times, never within an hour of a fault window.
//!
//! # Determinism
//!
//! Same seed, same dataset, bit for bit. Each series draws from its own `StdRng` seeded with
//! `seed ^ SeriesId`, so adding a series would not change the others. `StdRng` is ChaCha12 in
//! rand 0.8 and its output is stable within that major version (`SmallRng` is explicitly not
//! portable); moving to another major version of rand may change the data.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::dataset::{Dataset, SeriesData, TruthWindow};
use crate::series::{Labels, Sample, METRIC_NAME_LABEL};

/// 2026-01-05T00:00:00Z, the first timestamp.
pub const SYNTH_START_MS: i64 = 1_767_571_200_000;
/// 60 s between samples.
pub const SYNTH_STEP_MS: i64 = 60_000;
/// 7 days of samples.
pub const SYNTH_STEPS: i64 = 7 * 24 * 60;
/// The services, in label order.
pub const SYNTH_SERVICES: [&str; 4] = ["checkout", "payments", "search", "inventory"];
/// The signals of each service.
pub const SYNTH_SIGNALS: [&str; 4] = [
    "http_request_rate",
    "http_error_ratio",
    "http_latency_p99_seconds",
    "process_memory_bytes",
];

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Truth windows extend this far past the end of a fault.
const TAIL_MS: i64 = 10 * MINUTE;

/// `day` (0 = Monday 2026-01-05) at `hour:minute`, in ms.
const fn at(day: i64, hour: i64, minute: i64) -> i64 {
    SYNTH_START_MS + day * DAY + hour * HOUR + minute * MINUTE
}

#[derive(Clone, Copy)]
enum FaultKind {
    LevelShift,
    Spike,
    Leak,
    Variance,
}

struct Fault {
    kind: FaultKind,
    service: &'static str,
    signal: &'static str,
    start_ms: i64,
    end_ms: i64,
}

const FAULTS: [Fault; 4] = [
    Fault {
        kind: FaultKind::LevelShift,
        service: "checkout",
        signal: "http_latency_p99_seconds",
        start_ms: at(1, 14, 0),
        end_ms: at(1, 20, 0),
    },
    Fault {
        kind: FaultKind::Spike,
        service: "payments",
        signal: "http_error_ratio",
        start_ms: at(2, 9, 30),
        end_ms: at(2, 9, 34),
    },
    Fault {
        kind: FaultKind::Leak,
        service: "search",
        signal: "process_memory_bytes",
        start_ms: at(3, 2, 0),
        end_ms: at(3, 8, 0),
    },
    Fault {
        kind: FaultKind::Variance,
        service: "inventory",
        signal: "http_request_rate",
        start_ms: at(5, 10, 0),
        end_ms: at(5, 16, 0),
    },
];

/// Per-service baselines: request rate (req/s), p99 latency (s), memory (bytes).
fn baseline(service: &str) -> (f64, f64, f64) {
    match service {
        "checkout" => (120.0, 0.25, 1.2e9),
        "payments" => (80.0, 0.35, 0.9e9),
        "search" => (300.0, 0.18, 2.0e9),
        _ => (60.0, 0.12, 0.6e9),
    }
}

fn labels(service: &str, signal: &str) -> Labels {
    Labels::from_pairs([
        (METRIC_NAME_LABEL, signal.to_string()),
        ("service", service.to_string()),
        ("instance", format!("{service}-0")),
    ])
}

/// Relative traffic at `ts_ms`: a daily sinusoid peaking at 15:00 UTC, 80 % on weekends.
fn load(ts_ms: i64) -> f64 {
    let hour = (ts_ms.rem_euclid(DAY)) as f64 / HOUR as f64;
    let daily = 1.0 + 0.4 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
    // 2026-01-05 is a Monday, so days 5 and 6 are the weekend.
    let weekday = (ts_ms - SYNTH_START_MS).div_euclid(DAY).rem_euclid(7);
    daily * if weekday >= 5 { 0.8 } else { 1.0 }
}

fn value(service: &str, signal: &str, ts_ms: i64, fault: Option<&Fault>, rng: &mut StdRng) -> f64 {
    let (rate, latency, memory) = baseline(service);
    let l = load(ts_ms);
    let z: f64 = rng.sample(StandardNormal);
    let active = fault
        .filter(|f| (f.start_ms..f.end_ms).contains(&ts_ms))
        .map(|f| (f.kind, ts_ms - f.start_ms));
    // Each fault kind is injected into the one signal the scenario gives it.
    match signal {
        "http_request_rate" => {
            let noise = match active {
                Some((FaultKind::Variance, _)) => 0.15,
                _ => 0.03,
            };
            (rate * l * (1.0 + noise * z)).max(0.0)
        }
        "http_error_ratio" => {
            let v = match active {
                Some((FaultKind::Spike, _)) => 0.25 + 0.03 * z,
                _ => 0.002 + 0.0005 * z,
            };
            v.clamp(0.0, 1.0)
        }
        "http_latency_p99_seconds" => {
            let shift = match active {
                Some((FaultKind::LevelShift, _)) => 2.5,
                _ => 1.0,
            };
            latency * shift * (1.0 + 0.3 * (l - 1.0)) * (0.05 * z).exp()
        }
        _ => {
            let leak = match active {
                Some((FaultKind::Leak, since)) => 6e6 * (since / MINUTE) as f64,
                _ => 0.0,
            };
            memory + 30e6 * l + leak + 4e6 * z
        }
    }
}

/// Generates the scenario described in the [module docs](self) from `seed`.
pub fn synth(seed: u64) -> Dataset {
    let mut series = Vec::new();
    let mut truth = Vec::new();
    for service in SYNTH_SERVICES {
        for signal in SYNTH_SIGNALS {
            let labels = labels(service, signal);
            let fault = FAULTS
                .iter()
                .find(|f| f.service == service && f.signal == signal);
            if let Some(f) = fault {
                truth.push(TruthWindow {
                    series: labels.clone(),
                    start_ms: f.start_ms,
                    end_ms: f.end_ms + TAIL_MS,
                });
            }
            let mut rng = StdRng::seed_from_u64(seed ^ labels.id().0);
            let samples = (0..SYNTH_STEPS)
                .map(|i| {
                    let ts_ms = SYNTH_START_MS + i * SYNTH_STEP_MS;
                    Sample::new(ts_ms, value(service, signal, ts_ms, fault, &mut rng))
                })
                .collect();
            series.push(SeriesData { labels, samples });
        }
    }
    remove_samples(seed, &mut series, &truth);
    let mut dataset = Dataset { series, truth };
    dataset.sort();
    dataset
}

/// Takes out three runs of 2 to 5 samples (gaps) and one single sample (not a gap).
fn remove_samples(seed: u64, series: &mut [SeriesData], truth: &[TruthWindow]) {
    // A constant distinct from any series id keeps this stream apart from the series' streams.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6761_7073_6761_7073);
    for run in [2, 3, 5, 1] {
        // Bounded retries: with 4 short windows over 16 week-long series, a clash is rare.
        for _ in 0..100 {
            let s = rng.gen_range(0..series.len());
            let SeriesData { labels, samples } = &mut series[s];
            let first = rng.gen_range(1..samples.len() - run - 1);
            let (from, to) = (samples[first].ts_ms, samples[first + run - 1].ts_ms);
            let near_fault = truth
                .iter()
                .any(|w| w.series == *labels && from <= w.end_ms + HOUR && to >= w.start_ms - HOUR);
            // Runs must not touch an earlier removal, or two runs could merge into one.
            let contiguous = samples[first - 1..=first + run]
                .windows(2)
                .all(|p| p[1].ts_ms - p[0].ts_ms == SYNTH_STEP_MS);
            if !near_fault && contiguous {
                samples.drain(first..first + run);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::format_rfc3339;

    fn bits(d: &Dataset) -> Vec<(String, Vec<(i64, u64)>)> {
        d.series
            .iter()
            .map(|s| {
                (
                    s.labels.to_string(),
                    s.samples
                        .iter()
                        .map(|x| (x.ts_ms, x.value.to_bits()))
                        .collect(),
                )
            })
            .collect()
    }

    fn mean(d: &Dataset, l: &Labels, from: i64, to: i64) -> f64 {
        let v: Vec<f64> = d
            .get(l)
            .unwrap()
            .samples
            .iter()
            .filter(|s| (from..to).contains(&s.ts_ms))
            .map(|s| s.value)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn deterministic_per_seed() {
        let a = synth(42);
        assert_eq!(bits(&a), bits(&synth(42)));
        assert_eq!(a.truth, synth(42).truth);
        assert_ne!(bits(&a), bits(&synth(43)));
    }

    #[test]
    fn shape() {
        let d = synth(42);
        assert_eq!(d.series.len(), 16);
        assert_eq!(d.num_samples(), 16 * 10_080 - (2 + 3 + 5 + 1));
        let first = d.series.iter().map(|s| s.samples[0].ts_ms).min().unwrap();
        let last = d
            .series
            .iter()
            .map(|s| s.samples.last().unwrap().ts_ms)
            .max()
            .unwrap();
        assert_eq!(format_rfc3339(first), "2026-01-05T00:00:00Z");
        assert_eq!(format_rfc3339(last), "2026-01-11T23:59:00Z");
        let l = &d.series[0].labels;
        assert_eq!(
            l.get("instance"),
            Some(format!("{}-0", l.get("service").unwrap()).as_str())
        );
        let info = d.info();
        assert_eq!(info.gaps, 3);
        assert_eq!(info.nan, 0);
        assert!(d
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .all(|s| s.value.is_finite()));
    }

    #[test]
    fn truth_windows() {
        let d = synth(7);
        let w: Vec<_> = d
            .truth
            .iter()
            .map(|w| {
                format!(
                    "{} {} {}",
                    w.series.name().unwrap(),
                    format_rfc3339(w.start_ms),
                    format_rfc3339(w.end_ms)
                )
            })
            .collect();
        assert_eq!(
            w,
            [
                "http_error_ratio 2026-01-07T09:30:00Z 2026-01-07T09:44:00Z",
                "http_latency_p99_seconds 2026-01-06T14:00:00Z 2026-01-06T20:10:00Z",
                "http_request_rate 2026-01-10T10:00:00Z 2026-01-10T16:10:00Z",
                "process_memory_bytes 2026-01-08T02:00:00Z 2026-01-08T08:10:00Z",
            ]
        );
    }

    #[test]
    fn faults_are_visible() {
        let d = synth(42);
        let lat = labels("checkout", "http_latency_p99_seconds");
        assert!(
            mean(&d, &lat, at(1, 14, 0), at(1, 20, 0))
                > 2.0 * mean(&d, &lat, at(0, 14, 0), at(0, 20, 0))
        );
        let err = labels("payments", "http_error_ratio");
        assert!(mean(&d, &err, at(2, 9, 30), at(2, 9, 34)) > 0.15);
        assert!(mean(&d, &err, at(2, 8, 0), at(2, 9, 0)) < 0.01);
        let mem = labels("search", "process_memory_bytes");
        let before = mean(&d, &mem, at(3, 1, 0), at(3, 2, 0));
        assert!(mean(&d, &mem, at(3, 7, 30), at(3, 8, 0)) > before + 1.5e9);
        assert!((mean(&d, &mem, at(3, 8, 30), at(3, 9, 0)) - before).abs() < 0.1e9);
        let rate = labels("inventory", "http_request_rate");
        let sd = |from, to| {
            let s = &d.get(&rate).unwrap().samples;
            let diffs: Vec<f64> = s
                .windows(2)
                .filter(|p| (from..to).contains(&p[0].ts_ms))
                .map(|p| p[1].value - p[0].value)
                .collect();
            (diffs.iter().map(|x| x * x).sum::<f64>() / diffs.len() as f64).sqrt()
        };
        assert!(sd(at(5, 10, 0), at(5, 16, 0)) > 3.0 * sd(at(4, 10, 0), at(4, 16, 0)));
    }

    #[test]
    fn daily_seasonality() {
        let d = synth(42);
        let rate = labels("search", "http_request_rate");
        // Tuesday 15:00 (peak) against 03:00 (trough).
        let peak = mean(&d, &rate, at(1, 14, 30), at(1, 15, 30));
        let trough = mean(&d, &rate, at(1, 2, 30), at(1, 3, 30));
        assert!(peak > 2.0 * trough, "{peak} {trough}");
    }
}
