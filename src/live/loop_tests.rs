//! The live loop in-process: the decider and the act stage wired as
//! [`super::run`] wires them, fed the evaluations a source would send,
//! against a real incident store (SQLite in a temporary directory) and a
//! real program as the action (`touch`). No Prometheus: what the sources
//! do is `ingest`'s tests' business; here it is what the loop does with
//! their evaluations.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use executors::Executors;
use ingest::{Evaluation, Labels, SourceEvent};
use remediate::{EngineOptions, RunbookSet};
use stdx::ManualClock;
use store::Store;
use tokio::sync::mpsc;

use super::act::{self, ActionJob};
use super::decide::Decider;
use super::Command;
use crate::pipeline::Pipeline;
use crate::telemetry::Telemetry;

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;

/// One signal with a hard limit (fires without history) and one rule
/// whose one step touches `marker`.
fn runbooks(marker: &Path) -> RunbookSet {
    let text = format!(
        "signals:
  - name: lat
    query: lat
    detector: {{direction: up, limit_above: 10}}
rules:
  - name: touch-on-latency
    when: {{signal: lat, direction: up}}
    then:
      - action: exec
        argv: [touch, \"{}\"]
    verify: {{wait: 10m}}
",
        marker.display()
    );
    RunbookSet::from_sources(&[("r.yaml".into(), text)]).unwrap_or_else(|e| panic!("{e}"))
}

fn eval(ts_ms: i64, value: f64) -> SourceEvent {
    let labels = Labels::metric("lat")
        .with("service", "web")
        .with("instance", "web-0");
    SourceEvent::Evaluation(Evaluation {
        signal: "lat".into(),
        ts_ms,
        outcome: Ok(vec![(labels, value)]),
        duration_ms: 1,
        attempts: 1,
        truncated: 0,
        duplicates: 0,
    })
}

/// A decider running on a real store, with the channels `run` would give
/// it.
struct Loop {
    evals: mpsc::Sender<SourceEvent>,
    commands: mpsc::Sender<Command>,
    jobs: mpsc::Receiver<ActionJob>,
    telemetry: Arc<Telemetry>,
    decider: tokio::task::JoinHandle<()>,
    writer_thread: store::WriterThread,
    db: PathBuf,
    store: store::StoreWriter,
}

fn start(dir: &Path) -> Loop {
    let db = dir.join("heal.db");
    let opened = crate::tuning::open_store(&db).unwrap();
    let (store, writer_thread) = store::StoreWriter::spawn(opened.store, 64).unwrap();
    let (evals, eval_rx) = mpsc::channel(16);
    let (commands, cmd_rx) = mpsc::channel(16);
    let (act_tx, jobs) = mpsc::channel(16);
    let telemetry = Arc::new(Telemetry::default());
    let decider = Decider {
        pipeline: Pipeline::new(
            runbooks(&dir.join("marker")),
            EngineOptions {
                dry_run: false,
                await_actions: false,
            },
        ),
        handles: Default::default(),
        series: super::SeriesPolicy::default(),
        last_sweep_ms: 0,
        act: act_tx,
        telemetry: telemetry.clone(),
        last_processed: Arc::new(AtomicI64::new(0)),
        state_path: None,
        store: Some(store.clone()),
        clock: Arc::new(ManualClock::at(T0 + 3_600_000)),
        last_ts_ms: 0,
        scores: None,
    };
    Loop {
        evals,
        commands,
        jobs,
        telemetry,
        decider: tokio::spawn(decider.run(eval_rx, cmd_rx)),
        writer_thread,
        db,
        store,
    }
}

impl Loop {
    /// Five quiet minutes, then the signal far above its limit: the rule's
    /// step, allowed, on its way to the act stage.
    async fn spike(&mut self) -> ActionJob {
        for m in 0..5 {
            self.evals.send(eval(T0 + m * 60_000, 1.0)).await.unwrap();
        }
        self.evals.send(eval(T0 + 5 * 60_000, 50.0)).await.unwrap();
        self.jobs
            .recv()
            .await
            .expect("the step reaches the act stage")
    }

    /// Returns once the decider has handled every command sent before
    /// (commands are served in order).
    async fn sync(&self) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::ListApprovals { reply })
            .await
            .unwrap();
        answer.await.unwrap();
    }

    /// Waits until the decider has processed `n` evaluations (it serves
    /// evaluations and commands in no fixed order).
    async fn processed(&self, n: u32) {
        let t0 = std::time::Instant::now();
        while self
            .telemetry
            .get("heal_evaluations_total", &[("signal", "lat")])
            < f64::from(n)
        {
            assert!(t0.elapsed().as_secs() < 20, "the decider stalled");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops the decider (sources done), waits for the store's writes.
    async fn stop(self) -> Store {
        drop(self.evals);
        drop(self.commands);
        self.decider.await.unwrap();
        drop(self.store);
        let thread = self.writer_thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        Store::open_read_only(&self.db).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_step_the_recheck_finds_resolved_is_recorded_as_its_decision_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path());
    let job = live.spike().await;
    assert_eq!((job.incident.as_str(), job.step), ("inc-000001", 1));
    // The act stage got to it late: the series is back below its limit.
    live.evals.send(eval(T0 + 6 * 60_000, 1.0)).await.unwrap();
    live.processed(7).await;
    assert!(
        !act::recheck(&job, &live.commands).await,
        "muted by the chain"
    );
    live.sync().await;
    assert_eq!(
        live.telemetry.get(
            "heal_actions_suppressed_total",
            &[("reason", "symptom_resolved")]
        ),
        1.0
    );
    let telemetry = live.telemetry.clone();
    let store = live.stop().await;
    let record = store.incident("inc-000001").unwrap().unwrap();
    let steps = &record.incident.actions;
    assert_eq!(steps.len(), 1, "one decision for the step: {steps:?}");
    assert_eq!(steps[0].decision.label(), "symptom_resolved");
    assert!(steps[0].verification.is_none());
    // The executions journal records only what ran: nothing, and nothing
    // is left to be called abandoned at the next start.
    assert!(record.executions.is_empty(), "{:?}", record.executions);
    assert!(!dir.path().join("marker").exists());
    assert_eq!(
        telemetry.get("heal_incidents_total", &[("rule", "touch-on-latency")]),
        1.0
    );
    let reopened = Store::open(dir.path().join("heal.db")).unwrap();
    assert!(
        reopened.interrupted.is_empty(),
        "{:?}",
        reopened.interrupted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_step_runs_through_the_act_stage_and_is_journalled() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path());
    let job = live.spike().await;
    // The act stage as `run` spawns it, with a real executor.
    let (act_tx, act_rx) = mpsc::channel(4);
    let env: executors::EnvLookup =
        Arc::new(|name: &str| (name == "PATH").then(|| "/usr/local/bin:/usr/bin:/bin".to_owned()));
    let clock = Arc::new(ManualClock::at(T0 + 3_600_000));
    let acting = tokio::spawn(act::act(
        act_rx,
        act::Actors {
            telemetry: live.telemetry.clone(),
            commands: live.commands.clone(),
            store: Some(live.store.clone()),
            executors: Executors::new(env, clock.clone()),
            clock,
            stop: tokio_util::sync::CancellationToken::new(),
        },
        10,
    ));
    act_tx.send(job).await.unwrap();
    drop(act_tx);
    acting.await.unwrap();
    assert!(dir.path().join("marker").exists(), "the program ran");
    assert_eq!(
        live.telemetry
            .get("heal_actions_total", &[("kind", "exec"), ("outcome", "ok")]),
        1.0
    );
    let store = live.stop().await;
    let record = store.incident("inc-000001").unwrap().unwrap();
    assert_eq!(record.incident.actions[0].decision.label(), "allowed");
    let run = &record.executions;
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].state, store::ExecutionState::Finished);
    assert!(run[0].result.as_ref().is_some_and(|r| r.ok), "{run:?}");
    // The child's pid was recorded while it ran (`touch` is long gone).
    let process = run[0].process.expect("the exec child's pid is recorded");
    assert!(process.pid > 1, "{process:?}");
}

