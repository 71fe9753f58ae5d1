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
            EngineOptions { dry_run: false },
        ),
        handles: Default::default(),
        act: act_tx,
        telemetry: telemetry.clone(),
        last_processed: Arc::new(AtomicI64::new(0)),
        state_path: None,
        store: Some(store.clone()),
        clock: Arc::new(ManualClock::at(T0 + 3_600_000)),
        last_ts_ms: 0,
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
        live.telemetry.clone(),
        live.commands.clone(),
        Some(live.store.clone()),
        Executors::new(env, clock.clone()),
        clock,
        tokio_util::sync::CancellationToken::new(),
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
}
