//! The live loop (`heal watch`): heal's main job.
//!
//! Three stages over bounded channels, so a slow stage slows the one before
//! it instead of growing a queue without bound:
//!
//! ```text
//! source (ingest) ──evaluations──► decide (detect + remediate) ──actions──► act (executors)
//! ```
//!
//! There are three sources, all on the same aligned slot grid and sending
//! into the same channel: the Prometheus source evaluates the `query:`
//! signals, the probe source runs the `probe:` signals' HTTP probes itself
//! (so a hang is seen without waiting for a scrape), the Docker source
//! (with `--docker`) turns the engine's container events into the
//! `docker:` signals. `decide` cannot tell
//! them apart, which is the point: detection and rules are the same.
//!
//! [`decide::Decider`] runs the very [`Pipeline`] replay uses. A failed
//! evaluation is "no data": it reaches no detector, so it can never look
//! like an anomaly or fire an action. The HTTP API (`crate::api`) talks to
//! the decider only through [`Command`]s, so a change lands between two
//! evaluations. The caller passes the listener and the shutdown ([`run`],
//! mini-redis's `server::run(listener, shutdown)` is the model): when the
//! shutdown resolves, the sources stop, `decide` drains what was already
//! evaluated, and `act` finishes the action in flight (each has a timeout)
//! before `run` returns.
//!
//! Wall time enters through the [`Clock`] in [`LiveConfig`] only: for
//! commands from the API, executions and telemetry. Below the decider the
//! time is the evaluation's timestamp.

mod act;
mod command;
mod decide;
#[cfg(test)]
mod loop_tests;
pub(crate) mod sources;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use executors::Executors;
use ingest::{PrometheusConfig, SourceEvent};
use remediate::{EngineOptions, RunbookSet};
use stdx::Clock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use act::ActionJob;
pub use command::{ChangeError, Command};

use crate::pipeline::Pipeline;
use crate::telemetry::Telemetry;
use crate::tuning::{load_guard_state, open_store, Tuning};
use crate::{Error, Result};

/// The target of the live loop's log events (incident opened, action
/// performed, verified, ...), fixed so that readers of heal's log (the demo,
/// `heal bench lab`) do not depend on where the code sits.
pub const LOG_TARGET: &str = "heal::live";

/// How long the engine keeps a resolved incident in memory.
const KEEP_RESOLVED_MS: i64 = 3_600_000;

/// When the live loop forgets series, and how many it keeps per signal.
///
/// Series churn (a pod restarted under a new name, a label carrying a
/// request id): without eviction every series ever seen would keep its
/// detector (about 1-4 KiB) and evidence ring (1 KiB) for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPolicy {
    /// A series that has not reported for this long (event time) is
    /// evicted, with its detector state and evidence ring; if it comes
    /// back, it starts afresh (warming up).
    pub stale: Duration,
    /// Most series per signal alive at once. A new series beyond it is
    /// refused (not watched), counted in `heal_series_refused_total` and
    /// logged, and tried again at its next sample.
    pub max_per_signal: usize,
}

impl SeriesPolicy {
    /// The staleness in ms (at least one).
    pub fn stale_ms(&self) -> i64 {
        (self.stale.as_millis() as i64).max(1)
    }
}

impl Default for SeriesPolicy {
    /// Ten minutes (twice Prometheus' own five-minute staleness: a series
    /// missing for one scrape outage is kept), and 10,000 series per signal
    /// (the Prometheus source's own cap per evaluation).
    fn default() -> Self {
        SeriesPolicy {
            stale: Duration::from_secs(600),
            max_per_signal: 10_000,
        }
    }
}

