//! What one series says about its service around an onset: how far it moved
//! from its own recent baseline, on which side, and when.
//!
//! The statistic is the robust z-score that BARO's root-cause step uses
//! (Pham et al., FSE 2024: a scaler fitted on the samples before the onset,
//! the test samples scored against it; RCAEval `e2e/baro.py`), with three
//! changes measured on the development set (see `/work/notes/issue13-log.md`):
//!
//! - **one-sided, in the harmful direction of the metric's role**: CPU,
//!   memory, latency and errors count when they rise, success rate and
//!   throughput when they fall. A metric falling back after an earlier
//!   incident (memory freed by a restart) is recovery, not a fault; a
//!   two-sided score ranks such recoveries as causes.
//! - **median and MAD with a relative floor**: the spread is at least
//!   `rel_floor` of the level, so that a series that was flat before the
//!   onset (a counter stuck at 0, a latency quantised to a few values) does
//!   not turn a one-unit wiggle into a z of millions.
//! - **the second most extreme test sample** (the sustained move) rather than
//!   the most extreme one, so that one scrape landing mid-spike does not
//!   outrank a shift that lasts; with one test sample it is that sample.
//!
//! Evidence enters service scores as `ln(1 + z)`: the z of a series that was
//! nearly constant can be in the thousands, and summing raw z would let one
//! such series outweigh a service whose CPU, memory and latency all moved.

use serde::{Deserialize, Serialize};

use super::Series;
use crate::Direction;

/// `1 / Phi^-1(3/4)`: the MAD of a normal sample times this estimates its
/// standard deviation (Rousseeuw & Croux 1993).
pub(crate) const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// What a metric says about its service, which sets the side that harms
/// and how much a move of it weighs as evidence that the service itself is
/// the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The service's own resources (CPU, memory): saturation here is the
    /// service's own, the strongest evidence that it is the cause.
    Saturation,
    /// Errors the service returns (success rate falling, error rate rising).
    Errors,
    /// Latency of the requests the service serves (server side). It includes
    /// the time spent in the service's callees, so it spreads to callers.
    ServerLatency,
    /// Latency of the calls the service makes (client side): a symptom of its
    /// callees, the weakest evidence against the service itself.
    ClientLatency,
    /// Requests served per second: a fault lowers it.
    Traffic,
    /// Disk and network I/O of the service (syscalls, bytes): either side.
    Io,
    /// The host the service runs on (node CPU, memory, network): shared by
    /// every service on that host.
    Host,
    /// Anything else: either side, low weight.
    Other,
}

impl Role {
    /// Every role, in the order of the evidence tables.
    pub const ALL: [Role; 8] = [
        Role::Saturation,
        Role::Errors,
        Role::ServerLatency,
        Role::ClientLatency,
        Role::Traffic,
        Role::Io,
        Role::Host,
        Role::Other,
    ];

    /// The role of a metric, from its name (Prometheus conventions and the
    /// names of the RCA development set): `node_*` is the host; names with
    /// `latency`/`duration` are latencies, client side when they say
    /// `client`; `success` and `error`/`fail` are errors; `cpu`/`memory` are
    /// saturation; `workload`/`requests`/`ops`/`throughput` are traffic;
    /// `syscall`/`network`/`bytes`/`io`/`disk` are I/O.
    pub fn of_metric(name: &str) -> Role {
        let n = name.to_ascii_lowercase();
        let has = |s: &str| n.contains(s);
        if n.starts_with("node_") || has("_node_") {
            Role::Host
        } else if has("latency") || has("duration") || has("response_time") {
            if has("client") {
                Role::ClientLatency
            } else {
                Role::ServerLatency
            }
        } else if has("success") || has("error") || has("fail") {
            Role::Errors
        } else if has("cpu") || has("memory") || has("mem_") {
            Role::Saturation
        } else if has("workload")
            || has("request")
            || has("_ops")
            || has("throughput")
            || has("qps")
            || has("rps")
        {
            Role::Traffic
        } else if has("syscall") || has("network") || has("bytes") || has("disk") || has("_io") {
            Role::Io
        } else {
            Role::Other
        }
    }

    /// The side on which a metric of this role harms, given its name
    /// (success rates fall, error rates rise).
    pub fn harmful(self, name: &str) -> Direction {
        match self {
            Role::Saturation | Role::ServerLatency | Role::ClientLatency => Direction::Up,
            Role::Errors => {
                if name.to_ascii_lowercase().contains("success") {
                    Direction::Down
                } else {
                    Direction::Up
                }
            }
            Role::Traffic => Direction::Down,
            Role::Host => {
                if name.contains("cpu") || name.contains("memory") {
                    Direction::Up
                } else {
                    Direction::Both
                }
            }
            Role::Io | Role::Other => Direction::Both,
        }
    }

