//! Write throughput of the incident store, and its size on disk per incident.
//!
//! `cargo bench -p store --bench store`. Each benchmark runs on both
//! backends: a real SQLite file on the disk `target/` is on (not a tmpfs:
//! fsync must cost what it costs), and a real PostgreSQL server of the
//! bench's own (`lab::postgres`, Debian's `postgresql`, a new cluster for
//! each store, on loopback, default settings: every commit flushed). Incidents come from a seeded generator: 500 services, one to
//! three planned steps each (about half performed, with a verification),
//! four labels, an output of about 200 bytes per execution.
//!
//! What each benchmark stresses:
//! - `incidents/writer`: what `heal watch` does: incident snapshots and
//!   their engine events through [`StoreWriter`], which batches whatever
//!   queued up into one transaction (`synchronous=NORMAL`: no fsync per
//!   commit). Elements are incidents (with their steps and events).
//! - `incidents/one_transaction_each`: [`Store::record_incident`], one
//!   commit per incident: the cost without batching.
//! - `executions/begin_finish`: the two-phase journal, one action begun
//!   (committed with `synchronous=FULL`, an fsync) and finished (NORMAL).
//!   Elements are actions.
//!
//! After the benchmarks it prints the size on disk per incident: 10,000
//! incidents with their events and executions, file plus WAL after a
//! checkpoint, divided by 10,000.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use remediate::action::{ActionResult, RenderedAction};
use remediate::engine::{
    Decision, EngineEvent, Incident, Outcome, PlannedAction, SuppressReason, Verification,
};
use remediate::runbook::{ActionKind, Severity};
use store::{ActionKey, Store, StoreWriter};

const T0: i64 = 1_772_323_200_000;
const MIN: i64 = 60_000;

/// Incident number `n` (ids from `inc-{n}`), seeded by `n`.
fn incident(n: u64) -> Incident {
    let mut rng = StdRng::seed_from_u64(n);
    let service = format!("svc-{:03}", rng.gen_range(0..500));
    let opened_ms = T0 + n as i64 * 1000;
    let steps = rng.gen_range(1..=3usize);
    let actions = (1..=steps)
        .map(|step| {
            let rendered = RenderedAction::Exec {
                argv: vec!["heal-lab".into(), "restart".into(), service.clone()],
            };
            let performed = rng.gen_bool(0.5);
            PlannedAction {
                step,
                kind: ActionKind::Exec,
                summary: rendered.summary(),
                rendered: Some(rendered),
                decision: if performed {
                    Decision::allowed("no guard held it back".into())
                } else {
                    Decision::suppressed(
                        SuppressReason::Cooldown,
                        format!("this rule acted on {service:?} 2m ago; cooldown 10m"),
                    )
                },
                planned_ms: opened_ms + step as i64 * MIN,
                verification: performed.then(|| Verification {
                    outcome: if rng.gen_bool(0.7) {
                        Outcome::Recovered
                    } else {
                        Outcome::NotRecovered
                    },
                    decided_ms: opened_ms + step as i64 * MIN + 30_000,
                    detail: "anomaly cleared after the 30s wait".into(),
                }),
                timeout: None,
            }
        })
        .collect();
    Incident {
        id: format!("inc-{n:06}"),
        series: BTreeMap::from([
            ("__name__".into(), "http_error_ratio".into()),
            ("service".into(), service.clone()),
            (
                "instance".into(),
                format!(
                    "10.0.{}.{}:8080",
                    rng.gen_range(0..4),
                    rng.gen_range(1..250)
                ),
            ),
            ("job".into(), "lab".into()),
        ]),
        service,
        signal: "http_error_ratio".into(),
        rule: "error-ratio-high".into(),
        description: Some("Error ratio above 10 %: restart the service.".into()),
        severity: Severity::Critical,
        above: true,
        onset_ms: opened_ms - 2000,
        opened_ms,
        peak_score: rng.gen_range(0.4..1.0),
        peer_z: None,
        chain_len: steps,
        actions,
        resolved_ms: Some(opened_ms + 5 * MIN),
        unresolved_at_ms: None,
        diagnosis: None,
    }
}

/// The events the engine would have sent for `inc`.
fn events(inc: &Incident) -> Vec<EngineEvent> {
    let mut out = vec![EngineEvent::Opened {
        incident: inc.id.clone(),
        rule: inc.rule.clone(),
        series: remediate::engine::series_selector(&inc.series),
        severity: inc.severity,
        ts_ms: inc.opened_ms,
    }];
    for a in &inc.actions {
        out.push(EngineEvent::Planned {
            incident: inc.id.clone(),
            action: a.clone(),
        });
        if let Some(v) = &a.verification {
            out.push(EngineEvent::Verified {
                incident: inc.id.clone(),
                step: a.step,
                verification: v.clone(),
            });
        }
    }
    out.push(EngineEvent::Resolved {
        incident: inc.id.clone(),
        ts_ms: inc.resolved_ms.unwrap_or(inc.opened_ms),
    });
    out
}