/// Everything the live loop needs, read and checked by the caller (the
/// binary reads the command line and the environment; nothing here does).
#[derive(Debug)]
pub struct LiveConfig {
    /// The runbooks: their signals are evaluated, their rules act.
    pub runbooks: RunbookSet,
    /// Where Prometheus is, and how to ask it.
    pub prometheus: PrometheusConfig,
    /// Evaluations happen at multiples of this.
    pub interval: Duration,
    /// How far back to back-fill the detectors at start (zero for none).
    pub backfill: Duration,
    /// Perform the actions the guards allow; dry-run otherwise.
    pub execute: bool,
    /// File where the guards' memory is kept (`--state`).
    pub state: Option<PathBuf>,
    /// File where the log sources' offsets, line counters and templates
    /// are kept (`--log-state`); without it a restart reads every log file
    /// from its end.
    pub log_state: Option<PathBuf>,
    /// The incident store (`--db`).
    pub db: Option<PathBuf>,
    /// Detector settings from a parameter file (`--params`).
    pub params: Option<PathBuf>,
    /// Bearer token the API's changing endpoints require; they are
    /// disabled without one.
    pub api_token: Option<String>,
    /// `--remote-write`: where each watched series' score and band go.
    pub remote_write: Option<ingest::sinks::remote_write::SinkConfig>,
    /// What performs allowed actions.
    pub executors: Executors,
    /// Series eviction and the limit of live series per signal.
    pub series: SeriesPolicy,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
}

