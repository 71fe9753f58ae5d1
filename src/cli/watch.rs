//! `heal watch --prometheus URL --runbooks DIR`: heal's main job.
//!
//! Three stages over bounded channels, so a slow stage slows the one before
//! it instead of growing a queue without bound:
//!
//! ```text
//! source (ingest) ──evaluations──► decide (detect + remediate) ──actions──► act (executors)
//! ```
//!
//! There are two sources, both on the same aligned slot grid and sending
//! into the same channel: the Prometheus source evaluates the `query:`
//! signals, the probe source runs the `probe:` signals' HTTP probes itself
//! (so a hang is seen without waiting for a scrape). `decide` cannot tell
//! them apart, which is the point: detection and rules are the same.
//!
//! `decide` runs the very [`Pipeline`] replay uses. A failed evaluation is
//! "no data": it reaches no detector, so it can never look like an anomaly
//! or fire an action. Shutdown (SIGINT, SIGTERM) cancels one token: the
//! source stops, `decide` drains what was already evaluated, and `act`
//! finishes the action in flight (each has a timeout) before heal exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use executors::supervisor::SupervisorClient;
use executors::Executors;
use ingest::{
    run_probe_source, run_source, Auth, Labels, ProbeOptions, ProbeSignal, PrometheusClient,
    PrometheusConfig, SignalQuery, SourceEvent, UrlPart, UrlTemplate,
};
use remediate::action::{ActionResult, RenderedAction};
use remediate::engine::{EngineEvent, GuardState};
use remediate::runbook::UrlPiece;
use remediate::{EngineOptions, RunbookSet};
use store::{ActionKey, Store, StoreError, StoreWriter, WriterThread};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::control::{self, Command};
use super::error::{duration_arg, UsageError};
use super::feed;
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
    /// Base URL of `heal supervise`'s control API, such as
    /// `http://127.0.0.1:9465`: `restart`, `scale` and `rollback` steps on
    /// targets `supervisor/NAME` are sent there.
    #[arg(long)]
    supervisor: Option<String>,
    /// Name of an environment variable holding the supervisor's bearer token.
    #[arg(long, requires = "supervisor")]
    supervisor_token_env: Option<String>,
    /// File where the guards' memory is kept (attempts, the last minute's
    /// actions, flap history, silences, incident numbering), so cooldowns
    /// and limits hold across restarts of heal. Written atomically after
    /// every change; read at start.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Name of an environment variable holding the bearer token that the
    /// API's changing endpoints (silences, approvals) require. Without it
    /// they are disabled.
    #[arg(long)]
    api_token_env: Option<String>,
    /// Record every incident, engine event and action (begun, finished) in
    /// this incident store (SQLite, created if missing; read it with `heal
    /// incidents`). Off unless given.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Detector settings from a parameter file (as `heal tune -o` writes):
    /// they replace the detector settings of every signal that does not set
    /// its own `detector:` in its runbook. With --db, each signal's learned
    /// threshold offset (`heal incidents sensitivity`) applies on top.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
}

/// How long the engine keeps a resolved incident in memory.
const KEEP_RESOLVED_MS: i64 = 3_600_000;

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
    check_probe_timeouts(&runbooks, interval)?;
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
    let supervisor = match &args.supervisor {
        Some(url) => {
            let token = match &args.supervisor_token_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    UsageError(format!("--supervisor-token-env: {var} is not set"))
                })?),
                None => None,
            };
            Some(
                SupervisorClient::new(url, token)
                    .map_err(|e| UsageError(format!("--supervisor: {e}")))?,
            )
        }
        None => None,
    };
    let env: executors::EnvLookup = Arc::new(|name: &str| std::env::var(name).ok());
    let mut executors = Executors::new(env, Arc::new(stdx::SystemClock));
    if let Some(client) = supervisor {
        executors = executors.with_supervisor(client);
    }
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
    let api_token = match &args.api_token_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| UsageError(format!("--api-token-env: {var} is not set")))?,
        ),
        None => None,
    };
    let guard_state = match &args.state {
        Some(path) => load_guard_state(path)?,
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(
        args,
        runbooks,
        config,
        (interval, backfill, run_for),
        guard_state,
        api_token,
        executors,
    ))
}

