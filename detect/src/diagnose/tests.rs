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