/// A decider on its own (no store, no task), for driving it evaluation by
/// evaluation and looking inside.
fn bare_decider(dir: &Path, series: super::SeriesPolicy) -> (Decider, mpsc::Receiver<ActionJob>) {
    let (act_tx, jobs) = mpsc::channel(16);
    let decider = Decider {
        pipeline: Pipeline::new(
            runbooks(&dir.join("marker")),
            EngineOptions {
                dry_run: true,
                await_actions: false,
            },
        ),
        handles: Default::default(),
        series,
        last_sweep_ms: 0,
        act: act_tx,
        telemetry: Arc::new(Telemetry::default()),
        last_processed: Arc::new(AtomicI64::new(0)),
        state_path: None,
        store: None,
        clock: Arc::new(ManualClock::at(T0)),
        last_ts_ms: 0,
        scores: None,
    };
    (decider, jobs)
}

/// Slot `m` (a minute apart): one steady series plus `new` series never
/// seen before (churn: a label that changes every minute).
fn churning(m: i64, new: usize) -> SourceEvent {
    let mut results = vec![(Labels::metric("lat").with("instance", "steady"), 1.0)];
    for k in 0..new {
        results.push((
            Labels::metric("lat").with("instance", format!("churn-{m}-{k}")),
            1.0,
        ));
    }
    SourceEvent::Evaluation(Evaluation {
        signal: "lat".into(),
        ts_ms: T0 + m * 60_000,
        outcome: Ok(results),
        duration_ms: 1,
        attempts: 1,
        truncated: 0,
        duplicates: 0,
    })
}