/// Reads the guard state a previous run left. A missing file is a first
/// run; an unreadable or corrupt one stops heal: starting with no memory of
/// recent actions could repeat them.
fn load_guard_state(path: &std::path::Path) -> anyhow::Result<Option<GuardState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            UsageError(format!(
                "--state {}: {e} (a corrupt guard state: fix or remove the file knowingly)",
                path.display()
            ))
            .into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UsageError(format!("--state {}: {e}", path.display())).into()),
    }
}

/// Writes the guard state atomically (temporary file, then rename).
fn save_guard_state(path: &std::path::Path, state: &GuardState) -> anyhow::Result<()> {
    super::score::write_atomically(path, &serde_json::to_vec_pretty(state)?)
}

async fn watch(
    args: WatchArgs,
    runbooks: RunbookSet,
    config: PrometheusConfig,
    (interval, backfill, run_for): (Duration, Duration, Option<Duration>),
    guard_state: Option<GuardState>,
    api_token: Option<String>,
    executors: Executors,
) -> anyhow::Result<()> {
    // Tuned settings (--params); learned offsets are read with the store.
    let tuning = super::replay::Tuning::load(args.params.as_deref(), None)?;
    tuning.print(&runbooks);
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
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(16);
    let server = tokio::spawn(serve(
        listener,
        telemetry.clone(),
        last_processed.clone(),
        interval,
        control::routes(cmd_tx.clone(), api_token.clone())
            .merge(feed::routes(args.db.clone()))
            .merge(control::mark_routes(
                cmd_tx.clone(),
                api_token,
                args.db.clone(),
            )),
        shutdown.clone(),
    ));

    let (signals, probes) = split_signals(&runbooks);
    let client = PrometheusClient::new(config).map_err(|e| UsageError(e.to_string()))?;
    let (eval_tx, eval_rx) = mpsc::channel::<SourceEvent>(64);
    let (act_tx, act_rx) = mpsc::channel::<ActionJob>(64);
    let probe_source = (!probes.is_empty()).then(|| {
        let mut options = ProbeOptions::new(interval.as_millis() as i64);
        let t = telemetry.clone();
        options.observer = Some(Arc::new(
            move |signal: &str, result: ingest::ProbeResult| {
                t.add(
                    "heal_probes_total",
                    &[("signal", signal), ("result", result.as_str())],
                    1.0,
                )
            },
        ));
        tokio::spawn(run_probe_source(
            client.clone(),
            probes,
            options,
            eval_tx.clone(),
            shutdown.clone(),
        ))
    });
    let source = tokio::spawn(run_source(
        client,
        signals,
        interval.as_millis() as i64,
        (!backfill.is_zero()).then_some(backfill.as_millis() as i64),
        eval_tx,
        shutdown.clone(),
    ));
    let mut pipeline = Pipeline::new(
        runbooks,
        EngineOptions {
            dry_run: !args.execute,
        },
    );
    tuning.apply(&mut pipeline);
    if let Some(state) = guard_state {
        tracing::info!(
            stage = "remediate",
            attempts = state.attempts.len(),
            silences = state.silences.len(),
            next_incident = state.next_incident_seq,
            "guard state restored"
        );
        pipeline.engine_mut().restore(state);
    }
    // --- incident store (--db) ---
    let (store, store_thread) = match &args.db {
        Some(path) => {
            let (store, thread) =
                open_store(path, &mut pipeline, &telemetry, args.state.is_none())?;
            (Some(store), Some(thread))
        }
        None => (None, None),
    };
    let decide = tokio::spawn(decide(
        pipeline,
        eval_rx,
        cmd_rx,
        act_tx,
        telemetry.clone(),
        last_processed,
        args.state.clone(),
        store.clone(),
    ));
    let act = tokio::spawn(act(act_rx, telemetry.clone(), cmd_tx, store, executors));

    let stop = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => super::error::shutdown_signal().await,
        }
    };
    stop.await;
    eprintln!("heal: shutting down");
    shutdown.cancel();
    // The source returns on cancellation and drops its sender; `decide`
    // drains the channel and drops the action sender; `act` finishes the
    // action in flight and returns.
    let _ = source.await;
    if let Some(probe_source) = probe_source {
        let _ = probe_source.await;
    }
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