fn result() -> ActionResult {
    ActionResult {
        ok: true,
        retryable: false,
        summary: "exit status 0".into(),
        output: "restarted svc (pid 4242 -> 4243) after 180 ms; listening on 127.0.0.1:8080\n"
            .repeat(3),
        duration: Duration::from_millis(180),
    }
}

/// Where a benchmark's store is; kept alive as long as the store.
enum At {
    File(tempfile::TempDir),
    Postgres(lab::postgres::PgServer),
}

impl At {
    fn new(backend: &str, tmp: &str) -> At {
        match backend {
            "sqlite" => At::File(tempfile::tempdir_in(tmp).unwrap()),
            _ => At::Postgres(lab::postgres::PgServer::start().expect("starting PostgreSQL")),
        }
    }

    fn open(&self) -> Store {
        let db = match self {
            At::File(dir) => dir.path().join("heal.db"),
            At::Postgres(server) => server.url().into(),
        };
        Store::open(db).expect("opening the store").store
    }
}

const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

fn bench(c: &mut Criterion) {
    let tmp = env!("CARGO_TARGET_TMPDIR");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("incidents");
    group.sample_size(10);
    for backend in BACKENDS {
        for n in [100u64, 1000] {
            let batch: Vec<Incident> = (1..=n).map(incident).collect();
            // Elements are incidents (each written with its steps and
            // events): criterion's elements/s is the README's "incidents
            // per second".
            group.throughput(Throughput::Elements(n));

            let at = At::new(backend, tmp);
            let (writer, thread) = StoreWriter::spawn(at.open(), 1024).unwrap();
            let mut next = 0u64;
            group.bench_with_input(
                BenchmarkId::new(format!("writer/{backend}"), n),
                &batch,
                |b, batch| {
                    b.iter(|| {
                        runtime.block_on(async {
                            for inc in batch {
                                // A new id each time: inserts, as in real life.
                                next += 1;
                                let mut inc = inc.clone();
                                inc.id = format!("inc-{next:08}");
                                for e in events(&inc) {
                                    writer.event(e).await.unwrap();
                                }
                                writer.incident(inc).await.unwrap();
                            }
                            writer.flush().await.unwrap();
                        })
                    })
                },
            );
            drop(writer);
            thread.join();

            let at = At::new(backend, tmp);
            let mut store = at.open();
            let mut next = 0u64;
            group.bench_with_input(
                BenchmarkId::new(format!("one_transaction_each/{backend}"), n),
                &batch,
                |b, batch| {
                    b.iter(|| {
                        for inc in batch {
                            next += 1;
                            let mut inc = inc.clone();
                            inc.id = format!("inc-{next:08}");
                            store.record_incident(&inc).unwrap();
                        }
                    })
                },
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("executions");
    group.sample_size(10);
    let n = 100u64;
    group.throughput(Throughput::Elements(n));
    for backend in BACKENDS {
        let at = At::new(backend, tmp);
        let mut store = at.open();
        let mut next = 0u64;
        group.bench_function(
            BenchmarkId::new(format!("begin_finish/{backend}"), n),
            |b| {
                b.iter(|| {
                    for _ in 0..n {
                        next += 1;
                        let key = ActionKey::new(format!("inc-{next:08}"), 1, 1);
                        store
                            .begin_action(&key, "exec heal-lab restart svc-001", T0)
                            .unwrap();
                        store.finish_action(&key, &result(), T0 + 180).unwrap();
                    }
                })
            },
        );
    }
    group.finish();

    size_per_incident(tmp);
}

/// Bytes on disk per incident with everything heal writes about it.
fn size_per_incident(tmp: &str) {
    const N: u64 = 10_000;
    let at = At::new("sqlite", tmp);
    let mut store = at.open();
    let incidents: Vec<Incident> = (1..=N).map(incident).collect();
    let events: Vec<EngineEvent> = incidents.iter().flat_map(events).collect();
    store.record_batch(&incidents, &events).unwrap();
    let mut executions = 0;
    for inc in &incidents {
        for a in inc.actions.iter().filter(|a| a.decision.allowed) {
            let key = ActionKey::new(inc.id.clone(), a.step, 1);
            store.begin_action(&key, &a.summary, T0).unwrap();
            store.finish_action(&key, &result(), T0 + 180).unwrap();
            executions += 1;
        }
    }
    store.checkpoint().unwrap();
    let bytes = store.size_on_disk().expect("a SQLite file");
    let actions: usize = incidents.iter().map(|i| i.actions.len()).sum();
    println!(
        "store size: {N} incidents, {actions} planned actions, {executions} executions, {} events: {bytes} bytes on disk (file + WAL after checkpoint), {} bytes per incident",
        events.len(),
        bytes / N
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
