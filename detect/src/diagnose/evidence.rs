//! What one series says about its service around an onset: how far it moved
//! from its own recent baseline, on which side, and when.
//!
//! The statistic is the robust z-score that BARO's root-cause step uses
//! (Pham et al., FSE 2024: a scaler fitted on the samples before the onset,
//! the test samples scored against it; RCAEval `e2e/baro.py`), with changes
//! measured on the development set (see `/work/notes/issue13-log.md`):
//!
//! - **the level is where the series was just before the onset** (the
//!   median of the last `level_samples`), not the median of the whole
//!   baseline: the baseline of a busy system holds earlier incidents, and
//!   a series that one of them left at a new level (memory after a
//!   restart) has not moved *now*.
//! - **the spread is measured on step-to-step differences** (MAD of the
//!   differences over sqrt(2)), which a level shift inside the baseline
//!   inflates by one difference only, with a relative floor: at least
//!   `rel_floor` of the level, so that a series that was flat before the
//!   onset (a counter stuck at 0, a latency quantised to a few values) does
//!   not turn a one-unit wiggle into a z of millions.
//! - **both sides are measured**; which count is the ranking's choice
//!   (`DiagnoseConfig::sides`): a throttled or delayed service serves less,
//!   a code defect moves memory either way.
//! - **the second most extreme test sample** (the sustained move) rather than
//!   the most extreme one, so that one scrape landing mid-spike does not
//!   outrank a shift that lasts; with one test sample it is that sample.
//!
//! The same statistic at placebo onsets inside the baseline gives the null
//! a move is calibrated against ([`Null`]): its surprise is how rare it is
//! among the same metric's earlier moves. Uncalibrated, a move enters the
//! service's score as `ln(1 + z)`: the z of a series that was nearly
//! constant can be in the thousands, and summing raw z would let one such
//! series outweigh a service whose CPU, memory and latency all moved.

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
    /// The level is the median of this many samples just before the onset
    /// (0: of the whole baseline).
    pub level_samples: usize,
    /// The spread is measured on the baseline's step-to-step differences
    /// rather than on its values.
    pub diff_spread: bool,
    /// Also measure the series at earlier moments of the baseline (placebo
    /// onsets whose window ends before the onset), for calibration.
    pub placebo: bool,
}

/// How one series moved at one onset, on both sides, before calibration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Move {
    /// Level the test samples are compared with.
    pub level: f64,
    /// Spread of the baseline (see [`Measure`]).
    pub spread: f64,
    /// Sustained deviation above the level, in spreads (at least 0).
    pub up: f64,
    /// Sustained deviation below the level, in spreads (at least 0).
    pub down: f64,
    /// The test value scored above the level.
    pub up_value: f64,
    /// The test value scored below the level.
    pub down_value: f64,
    /// First test sample at least `onset_z` spreads above the level.
    pub up_onset: Option<i64>,
    /// First test sample at least `onset_z` spreads below the level.
    pub down_onset: Option<i64>,
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
    /// Whether the scored test value lies above the level.
    pub above: bool,
    /// Level before the onset (median of the samples just before it).
    pub baseline: f64,
    /// Baseline spread (see `DiagnoseConfig::diff_spread`; at least
    /// `rel_floor` of the level).
    pub spread: f64,
    /// The test value scored (see the module docs).
    pub value: f64,
    /// Deviation in spreads on the side scored (0 when it did not move
    /// that way).
    pub z: f64,
    /// How rare a move of `z` is for this metric: `-ln` of the share of
    /// the metric's moves at earlier moments (placebo onsets in the
    /// baseline, pooled over services) at least as large, growing with
    /// `ln(1 + z)` beyond the largest of them; `ln(1 + z)` when not
    /// calibrated.
    pub surprise: f64,
    /// First test sample at or beyond `onset_z` on the side scored.
    pub onset_ms: Option<i64>,
    /// Weight of this evidence in its service's score (the role's weight,
    /// divided among the services that share the series, e.g. a host).
    pub weight: f64,
}