    /// Whether the role is a latency (which a topology can explain away).
    pub fn is_latency(self) -> bool {
        matches!(self, Role::ServerLatency | Role::ClientLatency)
    }

    /// The lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Saturation => "saturation",
            Role::Errors => "errors",
            Role::ServerLatency => "server_latency",
            Role::ClientLatency => "client_latency",
            Role::Traffic => "traffic",
            Role::Io => "io",
            Role::Host => "host",
            Role::Other => "other",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the deviation of one series is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measure {
    /// Baseline: samples in `[onset - baseline_ms, onset)`.
    pub baseline_ms: i64,
    /// Test: samples in `[onset, onset + window_ms)`.
    pub window_ms: i64,
    /// Fewest baseline samples a series needs to be scored.
    pub min_baseline: usize,
    /// Smallest spread, as a fraction of the baseline level's magnitude.
    pub rel_floor: f64,
    /// z at which a test sample counts as moved (for the series' onset).
    pub onset_z: f64,
    /// Score the second most extreme test sample (the sustained move)
    /// rather than the most extreme one.
    pub sustained: bool,
}

/// How one series moved at an onset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvidence {
    /// Metric name.
    pub metric: String,
    /// What the metric says about the service.
    pub role: Role,
    /// The side that harms for this metric.
    pub harmful: Direction,
    /// Whether the scored test value lies above the baseline.
    pub above: bool,
    /// Baseline level (median of the samples before the onset).
    pub baseline: f64,
    /// Baseline spread (1.4826 MAD, at least `rel_floor` of the level).
    pub spread: f64,
    /// The test value scored (see the module docs).
    pub value: f64,
    /// Deviation in spreads on the harmful side (0 when it moved the other
    /// way or not at all).
    pub z: f64,
    /// First test sample at or beyond `onset_z` on the harmful side.
    pub onset_ms: Option<i64>,
    /// Weight of this evidence in its service's score (the role's weight,
    /// divided among the services that share the series, e.g. a host).
    pub weight: f64,
}

impl MetricEvidence {
    /// This evidence's contribution to its service's score:
    /// `weight * ln(1 + z)`.
    pub fn contribution(&self) -> f64 {
        self.weight * self.z.ln_1p()
    }
}

/// The samples of `s` in `[from, to)`, by binary search on sorted times.
pub(crate) fn slice(s: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    let a = s.partition_point(|p| p.0 < from);
    let b = s.partition_point(|p| p.0 < to);
    &s[a..b.max(a)]
}

/// Median of `v` (reordered in place); `v` must not be empty.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    }
}

/// Robust level and spread of the finite values of `base`, using `buf` as
/// scratch; `None` with fewer than `min` finite values.
pub(crate) fn robust(
    base: &[(i64, f64)],
    min: usize,
    rel_floor: f64,
    buf: &mut Vec<f64>,
) -> Option<(f64, f64)> {
    buf.clear();
    buf.extend(base.iter().map(|p| p.1).filter(|x| x.is_finite()));
    if buf.len() < min.max(1) {
        return None;
    }
    let level = median(buf);
    for x in buf.iter_mut() {
        *x = (*x - level).abs();
    }
    let mad = median(buf) * MAD_TO_SIGMA;
    // The absolute floor only keeps an all-zero baseline from dividing by 0.
    let spread = mad.max(rel_floor * level.abs()).max(1e-9);
    Some((level, spread))
}

