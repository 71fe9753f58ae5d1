//! `heal bench storm`: an action storm against the guardrails.
//!
//! 10,000 anomalies across 500 services (20 instances each) within one
//! minute of event time reach the rule engine, each one a series firing.
//! The bench checks, from the decisions the engine recorded, that what it
//! allowed stays within the configured limits (actions per minute,
//! concurrency, blast radius) and that every step it held back carries a
//! reason, and it measures the decision latency: from the anomaly handed to
//! the engine to its decision written to the decision log (JSON Lines,
//! flushed per anomaly).
//!
//! The engine is the same one `heal watch` runs; only the detectors are left
//! out (each anomaly is an excursion handed straight to the engine), so the
//! figure is the decision stage's own.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::Context;
use detect::{Excursion, Scored};
use remediate::engine::{EngineEvent, Observation};
use remediate::{Engine, EngineOptions, RunbookSet};
use serde::Serialize;

use crate::{Error, Result};

/// The storm's size and where its records go (`heal bench storm`).
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// Services.
    pub services: u32,
    /// Instances per service.
    pub instances: u32,
    /// Event-time span the anomalies arrive in, seconds.
    pub seconds: u32,
    /// Where to write the decision log (a temporary file when left out).
    pub log: Option<PathBuf>,
    /// Also record every decision in an incident store (SQLite) at this
    /// path, one transaction per anomaly (its incident and the engine's
    /// events), inside the measured latency. The file must not exist yet.
    pub db: Option<PathBuf>,
}

const MAX_PER_MINUTE: u32 = 30;
const MAX_CONCURRENT: u32 = 50;
const MAX_INSTANCES: u32 = 2;
const MAX_PERCENT: f64 = 10.0;
const VERIFY_WAIT_S: i64 = 30;

fn runbook() -> String {
    format!(
        "signals:
  - name: storm_latency
    query: storm_latency
rules:
  - name: restart-instance
    when: {{signal: storm_latency, direction: up, for: 0s}}
    then:
      - action: exec
        argv: [/usr/bin/true, '{{{{service}}}}', '{{{{instance}}}}']
    guards: {{cooldown: 10m, max_attempts: 3, window: 1h}}
    verify: {{wait: {VERIFY_WAIT_S}s}}
guardrails:
  max_actions_per_minute: {MAX_PER_MINUTE}
  max_concurrent: {MAX_CONCURRENT}
  max_instances_per_service: {MAX_INSTANCES}
  max_percent_per_service: {MAX_PERCENT}
"
    )
}

#[derive(Serialize)]
struct Record<'a> {
    incident: &'a str,
    series: &'a str,
    ts_ms: i64,
    decision: &'a str,
    detail: &'a str,
}

