//! Behaviour of the diagnosis on small synthetic incidents (seeded), the
//! shape of the development set's cases: web -> api -> db, one-minute
//! samples, 30 minutes of baseline, a fault at minute 30.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::*;
use crate::Direction;

const MIN: i64 = 60_000;
const ONSET: i64 = 30 * MIN;

type Samples = Vec<(i64, f64)>;

/// A synthetic system: per (service, metric) its samples.
struct Case {
    series: Vec<(String, String, Samples)>,
}

impl Case {
    fn series(&self) -> Vec<Series<'_>> {
        self.series
            .iter()
            .map(|(s, m, v)| Series::new(s, m, v))
            .collect()
    }
}

/// `web -> api -> db` with CPU, memory, server and client latency per
/// service. `fault` says which service degrades from minute 30 for three
/// minutes and how: "cpu" saturates it (its latency rises and spreads to
/// its callers), "delay" adds latency only (callers' client latency rises,
/// its own metrics barely move).
fn shop(seed: u64, fault: Option<(&str, &str)>) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 1.0).expect("valid");
    let services = ["web", "api", "db"];
    let mut series = Vec::new();
    for (k, svc) in services.iter().enumerate() {
        let (cpu0, lat0) = (20.0 + 5.0 * k as f64, 0.05 + 0.02 * k as f64);
        let mut cpu = Vec::new();
        let mut mem = Vec::new();
        let mut srv = Vec::new();
        let mut cli = Vec::new();
        for i in 0..36i64 {
            // Each pod is scraped a little off the minute, as in the data.
            let ts = i * MIN + rng.gen_range(0..2000);
            let in_fault = (30..33).contains(&i);
            let at = |s: &str| in_fault && fault.is_some_and(|f| f.0 == s);
            // Is a callee (transitively) of this service faulty?
            let below = services[k + 1..].iter().any(|s| at(s));
            let (mut c, mut l) = (
                cpu0 + noise.sample(&mut rng),
                lat0 * (1.0 + 0.1 * noise.sample(&mut rng)),
            );
            let mut lc = if k < 2 {
                lat0 * 0.8 * (1.0 + 0.1 * noise.sample(&mut rng))
            } else {
                f64::NAN
            };
            if at(svc) {
                match fault.map(|f| f.1) {
                    Some("cpu") => {
                        c = 95.0 + noise.sample(&mut rng);
                        l *= 6.0;
                    }
                    _ => l *= 1.1,
                }
            }
            if below {
                lc *= 8.0;
                l *= 6.0;
            }
            cpu.push((ts, c));
            mem.push((ts, 300.0 + 2.0 * noise.sample(&mut rng)));
            srv.push((ts, l));
            if lc.is_finite() {
                cli.push((ts, lc));
            }
        }
        series.push((svc.to_string(), "cpu_usage_percent".to_string(), cpu));
        series.push((svc.to_string(), "memory_usage_mib".to_string(), mem));
        series.push((
            svc.to_string(),
            "server_latency_p95_seconds".to_string(),
            srv,
        ));
        if !cli.is_empty() {
            series.push((
                svc.to_string(),
                "client_latency_p95_seconds".to_string(),
                cli,
            ));
        }
    }
    Case { series }
}

fn topo() -> Topology {
    Topology::from_edges([("web", "api"), ("api", "db")]).expect("valid")
}

#[test]
fn a_saturated_database_is_the_cause_with_or_without_topology() {
    for seed in 0..20 {
        let case = shop(seed, Some(("db", "cpu")));
        let cfg = DiagnoseConfig::default();
        for t in [None, Some(&topo())] {
            let d = rank(&case.series(), t, ONSET, &cfg).expect("ranked");
            assert_eq!(
                d.ranking()[0],
                "db",
                "seed {seed}, topology {}",
                t.is_some()
            );
            let top = d.root_cause().expect("a suspect");
            let cpu = top
                .evidence
                .iter()
                .find(|e| e.metric == "cpu_usage_percent")
                .expect("cpu is evidence");
            assert!(cpu.above && cpu.z > 10.0, "{cpu:?}");
            assert_eq!(cpu.harmful, Direction::Up);
            assert!(cpu
                .onset_ms
                .is_some_and(|t| (ONSET..ONSET + MIN).contains(&t)));
        }
    }
}

