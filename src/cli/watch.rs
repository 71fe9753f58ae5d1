//! `heal watch --prometheus URL --runbooks DIR`: heal's main job.
//!
//! Three stages over bounded channels, so a slow stage slows the one before
//! it instead of growing a queue without bound:
//!
//! ```text
//! source (ingest) ──evaluations──► decide (detect + remediate) ──actions──► act (executors)
//! ```
//!
//! `decide` runs the very [`Pipeline`] replay uses. A failed evaluation is
//! "no data": it reaches no detector, so it can never look like an anomaly
//! or fire an action. Shutdown (SIGINT, SIGTERM) cancels one token: the
//! source stops, `decide` drains what was already evaluated, and `act`
//! finishes the action in flight (each has a timeout) before heal exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ingest::{
    run_source, Auth, Labels, PrometheusClient, PrometheusConfig, SignalQuery, SourceEvent,
};
use remediate::actions::exec::{self, ExecRequest};
use remediate::actions::ActionResult;
use remediate::engine::{EngineEvent, RenderedAction};
use remediate::store::{ActionKey, Store, StoreError, StoreWriter, WriterThread};
use remediate::{EngineOptions, RunbookSet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::UsageError;
use crate::pipeline::{Pipeline, SeriesHandle};
use crate::telemetry::Telemetry;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Prometheus base URL, such as `http://127.0.0.1:9090`.
    #[arg(long)]
    prometheus: String,
    /// Directory of YAML runbooks: their signals are evaluated, their rules act.
    #[arg(long)]
    runbooks: PathBuf,
    /// Evaluation interval (`1s`, `15s`, `1m`); evaluations happen at
    /// multiples of it.
    #[arg(long, default_value = "15s")]
    interval: String,
    /// How far back to back-fill the detectors at start (`0s` for none).
    #[arg(long, default_value = "1h")]
    backfill: String,
    /// Timeout of one Prometheus query.
    #[arg(long, default_value = "5s")]
    query_timeout: String,
    /// Address of heal's own `/metrics` and `/healthz`.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Perform the actions the guards allow. Without it every action is
    /// planned and recorded in dry-run.
    #[arg(long)]
    execute: bool,
    /// Name of an environment variable holding a bearer token for Prometheus.
    #[arg(long)]
    bearer_token_env: Option<String>,
    /// Basic auth for Prometheus: the user name; the password is read from
    /// the environment variable `HEAL_PROMETHEUS_PASSWORD`.
    #[arg(long)]
    basic_auth_user: Option<String>,
    /// Stop after this long (for demos and tests); runs until a signal otherwise.
    #[arg(long)]
    run_for: Option<String>,
    /// Record every incident, engine event and action (begun, finished) in
    /// this incident store (SQLite, created if missing; read it with `heal
    /// incidents`). Off unless given.
    #[arg(long)]
    db: Option<PathBuf>,
}

fn duration_arg(name: &str, v: &str) -> anyhow::Result<Duration> {
    remediate::Duration::from_str(v)
        .map(|d| Duration::from_millis(d.as_millis_i64().max(0) as u64))
        .map_err(|e| UsageError(format!("--{name} {v:?}: {e}")).into())
}

/// What `decide` sends `act`.
#[derive(Debug)]
struct ActionJob {
    incident: String,
    step: usize,
    action: RenderedAction,
    timeout: Duration,
}