/// A probe for a slot starts `timeout` before it: a timeout as long as the
/// interval would overlap the previous slot's probe. Every offending signal
/// is named.
fn check_probe_timeouts(runbooks: &RunbookSet, interval: Duration) -> Result<(), UsageError> {
    let too_slow: Vec<String> = runbooks
        .signals()
        .iter()
        .filter_map(|s| Some((&s.name, s.probe.as_ref()?.timeout)))
        .filter(|(_, t)| u128::from(t.as_millis()) >= interval.as_millis())
        .map(|(name, t)| format!("signal {name:?}: probe timeout {t} is not below --interval"))
        .collect();
    if too_slow.is_empty() {
        Ok(())
    } else {
        Err(UsageError(too_slow.join("; ")))
    }
}

/// The runbooks' signals for the two sources: the `query:` ones for the
/// Prometheus source, the `probe:` ones (URL template resolved to label
/// names) for the probe source.
fn split_signals(runbooks: &RunbookSet) -> (Vec<SignalQuery>, Vec<ProbeSignal>) {
    let mut queries = Vec::new();
    let mut probes = Vec::new();
    for s in runbooks.signals() {
        if let Some(query) = &s.query {
            queries.push(SignalQuery::new(s.name.clone(), query.clone()));
        } else if let (Some(probe), Some(url)) = (&s.probe, s.probe_url()) {
            let parts = url
                .into_iter()
                .map(|piece| match piece {
                    UrlPiece::Text(text) => UrlPart::Literal(text),
                    UrlPiece::Label(name) => UrlPart::Label(name),
                })
                .collect();
            probes.push(ProbeSignal {
                name: s.name.clone(),
                targets: probe.targets.clone(),
                url: UrlTemplate::new(parts),
                timeout_ms: probe.timeout.as_millis(),
            });
        }
    }
    (queries, probes)
}

/// Opens the incident store: reports actions a killed run left unfinished,
/// numbers incidents on from the store's highest, and starts its writer.
fn open_store(
    path: &std::path::Path,
    pipeline: &mut Pipeline,
    telemetry: &Telemetry,
    guard_state_here: bool,
) -> anyhow::Result<(StoreWriter, WriterThread)> {
    let opened = Store::open(path).map_err(|e| UsageError(e.to_string()))?;
    // Without --state, the guards' memory lives in the store.
    if guard_state_here {
        if let Some(state) = opened
            .store
            .guard_state()
            .map_err(|e| UsageError(e.to_string()))?
        {
            tracing::info!(
                stage = "remediate",
                attempts = state.attempts.len(),
                silences = state.silences.len(),
                "guard state restored from the incident store"
            );
            pipeline.engine_mut().restore(state);
        }
    }
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
    pipeline
        .engine_mut()
        .continue_numbering_from(opened.store.next_incident_seq()?);
    // Learning from outcomes: each signal's learned threshold offset.
    let offsets = opened.store.sensitivity_offsets()?;
    for (signal, offset) in &offsets {
        control::apply_offset(pipeline, telemetry, signal, *offset);
    }
    if !offsets.is_empty() {
        let list: Vec<String> = offsets
            .iter()
            .map(|(s, o)| format!("{s} {o:+.2}"))
            .collect();
        eprintln!("heal: learned threshold offsets: {}", list.join(", "));
    }
    // 1024 queued writes: minutes of a busy engine; only a stalled disk
    // fills it, and then `decide` waits rather than heal losing records.
    Ok(StoreWriter::spawn(opened.store, 1024)?)
}