#[test]
fn topology_explains_the_callers_latency_and_gives_the_path() {
    // A saturated db: its score (beyond the median service's) explains the
    // latency of api and web.
    let case = shop(7, Some(("db", "cpu")));
    let cfg = DiagnoseConfig {
        explain_latency: true,
        ..DiagnoseConfig::default()
    };
    let with = rank(&case.series(), Some(&topo()), ONSET, &cfg).expect("ranked");
    let api = with
        .suspects
        .iter()
        .find(|s| s.service == "api")
        .expect("api scored");
    assert_eq!(api.explained_by.as_deref(), Some("db"));
    assert!(api.explained > 0.0 && api.score < api.own + api.latency);
    let db = with
        .suspects
        .iter()
        .find(|s| s.service == "db")
        .expect("db scored");
    assert_eq!(db.path, vec!["web", "api", "db"]);
    // Without the topology nothing is explained and there is no path.
    let without = rank(&case.series(), None, ONSET, &cfg).expect("ranked");
    assert_eq!(without.suspects[0].path.len(), 1);
    let rank_of = |d: &Diagnosis, s: &str| d.ranking().iter().position(|x| *x == s);
    assert!(rank_of(&with, "db") <= rank_of(&without, "db"));
}

#[test]
fn the_timeline_is_in_onset_order() {
    let case = shop(3, Some(("db", "cpu")));
    let d = rank(
        &case.series(),
        Some(&topo()),
        ONSET,
        &DiagnoseConfig::default(),
    )
    .expect("ok");
    let t = d.timeline();
    assert!(!t.is_empty());
    assert!(t.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn a_quiet_system_has_no_strong_suspect() {
    let quiet = shop(11, None);
    let loud = shop(11, Some(("db", "cpu")));
    let cfg = DiagnoseConfig::default();
    let q = rank(&quiet.series(), None, ONSET, &cfg).expect("ok");
    let l = rank(&loud.series(), None, ONSET, &cfg).expect("ok");
    assert!(
        q.suspects[0].score * 2.0 < l.suspects[0].score,
        "{} vs {}",
        q.suspects[0].score,
        l.suspects[0].score
    );
}

#[test]
fn onsets_are_found_without_being_given() {
    for seed in 0..10 {
        let case = shop(seed, Some(("db", "cpu")));
        let found = find_onsets(
            &case.series(),
            0,
            36 * MIN,
            &DiagnoseConfig::default(),
            &OnsetConfig::default(),
        )
        .expect("ok");
        let last = found.last().expect("the fault is found");
        // Within a step of the fault; back-dating over a build-up can put
        // it one more step early (steps follow the samples' median spacing,
        // not the minute, so a step may start just before the minute).
        assert!(
            (ONSET - 2 * MIN..=ONSET + MIN).contains(&last.onset_ms),
            "seed {seed}: {found:?}"
        );
    }
}

#[test]
fn unsorted_samples_are_an_error_naming_the_series() {
    let v = vec![(2 * MIN, 1.0), (MIN, 2.0)];
    let s = [Series::new("db", "cpu_usage_percent", &v)];
    let e = rank(&s, None, MIN, &DiagnoseConfig::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "series cpu_usage_percent of service db: sample 1 is earlier than the one before it"
    );
}

#[test]
fn the_configuration_rejects_unknown_fields() {
    let e = serde_json::from_str::<DiagnoseConfig>(r#"{"window_secs": 60, "nope": 1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `nope`"), "{e}");
}

#[test]
fn diagnose_finds_the_onset_then_ranks() {
    let case = shop(5, Some(("db", "cpu")));
    let d = diagnose(
        &case.series(),
        &[],
        Some(&topo()),
        OnsetChoice::Detect {
            from_ms: 0,
            to_ms: 36 * MIN,
            min_after_ms: 2 * MIN,
        },
        &DiagnoseConfig::default(),
        &OnsetConfig::default(),
    )
    .expect("diagnosed");
    assert!(
        (ONSET - 2 * MIN..=ONSET + MIN).contains(&d.onset_ms),
        "{}",
        d.onset_ms
    );
    assert_eq!(d.ranking()[0], "db");
    let given = diagnose(
        &case.series(),
        &[],
        None,
        OnsetChoice::Given(ONSET),
        &DiagnoseConfig::default(),
        &OnsetConfig::default(),
    )
    .expect("diagnosed");
    assert_eq!(given.onset_ms, ONSET);
}

/// A system of `n` services, each with the metrics named, one sample a
/// minute for 36 minutes; `value(service, metric, minute, noise)` gives
/// each sample from a seeded standard normal draw.
fn system(
    seed: u64,
    n: usize,
    metrics: &[&str],
    value: impl Fn(usize, &str, i64, f64) -> f64,
) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 1.0).expect("valid");
    let mut series = Vec::new();
    for k in 0..n {
        for m in metrics {
            let v = (0..36i64)
                .map(|i| {
                    let ts = i * MIN + rng.gen_range(0..2000);
                    (ts, value(k, m, i, noise.sample(&mut rng)))
                })
                .collect();
            series.push((format!("svc{k}"), m.to_string(), v));
        }
    }
    Case { series }
}

#[test]
fn calibration_weighs_a_move_by_how_rare_it_is_for_its_metric() {
    // Every service's CPU bursts now and then (two minutes at +12 every
    // seven minutes, at its own phase, and only svc3 at the onset, by
    // +10); memory never moves. At the onset svc3's CPU bursts as usual
    // while svc5's memory rises by a tenth.
    for seed in 0..10 {
        let case = system(
            seed,
            8,
            &["cpu_usage_percent", "memory_usage_mib"],
            |k, m, i, z| {
                if m.starts_with("cpu") {
                    let usual = (i + 3 * k as i64) % 7 < 2 && i < 28;
                    let now = k == 3 && (30..32).contains(&i);
                    50.0 + z
                        + if usual {
                            12.0
                        } else if now {
                            10.0
                        } else {
                            0.0
                        }
                } else {
                    let up = k == 5 && i >= 30;
                    300.0 * if up { 1.1 } else { 1.0 } + 0.5 * z
                }
            },
        );
        let pos = |d: &Diagnosis, s: &str| d.ranking().iter().position(|x| *x == s);
        let calibrated = rank(&case.series(), None, ONSET, &DiagnoseConfig::default()).expect("ok");
        let evidence = |d: &Diagnosis, s: &str, m: &str| -> MetricEvidence {
            d.suspects
                .iter()
                .find(|x| x.service == s)
                .and_then(|x| x.evidence.iter().find(|e| e.metric == m))
                .cloned()
                .expect("evidence")
        };
        let mem = evidence(&calibrated, "svc5", "memory_usage_mib");
        let cpu = evidence(&calibrated, "svc3", "cpu_usage_percent");
        // The burst is usual, the memory's move unheard of.
        assert!(
            mem.surprise > cpu.surprise + 2.0,
            "seed {seed}: {cpu:?} {mem:?}"
        );
        assert!(
            pos(&calibrated, "svc5") < pos(&calibrated, "svc3"),
            "seed {seed}"
        );
        let raw = rank(
            &case.series(),
            None,
            ONSET,
            &DiagnoseConfig {
                calibrate: false,
                ..DiagnoseConfig::default()
            },
        )
        .expect("ok");
        // By deviation alone the burst, larger in spreads, weighs more.
        let (mem, cpu) = (
            evidence(&raw, "svc5", "memory_usage_mib"),
            evidence(&raw, "svc3", "cpu_usage_percent"),
        );
        assert!(
            cpu.above && cpu.contribution() > mem.contribution(),
            "seed {seed}: {cpu:?} {mem:?}"
        );
    }
}

#[test]
fn a_fall_counts_when_both_sides_do() {
    // svc2 restarts at the onset: its memory falls to a third and stays
    // there; nothing else moves.
    for seed in 0..10 {
        let case = system(
            seed,
            6,
            &["cpu_usage_percent", "memory_usage_mib"],
            |k, m, i, z| {
                if m.starts_with("cpu") {
                    40.0 + z
                } else if k == 2 && i >= 30 {
                    100.0 + z
                } else {
                    300.0 + z
                }
            },
        );
        let both = rank(&case.series(), None, ONSET, &DiagnoseConfig::default()).expect("ok");
        assert_eq!(both.ranking()[0], "svc2", "seed {seed}");
        let e = &both.suspects[0].evidence[0];
        assert!(!e.above && e.harmful == Direction::Up, "{e:?}");
        let harmful = rank(
            &case.series(),
            None,
            ONSET,
            &DiagnoseConfig {
                sides: Sides::Harmful,
                ..DiagnoseConfig::default()
            },
        )
        .expect("ok");
        let svc2 = harmful
            .suspects
            .iter()
            .find(|s| s.service == "svc2")
            .expect("scored");
        assert!(svc2.score < both.suspects[0].score / 3.0, "seed {seed}");
    }
}

#[test]
fn callees_serving_less_point_at_their_caller() {
    // svc0 calls svc1..svc4, which nobody else calls. At the onset svc0
    // fails fast: its own metrics barely move, its callees' traffic falls
    // by half.
    let edges: Vec<(String, String)> = (1..5).map(|k| ("svc0".into(), format!("svc{k}"))).collect();
    let t =
        Topology::from_edges(edges.iter().map(|(a, b)| (a.as_str(), b.as_str()))).expect("valid");
    let mut first = 0;
    for seed in 0..10 {
        let case = system(
            seed,
            6,
            &["workload_ops", "cpu_usage_percent"],
            |k, m, i, z| {
                let falls = (1..5).contains(&k) && i >= 30 && m == "workload_ops";
                (if m == "workload_ops" { 100.0 } else { 30.0 }) * if falls { 0.5 } else { 1.0 } + z
            },
        );
        let cfg = DiagnoseConfig {
            callee_traffic: 1.0,
            ..DiagnoseConfig::default()
        };
        let d = rank(&case.series(), Some(&t), ONSET, &cfg).expect("ok");
        first += usize::from(d.ranking()[0] == "svc0");
        let without = rank(&case.series(), None, ONSET, &cfg).expect("ok");
        assert_ne!(without.ranking()[0], "svc0", "seed {seed}");
    }
    assert!(first >= 8, "svc0 first in {first} of 10");
}

#[test]
fn the_detected_onset_is_the_new_fault_not_an_earlier_recovery() {
    // svc1's CPU is saturated from minute 20 to 24, then recovers; svc4's
    // CPU is saturated from minute 30 to 33. Searching the last ten minutes finds 30
    // (within the two minutes over which a window of four already holds
    // two samples of the fault), not the recovery at 24. The metrics
    // wander by a tenth of their level, as most do. (Which service the
    // ranking then names is the business of the other tests: with two
    // metrics a service and an earlier saturation of the same kind in the
    // baseline, a wandering memory can be as rare as the new saturation.)
    for seed in 0..10 {
        let case = system(
            seed,
            6,
            &["cpu_usage_percent", "memory_usage_mib"],
            |k, m, i, z| {
                let hot = (k == 1 && (20..24).contains(&i)) || (k == 4 && (30..33).contains(&i));
                if m.starts_with("cpu") {
                    if hot {
                        95.0 + z
                    } else {
                        30.0 + 3.0 * z
                    }
                } else {
                    200.0 + 20.0 * z
                }
            },
        );
        let d = diagnose(
            &case.series(),
            &[],
            None,
            OnsetChoice::Detect {
                from_ms: 26 * MIN,
                to_ms: 36 * MIN,
                min_after_ms: 2 * MIN,
            },
            &DiagnoseConfig::default(),
            &OnsetConfig::default(),
        )
        .expect("ok");
        assert!(
            (ONSET - 2 * MIN - MIN / 10..=ONSET + MIN + MIN / 10).contains(&d.onset_ms),
            "seed {seed}: {}",
            (d.onset_ms - ONSET) as f64 / MIN as f64
        );
    }
}