impl MetricEvidence {
    /// This evidence's contribution to its service's score:
    /// `weight * surprise`.
    pub fn contribution(&self) -> f64 {
        self.weight * self.surprise
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

/// Scratch space of [`measure`], reused across series.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    base: Vec<(i64, f64)>,
    values: Vec<f64>,
}

/// The sustained deviations of `test` from `level` on both sides.
fn deviations(test: &[(i64, f64)], level: f64, spread: f64, m: &Measure) -> Option<Move> {
    // (first, second) most extreme deviation and their values, per side.
    let mut up = [(f64::NEG_INFINITY, f64::NAN); 2];
    let mut down = [(f64::NEG_INFINITY, f64::NAN); 2];
    let (mut up_onset, mut down_onset) = (None, None);
    let mut n = 0usize;
    let keep = |best: &mut [(f64, f64); 2], d: f64, x: f64| {
        if d > best[0].0 {
            best[1] = best[0];
            best[0] = (d, x);
        } else if d > best[1].0 {
            best[1] = (d, x);
        }
    };
    for &(ts, x) in test.iter().filter(|p| p.1.is_finite()) {
        n += 1;
        let d = (x - level) / spread;
        if up_onset.is_none() && d >= m.onset_z {
            up_onset = Some(ts);
        }
        if down_onset.is_none() && -d >= m.onset_z {
            down_onset = Some(ts);
        }
        keep(&mut up, d, x);
        keep(&mut down, -d, x);
    }
    if n == 0 {
        return None;
    }
    let k = usize::from(m.sustained && n >= 2);
    Some(Move {
        level,
        spread,
        up: up[k].0.max(0.0),
        down: down[k].0.max(0.0),
        up_value: up[k].1,
        down_value: down[k].1,
        up_onset,
        down_onset,
    })
}

/// How `series` moved at `onset_ms`, or `None` when it has too few
/// baseline samples or no test sample. With `m.placebo`, the moves at the
/// placebo onsets (each baseline sample with `level_samples` before it and
/// a whole window before the onset) are appended to `null` as
/// `(up, down)`, measured with the same spread.
pub(crate) fn measure(
    series: &Series<'_>,
    onset_ms: i64,
    m: &Measure,
    scratch: &mut Scratch,
    null: Option<&mut Vec<(f64, f64)>>,
) -> Option<Move> {
    let base = &mut scratch.base;
    base.clear();
    base.extend(
        slice(
            series.samples,
            onset_ms.saturating_sub(m.baseline_ms),
            onset_ms,
        )
        .iter()
        .filter(|p| p.1.is_finite()),
    );
    let test = slice(
        series.samples,
        onset_ms,
        onset_ms.saturating_add(m.window_ms),
    );
    if base.len() < m.min_baseline.max(1) || test.is_empty() {
        return None;
    }
    let buf = &mut scratch.values;
    // Spread: MAD of the values, or of the step-to-step differences (which
    // a level shift earlier in the baseline, such as an earlier incident
    // and its recovery, inflates by one difference only) scaled to one
    // value's spread: the difference of two independent values has
    // sqrt(2) times their spread.
    let mad = if m.diff_spread && base.len() >= 3 {
        buf.clear();
        buf.extend(base.windows(2).map(|w| (w[1].1 - w[0].1).abs()));
        median(buf) * MAD_TO_SIGMA / std::f64::consts::SQRT_2
    } else {
        buf.clear();
        buf.extend(base.iter().map(|p| p.1));
        let level = median(buf);
        for x in buf.iter_mut() {
            *x = (*x - level).abs();
        }
        median(buf) * MAD_TO_SIGMA
    };
    let level_of = |upto: usize, buf: &mut Vec<f64>| {
        let from = if m.level_samples == 0 {
            0
        } else {
            upto.saturating_sub(m.level_samples)
        };
        buf.clear();
        buf.extend(base[from..upto].iter().map(|p| p.1));
        median(buf)
    };
    let spread_at = |level: f64| mad.max(m.rel_floor * level.abs()).max(1e-9);
    let level = level_of(base.len(), buf);
    let mv = deviations(test, level, spread_at(level), m)?;
    if let Some(null) = null.filter(|_| m.placebo && m.level_samples > 0) {
        // The level of each placebo onset is the median of the
        // `level_samples` before it: a sorted sliding window (one removal
        // and one insertion per step) rather than a median per onset.
        let k = m.level_samples;
        let win = &mut scratch.values;
        win.clear();
        if base.len() > k {
            win.extend(base[..k].iter().map(|p| p.1));
            win.sort_unstable_by(f64::total_cmp);
        }
        for i in k..base.len() {
            let t = base[i].0;
            let end = t.saturating_add(m.window_ms);
            if end > onset_ms {
                break;
            }
            if i > k {
                let old = base[i - k - 1].1;
                let at = win.partition_point(|x| x.total_cmp(&old).is_lt());
                win.remove(at);
                let new = base[i - 1].1;
                let at = win.partition_point(|x| x.total_cmp(&new).is_lt());
                win.insert(at, new);
            }
            let lv = if k % 2 == 1 {
                win[k / 2]
            } else {
                0.5 * (win[k / 2 - 1] + win[k / 2])
            };
            let j = i + base[i..].partition_point(|p| p.0 < end);
            if let Some(p) = deviations(&base[i..j], lv, spread_at(lv), m) {
                null.push((p.up, p.down));
            }
        }
    }
    Some(mv)
}

/// The moves of one metric at earlier moments, pooled over services: the
/// null distribution a move at the onset is calibrated against.
#[derive(Debug, Default, Clone)]
pub(crate) struct Null {
    up: Vec<f64>,
    down: Vec<f64>,
}

impl Null {
    /// From `(up, down)` pairs.
    pub fn new(pairs: &[(f64, f64)]) -> Self {
        let mut up: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let mut down: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        up.sort_unstable_by(f64::total_cmp);
        down.sort_unstable_by(f64::total_cmp);
        Null { up, down }
    }