/// Writes what the engine just did, and a snapshot of each incident
/// concerned, before any of its actions reaches `act` (so an action's begin
/// is always stored after its incident).
async fn store_events(store: &StoreWriter, pipeline: &Pipeline, events: &[EngineEvent]) {
    let mut seen: Vec<&str> = Vec::new();
    for event in events {
        let id = match event {
            EngineEvent::Opened { incident, .. }
            | EngineEvent::Planned { incident, .. }
            | EngineEvent::Redecided { incident, .. }
            | EngineEvent::Verified { incident, .. }
            | EngineEvent::Resolved { incident, .. } => incident.as_str(),
        };
        if !seen.contains(&id) {
            seen.push(id);
        }
        let _ = store.event(event.clone()).await;
    }
    for id in seen {
        if let Some(incident) = pipeline.engine().incident(id) {
            let _ = store.incident(incident.clone()).await;
        }
    }
}

/// The decide stage: samples through sample policy, detector and engine.
// Each argument is one channel or sink of the stage; a struct for them
// would only rename the list.
#[allow(clippy::too_many_arguments)]
async fn decide(
    mut pipeline: Pipeline,
    mut rx: mpsc::Receiver<SourceEvent>,
    mut commands: mpsc::Receiver<Command>,
    act: mpsc::Sender<ActionJob>,
    telemetry: Arc<Telemetry>,
    last_processed: Arc<AtomicI64>,
    state_path: Option<PathBuf>,
    store: Option<StoreWriter>,
) {
    let mut last_ts_ms = 0;
    let mut handles: HashMap<Labels, Option<SeriesHandle>> = HashMap::new();
    let mut register = |pipeline: &mut Pipeline, labels: &Labels| -> Option<SeriesHandle> {
        *handles
            .entry(labels.clone())
            .or_insert_with(|| pipeline.register(labels))
    };
    // Persists the guard state when something changed it: to `--state`,
    // or else into the incident store when there is one.
    let persist = |pipeline: &Pipeline, ts_ms: i64| {
        let state = pipeline.engine().guard_state(ts_ms);
        if let Some(path) = &state_path {
            if let Err(e) = save_guard_state(path, &state) {
                tracing::error!(stage = "remediate", path = %path.display(), error = %format!("{e:#}"), "writing the guard state failed");
            }
            None
        } else {
            store.as_ref().map(|_| state)
        }
    };
    loop {
        let event = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(cmd) = commands.recv() => {
                // A mark is recorded through the store's writer (awaited),
                // then applied: see control::record_mark.
                let cmd = match cmd {
                    Command::Mark { mark, reply } => {
                        let marked =
                            control::record_mark(&mut pipeline, store.as_ref(), &telemetry, mark)
                                .await;
                        let _ = reply.send(marked);
                        continue;
                    }
                    other => other,
                };
                let now = control::now_ms();
                let (events, changed, reply) = apply_command(&mut pipeline, cmd, now);
                if let (Some(store), false) = (&store, events.is_empty()) {
                    store_events(store, &pipeline, &events).await;
                }
                if changed {
                    if let (Some(state), Some(store)) = (persist(&pipeline, now), &store) {
                        let _ = store.guard_state(state).await;
                        // Committed before the client hears back.
                        let _ = store.flush().await;
                    }
                }
                reply();
                for event in events {
                    handle_event(event, &act, &telemetry).await;
                }
                continue;
            }
        };
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
                let mut changed = false;
                // The slot's samples go in together: a signal with `peer:`
                // compares the instances of each service at this timestamp.
                let mut slot = Vec::with_capacity(results.len());
                let mut slot_labels = Vec::with_capacity(results.len());
                for (labels, value) in &results {
                    if let Some(h) = register(&mut pipeline, labels) {
                        slot.push((h, *value));
                        slot_labels.push(labels);
                    }
                }
                let pushed_all = pipeline.push_slot(ev.ts_ms, &slot);
                for (labels, pushed) in slot_labels.into_iter().zip(pushed_all) {
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
                    changed |= !pushed.events.is_empty();
                    if let (Some(store), false) = (&store, pushed.events.is_empty()) {
                        store_events(store, &pipeline, &pushed.events).await;
                    }
                    for event in pushed.events {
                        handle_event(event, &act, &telemetry)
                            .instrument(span.clone())
                            .await;
                    }
                }
                if changed {
                    if let (Some(state), Some(store)) = (persist(&pipeline, ev.ts_ms), &store) {
                        let _ = store.guard_state(state).await;
                    }
                }
                // Learning from outcomes: performed steps that did not help.
                control::learn_from_not_helped(&mut pipeline, store.as_ref(), &telemetry).await;
                // The evidence of incidents that resolved goes to the store
                // (the HTML report charts it); without a store it is dropped.
                let resolved = pipeline.take_resolved_evidence();
                if let Some(store) = &store {
                    for (id, evidence) in resolved {
                        let _ = store.evidence(id, evidence).await;
                    }
                }
                // Memory stays bounded: incidents resolved over an hour ago
                // were logged (and stored) already.
                pipeline
                    .engine_mut()
                    .forget_resolved(ev.ts_ms - KEEP_RESOLVED_MS);
                telemetry.set(
                    "heal_incidents_held",
                    &[],
                    pipeline.engine().incidents_held() as f64,
                );
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
                // The step's own timeout, else 30 s.
                timeout: action.timeout.map_or(Duration::from_secs(30), |t| {
                    Duration::from_millis(t.as_millis_i64().max(1) as u64)
                }),
            };
            // Backpressure: if actions pile up, evaluation waits.
            let _ = act.send(job).await;
        }
        EngineEvent::Redecided { incident, action, .. } => {
            let reason = action.decision.label();
            telemetry.add("heal_actions_suppressed_total", &[("reason", reason)], 1.0);
            tracing::info!(stage = "remediate", %incident, step = action.step, %reason, detail = %action.decision.detail, "action not performed");
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

/// An answer to an API command, sent only once what it changed is
/// persisted: a client told "created" can rely on it surviving a crash.
type Deferred = Box<dyn FnOnce() + Send>;

/// Applies a command from the API to the engine; returns the engine's
/// events, whether the guard state changed, and the reply to send once that
/// change is persisted.
fn apply_command(
    pipeline: &mut Pipeline,
    cmd: Command,
    now_ms: i64,
) -> (Vec<EngineEvent>, bool, Deferred) {
    let engine = pipeline.engine_mut();
    match cmd {
        Command::AddSilence {
            matchers,
            starts_ms,
            ends_ms,
            by,
            comment,
            reply,
        } => {
            let r = engine
                .add_silence(matchers, starts_ms, ends_ms, &by, &comment)
                .map_err(|e| e.to_string());
            let changed = r.is_ok();
            (
                Vec::new(),
                changed,
                Box::new(move || {
                    let _ = reply.send(r);
                }),
            )
        }
        Command::ExpireSilence { id, reply } => {
            let r = engine
                .expire_silence(&id, now_ms)
                .map_err(|e| e.to_string());
            let changed = r.is_ok();
            (
                Vec::new(),
                changed,
                Box::new(move || {
                    let _ = reply.send(r);
                }),
            )
        }
        Command::ListSilences { reply } => {
            let list = engine.silences(now_ms);
            (
                Vec::new(),
                false,
                Box::new(move || {
                    let _ = reply.send(list);
                }),
            )
        }
        Command::ListApprovals { reply } => {
            let ids = engine.awaiting_approval();
            (
                Vec::new(),
                false,
                Box::new(move || {
                    let _ = reply.send(ids);
                }),
            )
        }
        Command::Approve {
            incident,
            by,
            reply,
        } => match engine.approve(&incident, now_ms, &by) {
            Ok(events) => {
                let answer = Ok(events.clone());
                (
                    events,
                    true,
                    Box::new(move || {
                        let _ = reply.send(answer);
                    }),
                )
            }
            Err(e) => {
                let answer = Err(e.to_string());
                (
                    Vec::new(),
                    false,
                    Box::new(move || {
                        let _ = reply.send(answer);
                    }),
                )
            }
        },
        // Handled by `decide` before this (it awaits the store's writer).
        Command::Mark { reply, .. } => (
            Vec::new(),
            false,
            Box::new(move || {
                let _ = reply.send(Err((
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "marks are handled by the decide loop".to_owned(),
                )));
            }),
        ),
        Command::Recheck { incident, reply } => {
            let holds = engine.symptom_holds(&incident);
            (
                Vec::new(),
                false,
                Box::new(move || {
                    let _ = reply.send(holds);
                }),
            )
        }
    }
}

/// The act stage: performs allowed actions one at a time. Just before each,
/// it asks the decide loop whether the incident's symptom still holds: a
/// step that waited in line behind slow ones must not act on a symptom that
/// is gone.
async fn act(
    mut rx: mpsc::Receiver<ActionJob>,
    telemetry: Arc<Telemetry>,
    commands: mpsc::Sender<Command>,
    store: Option<StoreWriter>,
    executors: Executors,
) {
    while let Some(job) = rx.recv().await {
        // With an incident store, each action is begun in the store
        // (committed) before its executor runs and finished after; a key
        // the store already has is not run again. A store that fails
        // otherwise (disk full) does not stop remediation: the action runs
        // and the failure is logged. Attempt 1: `act` does not retry.
        let key = ActionKey::new(job.incident.clone(), job.step, 1);
        let kind = job.action.kind_name();
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
                        &[("kind", kind), ("outcome", "duplicate")],
                        1.0,
                    );
                    continue;
                }
                Err(e) => {
                    tracing::error!(stage = "remediate", error = %e, "incident store: action begin not recorded")
                }
            }
        }
        let started = std::time::Instant::now();
        let result = act_one(job, &telemetry, &commands, &executors).await;
        if let Some(store) = &store {
            // Begun, so finished too, whatever happened (else the next
            // start would call it interrupted).
            let result = result.unwrap_or_else(|why| ActionResult {
                ok: false,
                retryable: false,
                summary: why,
                output: String::new(),
                duration: started.elapsed(),
            });
            if let Err(e) = store.finish_action(key, result, now_ms()).await {
                tracing::error!(stage = "remediate", error = %e, "incident store: action result not recorded");
            }
        }
    }
}