pub fn run(args: WatchArgs) -> anyhow::Result<()> {
    let runbooks = RunbookSet::load_dir(&args.runbooks).map_err(|e| UsageError(e.to_string()))?;
    let interval = duration_arg("interval", &args.interval)?;
    let backfill = duration_arg("backfill", &args.backfill)?;
    let timeout = duration_arg("query-timeout", &args.query_timeout)?;
    let run_for = args
        .run_for
        .as_deref()
        .map(|v| duration_arg("run-for", v))
        .transpose()?;
    if interval.is_zero() {
        return Err(UsageError("--interval must be more than 0s".into()).into());
    }
    let auth = match (&args.bearer_token_env, &args.basic_auth_user) {
        (Some(var), None) => Some(Auth::Bearer {
            token: std::env::var(var)
                .map_err(|_| UsageError(format!("--bearer-token-env: {var} is not set")))?,
        }),
        (None, Some(user)) => Some(Auth::Basic {
            username: user.clone(),
            password: std::env::var("HEAL_PROMETHEUS_PASSWORD").unwrap_or_default(),
        }),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(
                UsageError("use either --bearer-token-env or --basic-auth-user".into()).into(),
            )
        }
    };
    let mut config = PrometheusConfig::new(args.prometheus.clone());
    config.timeout_ms = timeout.as_millis() as u64;
    config.auth = auth;
    let problems: Vec<String> = config
        .problems()
        .into_iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect();
    if !problems.is_empty() {
        return Err(
            UsageError(format!("prometheus configuration: {}", problems.join("; "))).into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(args, runbooks, config, interval, backfill, run_for))
}

async fn watch(
    args: WatchArgs,
    runbooks: RunbookSet,
    config: PrometheusConfig,
    interval: Duration,
    backfill: Duration,
    run_for: Option<Duration>,
) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::default());
    let last_processed = Arc::new(AtomicI64::new(0));
    let shutdown = CancellationToken::new();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| UsageError(format!("listening on {}: {e}", args.listen)))?;
    eprintln!(
        "heal watching {} ({} signals, {} rules) every {:?}; metrics on http://{}/metrics; actions {}",
        args.prometheus,
        runbooks.signals().len(),
        runbooks.rules().len(),
        interval,
        listener.local_addr()?,
        if args.execute { "performed" } else { "in dry-run" }
    );
    let server = tokio::spawn(serve(
        listener,
        telemetry.clone(),
        last_processed.clone(),
        interval,
        shutdown.clone(),
    ));

    let signals: Vec<SignalQuery> = runbooks
        .signals()
        .iter()
        .map(|s| SignalQuery {
            name: s.name.clone(),
            query: s.query.clone(),
        })
        .collect();
    let client = PrometheusClient::new(config).map_err(|e| UsageError(e.to_string()))?;
    let (eval_tx, eval_rx) = mpsc::channel::<SourceEvent>(64);
    let (act_tx, act_rx) = mpsc::channel::<ActionJob>(64);
    let source = tokio::spawn(run_source(
        client,
        signals,
        interval.as_millis() as i64,
        (!backfill.is_zero()).then(|| backfill.as_millis() as i64),
        eval_tx,
        shutdown.clone(),
    ));
    let mut pipeline = Pipeline::new(
        runbooks,
        EngineOptions {
            dry_run: !args.execute,
        },
    );
    // --- incident store (--db) ---
    let (store, store_thread) = match &args.db {
        Some(path) => {
            let (store, thread) = open_store(path, &mut pipeline, &telemetry)?;
            (Some(store), Some(thread))
        }
        None => (None, None),
    };
    let decide = tokio::spawn(decide(
        pipeline,
        eval_rx,
        act_tx,
        telemetry.clone(),
        last_processed,
        store.clone(),
    ));
    let act = tokio::spawn(act(act_rx, telemetry.clone(), store));

    let stop = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => shutdown_signal().await,
        }
    };
    stop.await;
    eprintln!("heal: shutting down");
    shutdown.cancel();
    // The source returns on cancellation and drops its sender; `decide`
    // drains the channel and drops the action sender; `act` finishes the
    // action in flight and returns.
    let _ = source.await;
    let _ = decide.await;
    let _ = act.await;
    let _ = server.await;
    if let Some(thread) = store_thread {
        // Every writer handle went with `decide` and `act`: the thread
        // writes what is queued and ends.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    Ok(())
}