/// Runs the live loop until `shutdown` resolves: the sources, the decider,
/// the act stage and the HTTP API (on `listener`: `/metrics`, `/healthz`,
/// silences, approvals, marks, the incident feed).
///
/// # Errors
///
/// Bad configuration (a probe timeout not below the interval, Prometheus
/// settings, a corrupt guard state, a parameter file, the store): usage
/// errors, reported before anything runs.
pub async fn run(
    config: LiveConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let sources = sources::prepare(sources::SourceSettings {
        runbooks: &config.runbooks,
        interval: config.interval,
        backfill: config.backfill,
        log_state: config.log_state.as_deref(),
        prometheus: Some(&config.prometheus),
        docker: config.executors.docker().map(|c| c.api().clone()),
        command: "heal watch",
    })?;
    let file_state = match &config.state {
        Some(path) => load_guard_state(path)?,
        None => None,
    };
    // The one way to open the store (replay does the same): interrupted
    // actions reported, numbering, learned offsets and guard state read.
    // (Off the async threads: a PostgreSQL store's client blocks.)
    let opened = match config.db.clone() {
        Some(db) => Some(
            tokio::task::spawn_blocking(move || open_store(&db))
                .await
                .map_err(|e| Error::Unavailable(format!("opening the incident store: {e}")))??,
        ),
        None => None,
    };
    let offsets = opened
        .as_ref()
        .map(|o| o.offsets.clone())
        .unwrap_or_default();
    let tuning = Tuning::load(config.params.as_deref(), offsets)?;
    tuning.print(&config.runbooks);

    let telemetry = Arc::new(Telemetry::default());
    let last_processed = Arc::new(AtomicI64::new(0));
    let stop = CancellationToken::new();
    let addr = listener.local_addr()?;
    eprintln!(
        "heal watching {} ({} signals, {} rules) every {:?}; metrics on http://{addr}/metrics; actions {}",
        config.prometheus.url,
        config.runbooks.signals().len(),
        config.runbooks.rules().len(),
        config.interval,
        if config.execute { "performed" } else { "in dry-run" }
    );
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(16);
    let server = tokio::spawn(crate::api::serve(
        listener,
        crate::api::ApiState {
            commands: Some(cmd_tx.clone()),
            token: config.api_token.clone(),
            db: config.db.clone(),
            telemetry: telemetry.clone(),
            last_processed: last_processed.clone(),
            interval: config.interval,
            clock: config.clock.clone(),
            // Remote-write and Alertmanager signals: the API fills them,
            // a slot task of the sources reads them.
            push: sources.push(),
            alerts: sources.alerts(),
        },
        stop.clone(),
    ));

    let (eval_tx, eval_rx) = mpsc::channel::<SourceEvent>(64);
    let (act_tx, act_rx) = mpsc::channel::<ActionJob>(64);
    let source_tasks = sources.start(&telemetry, eval_tx, &stop);

    let max_in_flight = config.runbooks.guardrails().max_concurrent as usize;
    let mut pipeline = Pipeline::new(
        config.runbooks,
        EngineOptions {
            dry_run: !config.execute,
            // The act stage reports each action's end (act::run_job).
            await_actions: config.execute,
        },
    );
    tuning.apply(&mut pipeline);
    let (store, store_thread) = match opened {
        Some(opened) => {
            telemetry.add(
                "heal_actions_interrupted_total",
                &[],
                opened.interrupted.len() as f64,
            );
            telemetry.add(
                "heal_incidents_closed_at_start_total",
                &[],
                opened.closed.len() as f64,
            );
            pipeline
                .engine_mut()
                .continue_numbering_from(opened.next_incident_seq);
            // Without --state, the guards' memory lives in the store.
            let state = if config.state.is_none() {
                opened.guard_state
            } else {
                file_state
            };
            restore(&mut pipeline, state);
            // 1024 queued writes: minutes of a busy engine; only a stalled
            // disk fills it, and then `decide` waits rather than heal
            // losing records.
            let (writer, thread) = store::StoreWriter::spawn(opened.store, 1024)?;
            (Some(writer), Some(thread))
        }
        None => {
            restore(&mut pipeline, file_state);
            (None, None)
        }
    };
    for (signal, offset) in &tuning.offsets {
        telemetry.set(
            "heal_signal_threshold_offset",
            &[("signal", signal)],
            *offset,
        );
    }
    // Scores out: the decider offers each slot's scores, never waiting.
    let (scores, sink_task) = match config.remote_write.clone() {
        Some(sink) => {
            let (sender, stats, task) =
                ingest::sinks::remote_write::remote_write_sink(sink, stop.clone());
            (Some((sender, stats)), Some(tokio::spawn(task)))
        }
        None => (None, None),
    };
    let decider = decide::Decider {
        pipeline,
        handles: Default::default(),
        series: config.series,
        last_sweep_ms: 0,
        act: act_tx,
        telemetry: telemetry.clone(),
        last_processed,
        state_path: config.state.clone(),
        store: store.clone(),
        clock: config.clock.clone(),
        last_ts_ms: 0,
        scores,
    };
    let decide = tokio::spawn(decider.run(eval_rx, cmd_rx));
    let act = tokio::spawn(act::act(
        act_rx,
        act::Actors {
            telemetry: telemetry.clone(),
            commands: cmd_tx,
            store,
            executors: config.executors,
            clock: config.clock.clone(),
            stop: stop.clone(),
        },
        max_in_flight,
    ));

    shutdown.await;
    eprintln!("heal: shutting down");
    stop.cancel();
    // The source returns on cancellation and drops its sender; `decide`
    // drains the channel and drops the action sender; `act` finishes the
    // actions in flight (each bounded by its timeout) and begins no other: a step
    // allowed but not begun is reported as abandoned at the next start.
    for task in source_tasks {
        let _ = task.await;
    }
    let _ = decide.await;
    if let Some(sink_task) = sink_task {
        let _ = sink_task.await;
    }
    let _ = act.await;
    let _ = server.await;
    if let Some(thread) = store_thread {
        // Every writer handle went with `decide` and `act`: the thread
        // writes what is queued and ends.
        let _ = tokio::task::spawn_blocking(move || {
            let store = thread.join();
            // Everything back in the main file: a stopped heal leaves one
            // self-contained database, not most of it in the WAL.
            if let Err(e) = store.checkpoint() {
                tracing::warn!(stage = "store", error = %e, "checkpoint at shutdown failed");
            }
        })
        .await;
    }
    eprintln!("heal: stopped");
    Ok(())
}

/// Restores what the guards remembered, if anything.
fn restore(pipeline: &mut Pipeline, state: Option<remediate::engine::GuardState>) {
    if let Some(state) = state {
        tracing::info!(
            stage = "remediate",
            attempts = state.attempts.len(),
            silences = state.silences.len(),
            next_incident = state.next_incident_seq,
            "guard state restored"
        );
        pipeline.engine_mut().restore(state);
    }
}