    /// Number of earlier moves.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.up.len()
    }

    /// `-ln` of the (add-one) share of earlier moves on that side at least
    /// `z`: 0 for a move no larger than the smallest, `ln(1 + n)` for one
    /// just larger than all `n`, and `ln((1 + z) / (1 + max))` more for one
    /// larger than the largest `max`.
    pub fn surprise(&self, z: f64, up: bool) -> f64 {
        let v = if up { &self.up } else { &self.down };
        let ge = v.len() - v.partition_point(|x| *x < z);
        let s = -(((1 + ge) as f64) / ((1 + v.len()) as f64)).ln();
        // Beyond every earlier move the share cannot fall further: the
        // surprise then grows with the move's size over the largest
        // earlier one, on the `ln(1 + z)` scale of uncalibrated scores, so
        // that a CPU at four times its level still outweighs one barely
        // beyond its usual bursts.
        let max = v.last().copied().unwrap_or(0.0).max(0.0);
        if ge == 0 && z > max {
            s + z.ln_1p() - max.ln_1p()
        } else {
            s
        }
    }
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
            level_samples: 0,
            diff_spread: false,
            placebo: false,
        }
    }

    #[test]
    fn both_sides_and_sustained() {
        // 30 baseline samples around 10 (spread from the alternation), then
        // a sustained rise to 20 with one spike to 100.
        let mut s: Vec<(i64, f64)> = (0..30)
            .map(|i| (i * 60_000, 10.0 + if i % 2 == 0 { 0.5 } else { -0.5 }))
            .collect();
        for (k, x) in [20.0, 100.0, 20.0, 20.0].into_iter().enumerate() {
            s.push(((30 + k as i64) * 60_000, x));
        }
        let mut scratch = Scratch::default();
        let cpu = Series::new("svc", "cpu_usage_percent", &s);
        let mv = measure(&cpu, 30 * 60_000, &m(), &mut scratch, None).expect("scored");
        assert_eq!(mv.up_value, 20.0, "the sustained value, not the spike");
        assert!(mv.up > 10.0, "{mv:?}");
        assert_eq!(mv.down, 0.0);
        assert_eq!(mv.up_onset, Some(30 * 60_000));
        assert_eq!(mv.down_onset, None);
    }

    #[test]
    fn flat_baseline_uses_the_relative_floor() {
        let mut s: Vec<(i64, f64)> = (0..30).map(|i| (i * 60_000, 100.0)).collect();
        s.push((30 * 60_000, 101.0));
        s.push((31 * 60_000, 101.0));
        let mut scratch = Scratch::default();
        let mv = measure(
            &Series::new("svc", "cpu_usage_percent", &s),
            30 * 60_000,
            &m(),
            &mut scratch,
            None,
        )
        .expect("scored");
        assert!((mv.spread - 5.0).abs() < 1e-12);
        assert!((mv.up - 0.2).abs() < 1e-12, "{mv:?}");
    }

    #[test]
    fn a_recent_level_and_difference_spread_ignore_an_earlier_shift() {
        // Memory at 100 for 20 minutes, then (an earlier incident's
        // restart) at 50 for 10 minutes, then unchanged after the onset:
        // measured from the whole baseline this is a fall of 50; from the
        // recent level, no move at all.
        let mut s: Vec<(i64, f64)> = (0..36)
            .map(|i| {
                let x = if i < 20 { 100.0 } else { 50.0 };
                (i * 60_000, x + 0.5 * ((i * 7 % 5) as f64 - 2.0))
            })
            .collect();
        s.sort_by_key(|p| p.0);
        let mut scratch = Scratch::default();
        let ser = Series::new("svc", "memory_usage_mib", &s);
        let whole = measure(&ser, 30 * 60_000, &m(), &mut scratch, None).expect("scored");
        assert!(whole.down > 3.0, "{whole:?}");
        let recent = Measure {
            level_samples: 5,
            diff_spread: true,
            ..m()
        };
        let mv = measure(&ser, 30 * 60_000, &recent, &mut scratch, None).expect("scored");
        assert!(mv.down < 3.0 && mv.up < 3.0, "{mv:?}");
    }

    #[test]
    fn placebo_moves_come_from_whole_windows_before_the_onset() {
        let s: Vec<(i64, f64)> = (0..36).map(|i| (i * 60_000, (i % 3) as f64)).collect();
        let mut scratch = Scratch::default();
        let mut null = Vec::new();
        let cfg = Measure {
            level_samples: 5,
            placebo: true,
            ..m()
        };
        let ser = Series::new("svc", "cpu_usage_percent", &s);
        measure(&ser, 30 * 60_000, &cfg, &mut scratch, Some(&mut null)).expect("scored");
        // Onsets at minutes 5..=26: a level of 5 samples before, a whole
        // 4-minute window before minute 30.
        assert_eq!(null.len(), 22);
        let n = Null::new(&null);
        assert_eq!(n.len(), 22);
        assert_eq!(n.surprise(-1.0, true), 0.0);
        let max = null.iter().map(|p| p.0).fold(0.0, f64::max);
        let beyond = |z: f64| n.surprise(z, true);
        assert!((beyond(max + 1e-9) - 23f64.ln()).abs() < 1e-6);
        assert!(beyond(10.0 * max + 9.0) > beyond(max + 1.0));
    }

    #[test]
    fn too_little_baseline_is_not_scored() {
        let s: Vec<(i64, f64)> = (0..6).map(|i| (i * 60_000, 1.0)).collect();
        let mut scratch = Scratch::default();
        let e = measure(
            &Series::new("svc", "cpu_usage_percent", &s),
            4 * 60_000,
            &m(),
            &mut scratch,
            None,
        );
        assert!(e.is_none());
    }
}