#[tokio::test]
async fn series_that_stop_reporting_are_evicted_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let policy = super::SeriesPolicy {
        stale: std::time::Duration::from_secs(180),
        max_per_signal: 10_000,
    };
    let (mut d, _jobs) = bare_decider(dir.path(), policy);
    let mut most = 0;
    for m in 0..200 {
        d.on_event(churning(m, 30)).await;
        most = most.max(d.pipeline.series_count());
        // What the decider tracks is what the pipeline holds.
        assert_eq!(d.handles.len(), d.pipeline.series_count());
    }
    // Three minutes of staleness, swept every 45 s: at most five slots'
    // churn alive at once (and the steady series), whatever the run's
    // length. Before eviction this was 6,001.
    assert!(most <= 5 * 30 + 1, "{most} series alive at once");
    let t = &d.telemetry;
    let evicted = t.get("heal_series_evicted_total", &[("signal", "lat")]);
    assert_eq!(
        evicted as usize + d.pipeline.series_count(),
        200 * 30 + 1,
        "every series is live or was evicted"
    );
    assert_eq!(
        t.get("heal_series_live", &[("signal", "lat")]) as usize,
        d.pipeline.series_count()
    );
    // The steady series was never evicted: its detector kept its history.
    let steady = Labels::metric("lat").with("instance", "steady");
    assert!(d.handles.contains_key(&steady));
    assert_eq!(d.pipeline.stats().samples, 200 * 31);
}

#[tokio::test]
async fn the_limit_of_live_series_holds_and_the_excess_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let policy = super::SeriesPolicy {
        stale: std::time::Duration::from_secs(180),
        max_per_signal: 40,
    };
    let (mut d, _jobs) = bare_decider(dir.path(), policy);
    for m in 0..50 {
        d.on_event(churning(m, 30)).await;
        assert!(d.pipeline.live_series("lat") <= 40);
    }
    let t = &d.telemetry;
    let refused = t.get("heal_series_refused_total", &[("signal", "lat")]) as usize;
    let evicted = t.get("heal_series_evicted_total", &[("signal", "lat")]) as usize;
    // Offered: 50 slots of 30 new series and the steady one (registered
    // once). Each was admitted (and is live or was evicted) or refused.
    assert!(refused > 0);
    assert_eq!(
        refused + evicted + d.pipeline.live_series("lat"),
        50 * 30 + 1
    );
    // The steady series got in first and stays.
    assert!(d
        .handles
        .contains_key(&Labels::metric("lat").with("instance", "steady")));
}

#[tokio::test]
async fn an_incident_of_a_series_that_stopped_reporting_resolves_when_it_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let policy = super::SeriesPolicy {
        stale: std::time::Duration::from_secs(180),
        max_per_signal: 100,
    };
    let (mut d, _jobs) = bare_decider(dir.path(), policy);
    let slot = |m: i64, gone: Option<f64>| {
        let mut results = vec![(Labels::metric("lat").with("instance", "steady"), 1.0)];
        if let Some(v) = gone {
            results.push((Labels::metric("lat").with("instance", "gone"), v));
        }
        SourceEvent::Evaluation(Evaluation {
            signal: "lat".into(),
            ts_ms: T0 + m * 60_000,
            outcome: Ok(results),
            duration_ms: 1,
            attempts: 1,
            truncated: 0,
            duplicates: 0,
        })
    };
    for m in 0..5 {
        d.on_event(slot(m, Some(1.0))).await;
    }
    // The series fires (over its limit) and is never seen again, its
    // step's verification (10 minutes) still waiting.
    d.on_event(slot(5, Some(50.0))).await;
    let id = "inc-000001";
    assert!(d
        .pipeline
        .engine()
        .incident(id)
        .is_some_and(|i| i.resolved_ms.is_none()));
    for m in 6..20 {
        d.on_event(slot(m, None)).await;
    }
    let inc = d.pipeline.engine().incident(id).expect("still held");
    let resolved = inc
        .resolved_ms
        .expect("resolved when its series was evicted");
    assert!(resolved > T0 + 5 * 60_000 + 180_000, "{resolved}");
    let v = inc.actions[0]
        .verification
        .as_ref()
        .expect("its step decided");
    assert_eq!(
        v.detail,
        "the series stopped reporting before the wait was over"
    );
    // Nothing holds it in memory any more.
    assert_eq!(d.pipeline.engine_mut().forget_resolved(i64::MAX), 1);
}