/// The evidence of one series at `onset_ms`, or `None` when it has too few
/// baseline samples or no test sample.
pub(crate) fn measure(
    series: &Series<'_>,
    onset_ms: i64,
    m: &Measure,
    buf: &mut Vec<f64>,
) -> Option<MetricEvidence> {
    let base = slice(
        series.samples,
        onset_ms.saturating_sub(m.baseline_ms),
        onset_ms,
    );
    let test = slice(
        series.samples,
        onset_ms,
        onset_ms.saturating_add(m.window_ms),
    );
    let (level, spread) = robust(base, m.min_baseline, m.rel_floor, buf)?;
    let role = series.role;
    let harmful = role.harmful(series.metric);
    // Signed deviation on the harmful side (for `Both`, the larger side).
    let side = |x: f64| -> (f64, bool) {
        let d = (x - level) / spread;
        match harmful {
            Direction::Up => (d, true),
            Direction::Down => (-d, false),
            Direction::Both => (d.abs(), d >= 0.0),
        }
    };
    let mut first = f64::NEG_INFINITY;
    let mut second = f64::NEG_INFINITY;
    let mut first_x = f64::NAN;
    let mut second_x = f64::NAN;
    let mut onset = None;
    let mut n = 0usize;
    for &(ts, x) in test.iter().filter(|p| p.1.is_finite()) {
        n += 1;
        let (d, _) = side(x);
        if onset.is_none() && d >= m.onset_z {
            onset = Some(ts);
        }
        if d > first {
            (second, second_x) = (first, first_x);
            (first, first_x) = (d, x);
        } else if d > second {
            (second, second_x) = (d, x);
        }
    }
    if n == 0 {
        return None;
    }
    let (d, x) = if m.sustained && n >= 2 {
        (second, second_x)
    } else {
        (first, first_x)
    };
    let (_, above) = side(x);
    Some(MetricEvidence {
        metric: series.metric.to_string(),
        role,
        harmful,
        above: if harmful == Direction::Both {
            above
        } else {
            x > level
        },
        baseline: level,
        spread,
        value: x,
        z: d.max(0.0),
        onset_ms: onset,
        weight: 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_names() {
        let cases = [
            ("cpu_usage_millicores", Role::Saturation),
            ("memory_usage_percent", Role::Saturation),
            ("client_latency_p99_seconds", Role::ClientLatency),
            ("server_latency_p90_seconds", Role::ServerLatency),
            ("http_request_duration_seconds", Role::ServerLatency),
            ("success_rate_percent", Role::Errors),
            ("http_errors_total", Role::Errors),
            ("workload_ops", Role::Traffic),
            ("syscall_read", Role::Io),
            ("network_transmit_bytes", Role::Io),
            ("node_cpu_usage_percent", Role::Host),
            ("node_network_receive_bytes", Role::Host),
            ("goroutines", Role::Other),
        ];
        for (name, role) in cases {
            assert_eq!(Role::of_metric(name), role, "{name}");
        }
        assert_eq!(
            Role::Errors.harmful("success_rate_percent"),
            Direction::Down
        );
        assert_eq!(Role::Errors.harmful("http_errors_total"), Direction::Up);
        assert_eq!(Role::Traffic.harmful("workload_ops"), Direction::Down);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    fn m() -> Measure {
        Measure {
            baseline_ms: 30 * 60_000,
            window_ms: 4 * 60_000,
            min_baseline: 5,
            rel_floor: 0.05,
            onset_z: 3.0,
            sustained: true,
        }
    }

    #[test]
    fn one_sided_and_sustained() {
        // 30 baseline samples around 10 (spread from the alternation), then
        // a sustained rise to 20 with one spike to 100.
        let mut s: Vec<(i64, f64)> = (0..30)
            .map(|i| (i * 60_000, 10.0 + if i % 2 == 0 { 0.5 } else { -0.5 }))
            .collect();
        for (k, x) in [20.0, 100.0, 20.0, 20.0].into_iter().enumerate() {
            s.push(((30 + k as i64) * 60_000, x));
        }
        let mut buf = Vec::new();
        let cpu = Series::new("svc", "cpu_usage_percent", &s);
        let e = measure(&cpu, 30 * 60_000, &m(), &mut buf).expect("scored");
        assert_eq!(e.value, 20.0, "the sustained value, not the spike");
        assert!(e.above && e.z > 10.0, "{e:?}");
        assert_eq!(e.onset_ms, Some(30 * 60_000));
        // The same move on a success rate is not harmful.
        let ok = Series::new("svc", "success_rate_percent", &s);
        let e = measure(&ok, 30 * 60_000, &m(), &mut buf).expect("scored");
        assert_eq!(e.z, 0.0);
        assert_eq!(e.onset_ms, None);
    }

    #[test]
    fn flat_baseline_uses_the_relative_floor() {
        let mut s: Vec<(i64, f64)> = (0..30).map(|i| (i * 60_000, 100.0)).collect();
        s.push((30 * 60_000, 101.0));
        s.push((31 * 60_000, 101.0));
        let mut buf = Vec::new();
        let e = measure(
            &Series::new("svc", "cpu_usage_percent", &s),
            30 * 60_000,
            &m(),
            &mut buf,
        )
        .expect("scored");
        assert!((e.spread - 5.0).abs() < 1e-12);
        assert!((e.z - 0.2).abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn too_little_baseline_is_not_scored() {
        let s: Vec<(i64, f64)> = (0..6).map(|i| (i * 60_000, 1.0)).collect();
        let mut buf = Vec::new();
        let e = measure(
            &Series::new("svc", "cpu_usage_percent", &s),
            4 * 60_000,
            &m(),
            &mut buf,
        );
        assert!(e.is_none());
    }
}