/// One job of the act stage: its performance, or why nothing ran.
async fn act_one(
    job: ActionJob,
    telemetry: &Telemetry,
    commands: &mpsc::Sender<Command>,
    executors: &Executors,
) -> Result<ActionResult, String> {
    let span = tracing::info_span!("action", incident = %job.incident, step = job.step);
    let (tx, reply) = tokio::sync::oneshot::channel();
    let holds = match commands.try_send(Command::Recheck {
        incident: job.incident.clone(),
        reply: tx,
    }) {
        // The decide loop may itself be waiting for this stage (action
        // queue full): then the step was decided moments ago and its
        // symptom taken as holding, rather than deadlock.
        Ok(()) => tokio::time::timeout(Duration::from_secs(1), reply)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or(true),
        Err(_) => true,
    };
    if !holds {
        telemetry.add(
            "heal_actions_suppressed_total",
            &[("reason", "symptom_resolved")],
            1.0,
        );
        let _enter = span.enter();
        tracing::info!(
            stage = "remediate",
            reason = "symptom_resolved",
            "action not performed: the symptom no longer holds"
        );
        return Err("not run: the symptom no longer held just before acting".into());
    }
    let kind = job.action.kind_name();
    let result = async {
        let result = executors.perform(&job.action, job.timeout, false).await;
        let outcome = if result.ok { "ok" } else { "failed" };
        telemetry.add(
            "heal_actions_total",
            &[("kind", kind), ("outcome", outcome)],
            1.0,
        );
        tracing::warn!(stage = "remediate", kind, outcome, summary = %result.summary, duration_ms = result.duration.as_millis() as u64, "action performed");
        result
    }
    .instrument(span)
    .await;
    Ok(result)
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
    control: axum::Router,
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
        .route("/healthz", get(healthz))
        .merge(control);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
}