/// Opens the incident store: reports actions a killed run left unfinished,
/// numbers incidents on from the store's highest, and starts its writer.
fn open_store(
    path: &std::path::Path,
    pipeline: &mut Pipeline,
    telemetry: &Telemetry,
) -> anyhow::Result<(StoreWriter, WriterThread)> {
    let opened = Store::open(path).map_err(|e| UsageError(e.to_string()))?;
    for a in &opened.interrupted {
        let note = super::replay::interrupted_note(a.state);
        tracing::error!(stage = "remediate", key = %a.key, action = %a.summary, "action {note}");
        eprintln!("heal: action {} ({}) {note}", a.key, a.summary);
    }
    telemetry.add(
        "heal_actions_interrupted_total",
        &[],
        opened.interrupted.len() as f64,
    );
    pipeline.continue_numbering_from(opened.store.next_incident_seq()?);
    // 1024 queued writes: minutes of a busy engine; only a stalled disk
    // fills it, and then `decide` waits rather than heal losing records.
    Ok(StoreWriter::spawn(opened.store, 1024)?)
}

/// Writes what one sample made the engine do, and a snapshot of each
/// incident concerned, before any of its actions reaches `act` (so an
/// action's begin is always stored after its incident).
async fn store_events(store: &StoreWriter, pipeline: &Pipeline, events: &[EngineEvent]) {
    let mut seen: Vec<&str> = Vec::new();
    for event in events {
        let id = match event {
            EngineEvent::Opened { incident, .. }
            | EngineEvent::Planned { incident, .. }
            | EngineEvent::Verified { incident, .. }
            | EngineEvent::Resolved { incident, .. } => incident.as_str(),
        };
        if !seen.contains(&id) {
            seen.push(id);
        }
        let _ = store.event(event.clone()).await;
    }
    for id in seen {
        if let Some(incident) = pipeline.incident(id) {
            let _ = store.incident(incident.clone()).await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The decide stage: samples through sample policy, detector and engine.
async fn decide(
    mut pipeline: Pipeline,
    mut rx: mpsc::Receiver<SourceEvent>,
    act: mpsc::Sender<ActionJob>,
    telemetry: Arc<Telemetry>,
    last_processed: Arc<AtomicI64>,
    store: Option<StoreWriter>,
) {
    let mut last_ts_ms = 0;
    let mut handles: HashMap<Labels, Option<SeriesHandle>> = HashMap::new();
    let mut register = |pipeline: &mut Pipeline, labels: &Labels| -> Option<SeriesHandle> {
        *handles
            .entry(labels.clone())
            .or_insert_with(|| pipeline.register(labels))
    };
    while let Some(event) = rx.recv().await {
        match event {
            SourceEvent::Backfill {
                signal,
                series,
                truncated,
                duplicates,
            } => {
                if truncated + duplicates > 0 {
                    tracing::warn!(stage = "ingest", %signal, truncated, duplicates, "back-fill: series over the cap or duplicated were left out");
                }
                let mut n = 0;
                for (labels, samples) in &series {
                    if let Some(h) = register(&mut pipeline, labels) {
                        for s in samples {
                            pipeline.warm(h, s.ts_ms, s.value);
                            n += 1;
                        }
                        pipeline.end_warm(h);
                    }
                }
                tracing::info!(stage = "detect", %signal, series = series.len(), samples = n, "back-filled");
            }
            SourceEvent::BackfillFailed { signal, error } => {
                // Not fatal: detectors warm up on live samples instead.
                tracing::warn!(stage = "ingest", %signal, %error, "back-fill failed; warming up live");
                telemetry.add(
                    "heal_evaluation_failures_total",
                    &[("signal", &signal), ("reason", error.kind())],
                    1.0,
                );
            }
            SourceEvent::Skipped { first_ts_ms, slots } => {
                tracing::warn!(
                    stage = "ingest",
                    first_ts_ms,
                    slots,
                    "evaluation slots skipped: heal fell behind"
                );
                telemetry.add("heal_evaluation_slots_skipped_total", &[], slots as f64);
            }
            SourceEvent::Evaluation(ev) => {
                telemetry.add("heal_evaluations_total", &[("signal", &ev.signal)], 1.0);
                let results = match ev.outcome {
                    Ok(results) => results,
                    Err(e) => {
                        // No data: nothing reaches a detector or the engine.
                        telemetry.add(
                            "heal_evaluation_failures_total",
                            &[("signal", &ev.signal), ("reason", e.kind())],
                            1.0,
                        );
                        tracing::warn!(stage = "ingest", error = %e, "evaluation failed: no data");
                        continue;
                    }
                };
                telemetry.add(
                    "heal_samples_total",
                    &[("signal", &ev.signal)],
                    results.len() as f64,
                );
                telemetry.set(
                    "heal_series",
                    &[("signal", &ev.signal)],
                    results.len() as f64,
                );
                for (labels, value) in &results {
                    let Some(h) = register(&mut pipeline, labels) else {
                        continue;
                    };
                    let pushed = pipeline.push(h, ev.ts_ms, *value);
                    if let Some(reason) = pushed.dropped {
                        telemetry.add(
                            "heal_samples_dropped_total",
                            &[("reason", reason.as_str())],
                            1.0,
                        );
                    }
                    if pushed
                        .scored
                        .is_some_and(|s| s.excursion.is_some_and(|e| e.first))
                    {
                        telemetry.add("heal_anomalies_total", &[("signal", &ev.signal)], 1.0);
                        tracing::info!(stage = "detect", series = %labels, "anomaly fired");
                    }
                    let span =
                        tracing::info_span!("evaluation", signal = %ev.signal, ts_ms = ev.ts_ms);
                    if let (Some(store), false) = (&store, pushed.events.is_empty()) {
                        store_events(store, &pipeline, &pushed.events).await;
                    }
                    for event in pushed.events {
                        handle_event(event, &act, &telemetry)
                            .instrument(span.clone())
                            .await;
                    }
                }
                last_ts_ms = ev.ts_ms;
                let now = now_ms();
                last_processed.store(now, Ordering::Relaxed);
                telemetry.set(
                    "heal_loop_lag_seconds",
                    &[],
                    (now - ev.ts_ms) as f64 / 1000.0,
                );
            }
        }
    }
    // Shutting down: incidents still open are stored as open at the last
    // evaluation (a restarted heal starts a new engine and never closes
    // them; the record says how far this run saw them).
    if let Some(store) = &store {
        for incident in pipeline.finish(last_ts_ms) {
            if incident.resolved_ms.is_none() {
                let _ = store.incident(incident).await;
            }
        }
    }
}

async fn handle_event(event: EngineEvent, act: &mpsc::Sender<ActionJob>, telemetry: &Telemetry) {
    match event {
        EngineEvent::Opened {
            incident,
            rule,
            series,
            severity,
            ..
        } => {
            telemetry.add("heal_incidents_total", &[("rule", &rule)], 1.0);
            tracing::warn!(stage = "remediate", %incident, %rule, %series, severity = severity.as_str(), "incident opened");
        }
        EngineEvent::Planned { incident, action } => {
            if !action.decision.allowed {
                let reason = action.decision.label();
                telemetry.add("heal_actions_suppressed_total", &[("reason", reason)], 1.0);
                tracing::info!(stage = "remediate", %incident, step = action.step, %reason, detail = %action.decision.detail, "action not performed");
                return;
            }
            let Some(rendered) = action.rendered else {
                return;
            };
            let job = ActionJob {
                incident,
                step: action.step,
                action: rendered,
                timeout: Duration::from_secs(30),
            };
            // Backpressure: if actions pile up, evaluation waits.
            let _ = act.send(job).await;
        }
        EngineEvent::Verified {
            incident,
            step,
            verification,
        } => {
            tracing::info!(stage = "remediate", %incident, step, outcome = verification.outcome.as_str(), "verified");
        }
        EngineEvent::Resolved { .. } => {
            tracing::info!(stage = "remediate", ?event, "incident resolved");
        }
    }
}

/// The act stage: performs allowed actions one at a time.
///
/// With an incident store, each action is begun in the store (committed)
/// before its executor runs and finished after; a key the store already
/// has is not run again. A store that fails otherwise (disk full) does not
/// stop remediation: the action runs and the failure is logged.
async fn act(
    mut rx: mpsc::Receiver<ActionJob>,
    telemetry: Arc<Telemetry>,
    store: Option<StoreWriter>,
) {
    while let Some(job) = rx.recv().await {
        let span = tracing::info_span!("action", incident = %job.incident, step = job.step);
        // Attempt 1: `act` does not retry (a retry would be attempt 2).
        let key = ActionKey::new(job.incident.clone(), job.step, 1);
        if let Some(store) = &store {
            match store
                .begin_action(key.clone(), job.action.summary(), now_ms())
                .await
            {
                Ok(()) => {}
                Err(e @ StoreError::DuplicateAction { .. }) => {
                    tracing::error!(stage = "remediate", error = %e, "action not run");
                    telemetry.add(
                        "heal_actions_total",
                        &[("kind", job.action.kind_name()), ("outcome", "duplicate")],
                        1.0,
                    );
                    continue;
                }
                Err(e) => {
                    tracing::error!(stage = "remediate", error = %e, "incident store: action begin not recorded")
                }
            }
        }
        let kind = job.action.kind_name();
        let started = std::time::Instant::now();
        let result = perform(job, &telemetry).instrument(span).await;
        // Begun, so finished too, executor or not (else the next start
        // would call it interrupted).
        let result = result.unwrap_or_else(|| ActionResult {
            ok: false,
            retryable: false,
            summary: format!("no executor for {kind} yet: nothing was run"),
            output: String::new(),
            duration: started.elapsed(),
        });
        if let Some(store) = &store {
            if let Err(e) = store.finish_action(key, result, now_ms()).await {
                tracing::error!(stage = "remediate", error = %e, "incident store: action result not recorded");
            }
        }
    }
}

/// Performs one action with its executor; `None` when no executor exists
/// for its kind.
async fn perform(job: ActionJob, telemetry: &Telemetry) -> Option<ActionResult> {
    {
        let (kind, result) = match &job.action {
            RenderedAction::Exec { argv } => {
                let req = ExecRequest {
                    argv: argv.clone(),
                    env: [("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())].into(),
                    timeout: job.timeout,
                    dry_run: false,
                };
                ("exec", exec::run(&req).await)
            }
            other => {
                tracing::error!(stage = "remediate", action = ?other, "no executor for this action kind yet");
                telemetry.add(
                    "heal_actions_total",
                    &[("kind", other.kind_name()), ("outcome", "no_executor")],
                    1.0,
                );
                return None;
            }
        };
        let outcome = if result.ok { "ok" } else { "failed" };
        telemetry.add(
            "heal_actions_total",
            &[("kind", kind), ("outcome", outcome)],
            1.0,
        );
        tracing::warn!(stage = "remediate", kind, outcome, summary = %result.summary, duration_ms = result.duration.as_millis() as u64, "action performed");
        Some(result)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `/metrics` and `/healthz`.
async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    last_processed: Arc<AtomicI64>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let metrics = {
        let t = telemetry.clone();
        move || {
            let body = t.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }
    };
    let healthz = move || {
        let last = last_processed.load(Ordering::Relaxed);
        async move {
            // Healthy once the loop has processed an evaluation recently
            // (three intervals, at least 10 s).
            let limit = (3 * interval.as_millis() as i64).max(10_000);
            let age = now_ms() - last;
            if last > 0 && age <= limit {
                (
                    StatusCode::OK,
                    format!("ok: last evaluation processed {age} ms ago\n"),
                )
            } else if last == 0 {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting: no evaluation processed yet\n".to_owned(),
                )
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("stalled: last evaluation processed {age} ms ago\n"),
                )
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
}