/// Runs the storm and prints what held and the decision latency.
///
/// # Errors
///
/// A decision log or store that cannot be written, a limit that did not
/// hold.
pub fn run(args: StormConfig) -> Result<()> {
    let set = RunbookSet::from_sources(&[("storm.yaml".into(), runbook())]).map_err(Error::msg)?;
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: false,
            await_actions: false,
        },
    );
    let tmp;
    let log_path = match &args.log {
        Some(p) => p.clone(),
        None => {
            tmp = tempfile_path();
            tmp.clone()
        }
    };
    let mut store = match &args.db {
        Some(path) => {
            if path.exists() {
                return Err(Error::msg(format_args!(
                    "--db {}: the file exists; the bench wants a fresh store",
                    path.display()
                )));
            }
            Some(
                store::Store::open(path)
                    .map_err(|e| Error::Usage(e.to_string()))?
                    .store,
            )
        }
        None => None,
    };
    let file = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut log = std::io::BufWriter::new(file);

    // Every series fires once, spread evenly over the span, service by
    // service: all instances of a service break together (a bad deploy),
    // which is what the blast radius is for.
    let n = u64::from(args.services) * u64::from(args.instances);
    let t0: i64 = 1_772_323_200_000;
    let span_ms = i64::from(args.seconds) * 1000;
    let mut latencies = Vec::with_capacity(n as usize);
    let mut decisions: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut allowed_at: Vec<(i64, String, String)> = Vec::new();
    let mut steps = 0u64;
    let started = Instant::now();
    for k in 0..n {
        let j = k;
        let service = format!("svc-{:03}", j / u64::from(args.instances));
        let instance = format!("{service}-{}", j % u64::from(args.instances));
        let labels: BTreeMap<String, String> = [
            ("__name__", "storm_latency"),
            ("service", service.as_str()),
            ("instance", instance.as_str()),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let ts_ms = t0 + (k as i64 * span_ms) / n as i64;
        let obs = Observation {
            signal: "storm_latency",
            labels: &labels,
            ts_ms,
            value: 10.0,
            scored: Scored {
                score: 0.9,
                excursion: Some(Excursion {
                    onset_ms: ts_ms,
                    above: true,
                    peak_score: 0.9,
                    peer_z: None,
                    first: true,
                    in_band: false,
                    band: (f64::NEG_INFINITY, f64::INFINITY),
                }),
            },
        };
        let t = Instant::now();
        let events = engine.observe(&obs);
        let series = remediate::engine::series_selector(&labels);
        for e in &events {
            if let EngineEvent::Planned { incident, action } = e {
                steps += 1;
                *decisions.entry(action.decision.label()).or_default() += 1;
                if action.decision.allowed {
                    allowed_at.push((ts_ms, service.clone(), instance.clone()));
                }
                serde_json::to_writer(
                    &mut log,
                    &Record {
                        incident,
                        series: &series,
                        ts_ms,
                        decision: action.decision.label(),
                        detail: &action.decision.detail,
                    },
                )?;
                log.write_all(b"\n")?;
            }
        }
        log.flush()?;
        if let Some(store) = &mut store {
            let ids: Vec<&str> = events
                .iter()
                .filter_map(|e| match e {
                    EngineEvent::Opened { incident, .. } => Some(incident.as_str()),
                    _ => None,
                })
                .collect();
            let incidents: Vec<remediate::Incident> = ids
                .iter()
                .filter_map(|id| engine.incident(id).cloned())
                .collect();
            store.record_batch(&incidents, &events)?;
        }
        latencies.push(t.elapsed());
    }
    let wall = started.elapsed();
    drop(log);

    // Check the limits from what was allowed.
    let mut worst_minute = 0usize;
    for (i, (t, _, _)) in allowed_at.iter().enumerate() {
        let in_minute = allowed_at[i..]
            .iter()
            .take_while(|(u, _, _)| u - t < 60_000)
            .count();
        worst_minute = worst_minute.max(in_minute);
    }
    let wait = VERIFY_WAIT_S * 1000;
    let mut worst_concurrent = 0usize;
    let mut worst_per_service = 0usize;
    for (t, service, _) in &allowed_at {
        let live: Vec<&(i64, String, String)> = allowed_at
            .iter()
            .filter(|(u, _, _)| u <= t && t - u < wait)
            .collect();
        worst_concurrent = worst_concurrent.max(live.len());
        let mut per: HashMap<&str, usize> = HashMap::new();
        for (_, s, _) in &live {
            *per.entry(s.as_str()).or_default() += 1;
        }
        worst_per_service = worst_per_service.max(per.get(service.as_str()).copied().unwrap_or(0));
    }
    let suppressed: u64 = decisions
        .iter()
        .filter(|(k, _)| **k != "allowed")
        .map(|(_, v)| v)
        .sum();
    let with_reason = std::fs::read_to_string(&log_path)?
        .lines()
        .filter(|l| !l.contains("\"decision\":\"allowed\""))
        .filter(|l| !l.contains("\"detail\":\"\""))
        .count() as u64;

    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "action storm: {n} anomalies across {} services ({} instances each) within {} s of event time",
        args.services, args.instances, args.seconds
    );
    println!(
        "limits: {MAX_PER_MINUTE} actions/min, {MAX_CONCURRENT} concurrent, {MAX_INSTANCES} instances or {MAX_PERCENT}% per service, verify wait {VERIFY_WAIT_S} s"
    );
    println!("steps decided: {steps}");
    for (k, v) in &decisions {
        println!("  {k:<20} {v}");
    }
    println!(
        "allowed: worst 60 s window {worst_minute} (limit {MAX_PER_MINUTE}), worst concurrency {worst_concurrent} (limit {MAX_CONCURRENT}), worst per service {worst_per_service} (limit {MAX_INSTANCES})"
    );
    // A temporary log is removed below: its path is not worth printing.
    let where_logged = match &args.log {
        Some(path) => format!("decision log {}", path.display()),
        None => "decision log in a temporary file, removed; --log FILE keeps it".to_owned(),
    };
    println!(
        "suppressed: {suppressed}, recorded with a reason and detail: {with_reason} ({where_logged})"
    );
    let recorded_in = if let (Some(store), Some(path)) = (&store, &args.db) {
        let page = store.list(&store::IncidentFilter {
            limit: 1,
            ..Default::default()
        })?;
        if page.incidents.is_empty() {
            return Err(Error::msg("the store has no incident after the storm"));
        }
        format!("decision log and incident store {}", path.display())
    } else {
        "decision log".to_owned()
    };
    println!(
        "decision latency (anomaly in -> decision written to the {recorded_in}): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {:.0} anomalies/s",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        n as f64 / wall.as_secs_f64()
    );
    let ok = worst_minute <= MAX_PER_MINUTE as usize
        && worst_concurrent <= MAX_CONCURRENT as usize
        && worst_per_service <= MAX_INSTANCES as usize
        && with_reason == suppressed;
    if args.log.is_none() {
        let _ = std::fs::remove_file(&log_path);
    }
    if !ok {
        return Err(Error::msg(
            "a limit was exceeded or a suppression has no reason",
        ));
    }
    println!("every limit held; every suppression has its reason");
    Ok(())
}

fn tempfile_path() -> PathBuf {
    std::env::temp_dir().join(format!("heal-storm-{}.jsonl", std::process::id()))
}