#[cfg(test)]
mod tests {
    //! The act stage's timing logic under paused tokio time: what happens
    //! between a decision and its execution.

    use super::*;

    fn test_executors() -> Executors {
        Executors::new(Arc::new(|_: &str| None), Arc::new(stdx::SystemClock))
    }

    fn job(target: &str) -> ActionJob {
        ActionJob {
            incident: "inc-000001".into(),
            step: 1,
            action: RenderedAction::Restart {
                target: target.into(),
            },
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn signals_split_into_queries_and_probes() {
        let text = r#"signals:
  - {name: lab_up, query: up}
  - name: probe_success
    probe: {targets: 'up{job="lab"}', url: "http://{{label.address}}/healthz", timeout: 400ms}
  - name: slow_probe
    probe: {targets: up, url: "http://{{instance}}/", timeout: 1s}
"#;
        let runbooks = RunbookSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap();
        let (queries, probes) = split_signals(&runbooks);
        assert_eq!(queries, [SignalQuery::new("lab_up", "up")]);
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].name, "probe_success");
        assert_eq!(probes[0].targets, r#"up{job="lab"}"#);
        assert_eq!(probes[0].timeout_ms, 400);
        assert_eq!(
            probes[0].url.parts(),
            [
                UrlPart::Literal("http://".into()),
                UrlPart::Label("address".into()),
                UrlPart::Literal("/healthz".into()),
            ]
        );
        assert_eq!(probes[1].url.parts()[1], UrlPart::Label("instance".into()));
        assert_eq!(
            check_probe_timeouts(&runbooks, Duration::from_secs(1))
                .unwrap_err()
                .0,
            r#"signal "slow_probe": probe timeout 1s is not below --interval"#
        );
        assert!(check_probe_timeouts(&runbooks, Duration::from_millis(1001)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_whose_symptom_resolved_in_the_meantime_is_not_performed() {
        let telemetry = Telemetry::default();
        let (tx, mut rx) = mpsc::channel(4);
        // The decide loop's stand-in: the symptom is gone.
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let Command::Recheck { reply, .. } = cmd {
                    let _ = reply.send(Some(false));
                }
            }
        });
        let started = tokio::time::Instant::now();
        let r = act_one(job("supervisor/web"), &telemetry, &tx, &test_executors()).await;
        assert_eq!(
            r.unwrap_err(),
            "not run: the symptom no longer held just before acting"
        );
        assert_eq!(
            telemetry.get(
                "heal_actions_suppressed_total",
                &[("reason", "symptom_resolved")]
            ),
            1.0
        );
        // Answered at once: no waiting for the re-check's deadline.
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_decide_loop_does_not_deadlock_the_act_stage() {
        let telemetry = Telemetry::default();
        // Nobody reads the commands: the decide loop is itself waiting for
        // this stage. After the one-second re-check deadline the step goes
        // ahead (it was decided moments ago).
        let (tx, _rx) = mpsc::channel(4);
        let started = tokio::time::Instant::now();
        let r = act_one(job("supervisor/web"), &telemetry, &tx, &test_executors()).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        // It was performed: without --supervisor the executor says so.
        let result = r.unwrap();
        assert!(!result.ok);
        assert!(
            result.summary.contains("started without --supervisor"),
            "{}",
            result.summary
        );
        // A full command queue (try_send fails) goes ahead at once.
        let (tx, _rx) = mpsc::channel(1);
        tx.try_send(Command::ListApprovals {
            reply: tokio::sync::oneshot::channel().0,
        })
        .unwrap();
        let started = tokio::time::Instant::now();
        act_one(job("supervisor/web"), &telemetry, &tx, &test_executors())
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
