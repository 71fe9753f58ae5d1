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

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use executors::Executors;
use ingest::{
    run_probe_source, run_source, ProbeOptions, ProbeSignal, PrometheusClient, PrometheusConfig,
    SignalQuery, SourceEvent, UrlPart, UrlTemplate,
};
use remediate::runbook::UrlPiece;
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
    check_probe_timeouts(&config.runbooks, config.interval)?;
    let docker_signals = docker_signals(&config.runbooks);
    let docker_api = match (docker_signals.is_empty(), config.executors.docker()) {
        (true, _) => None,
        (false, Some(client)) => Some(client.api().clone()),
        (false, None) => {
            let names: Vec<&str> = docker_signals.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "signals {} read the Docker Engine: start heal watch with --docker SOCKET",
                names.join(", ")
            )));
        }
    };
    let log_source = prepare_logs(
        &config.runbooks,
        config.interval,
        config.log_state.as_deref(),
    )?;
    let problems: Vec<String> = config
        .prometheus
        .problems()
        .into_iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect();
    if !problems.is_empty() {
        return Err(Error::Usage(format!(
            "prometheus configuration: {}",
            problems.join("; ")
        )));
    }
    let file_state = match &config.state {
        Some(path) => load_guard_state(path)?,
        None => None,
    };
    // The one way to open the store (replay does the same): interrupted
    // actions reported, numbering, learned offsets and guard state read.
    let opened = config.db.as_deref().map(open_store).transpose()?;
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
    // Remote-write signals: the API fills them, a slot task reads them.
    let push_watches = remote_write_signals(&config.runbooks);
    let push = (!push_watches.is_empty()).then(|| {
        Arc::new(std::sync::Mutex::new(
            ingest::remote_write::PushSignals::new(push_watches),
        ))
    });
    // Alertmanager signals: the webhook fills them, a slot task reads them.
    let alert_watches = alert_signals(&config.runbooks);
    let alerts = (!alert_watches.is_empty()).then(|| {
        Arc::new(std::sync::Mutex::new(ingest::alerts::AlertSignals::new(
            alert_watches,
        )))
    });
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
            push: push.clone(),
            alerts: alerts.clone(),
        },
        stop.clone(),
    ));

    let (signals, probes) = split_signals(&config.runbooks);
    let client = PrometheusClient::new(config.prometheus.clone())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let (eval_tx, eval_rx) = mpsc::channel::<SourceEvent>(64);
    let (act_tx, act_rx) = mpsc::channel::<ActionJob>(64);
    let probe_source = (!probes.is_empty()).then(|| {
        let mut options = ProbeOptions::new(config.interval.as_millis() as i64);
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
            stop.clone(),
        ))
    });
    // Docker signals: discovery and the engine's events, on the same slot
    // grid, into the same channel.
    let docker_source = docker_api.map(|api| {
        tokio::spawn(ingest::docker::run_docker_source(
            api,
            docker_signals,
            config.interval.as_millis() as i64,
            eval_tx.clone(),
            stop.clone(),
            ingest::SystemClock,
        ))
    });
    let push_source = push.map(|push| {
        tokio::spawn(ingest::remote_write::run_push_source(
            push,
            config.interval.as_millis() as i64,
            ingest::remote_write::PUSH_LAG_MS,
            eval_tx.clone(),
            stop.clone(),
            ingest::SystemClock,
        ))
    });
    let alert_source = alerts.map(|alerts| {
        tokio::spawn(ingest::remote_write::run_push_source(
            alerts,
            config.interval.as_millis() as i64,
            0,
            eval_tx.clone(),
            stop.clone(),
            ingest::SystemClock,
        ))
    });
    // Log signals: files tailed and counted on the same slot grid.
    let log_task = log_source.map(|prepared| {
        let t = telemetry.clone();
        let observer: ingest::log_source::LogObserver = Arc::new(move |stats| {
            for s in stats {
                let l = [("source", s.source.as_str())];
                t.set("heal_log_lines_total", &l, s.lines as f64);
                t.set("heal_log_lines_unparsed_total", &l, s.unparsed as f64);
                t.set("heal_log_late_lines_total", &l, s.late as f64);
                t.set("heal_log_bytes_total", &l, s.tail.bytes as f64);
                t.set("heal_log_templates", &l, s.templates as f64);
                t.set("heal_log_template_bytes", &l, s.template_bytes as f64);
                t.set("heal_log_templates_evicted_total", &l, s.evicted as f64);
                t.set("heal_log_files", &l, s.files as f64);
                t.set("heal_log_rotations_total", &l, s.tail.rotations as f64);
                t.set("heal_log_truncations_total", &l, s.tail.truncations as f64);
                t.set("heal_log_cut_lines_total", &l, s.tail.cut_lines as f64);
                t.set("heal_log_read_errors_total", &l, s.tail.read_errors as f64);
                if let Some(k) = &s.kafka {
                    t.set("heal_log_kafka_errors_total", &l, k.errors as f64);
                    t.set(
                        "heal_log_kafka_commit_failures_total",
                        &l,
                        k.commit_failures as f64,
                    );
                    for (topic, partition, lag) in &k.lag {
                        let p = partition.to_string();
                        t.set(
                            "heal_log_kafka_lag",
                            &[("source", &s.source), ("topic", topic), ("partition", &p)],
                            *lag as f64,
                        );
                    }
                }
            }
        });
        observer(&prepared.stats());
        tokio::spawn(ingest::log_source::run_log_source(
            prepared,
            ingest::log_source::LogSourceOptions {
                interval_ms: config.interval.as_millis() as i64,
                state: config.log_state.clone(),
                observer: Some(observer),
            },
            eval_tx.clone(),
            stop.clone(),
            ingest::SystemClock,
        ))
    });
    // The call graph's edge queries, refreshed into the same channel.
    let edges_task = config
        .runbooks
        .diagnosis()
        .filter(|d| !d.edges.is_empty())
        .map(|d| {
            tokio::spawn(crate::topology::run_edges(
                client.clone(),
                d.edges.clone(),
                d.refresh.as_millis_i64(),
                eval_tx.clone(),
                stop.clone(),
                ingest::SystemClock,
            ))
        });
    let source = tokio::spawn(run_source(
        client,
        signals,
        config.interval.as_millis() as i64,
        (!config.backfill.is_zero()).then_some(config.backfill.as_millis() as i64),
        eval_tx,
        stop.clone(),
    ));

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
    let _ = source.await;
    if let Some(probe_source) = probe_source {
        let _ = probe_source.await;
    }
    if let Some(push_source) = push_source {
        let _ = push_source.await;
    }
    if let Some(alert_source) = alert_source {
        let _ = alert_source.await;
    }
    if let Some(docker_source) = docker_source {
        let _ = docker_source.await;
    }
    if let Some(edges_task) = edges_task {
        let _ = edges_task.await;
    }
    if let Some(log_task) = log_task {
        let _ = log_task.await;
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
        if let Ok(store) = tokio::task::spawn_blocking(move || thread.join()).await {
            // Everything back in the main file: a stopped heal leaves one
            // self-contained database, not most of it in the WAL.
            if let Err(e) = store.checkpoint() {
                tracing::warn!(stage = "store", error = %e, "checkpoint at shutdown failed");
            }
        }
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

/// A probe for a slot starts `timeout` before it: a timeout as long as the
/// interval would overlap the previous slot's probe. Every offending signal
/// is named.
fn check_probe_timeouts(runbooks: &RunbookSet, interval: Duration) -> Result<()> {
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
        Err(Error::Usage(too_slow.join("; ")))
    }
}

/// The runbooks' log sources and `logs:` signals, compiled, with the
/// offsets, counters and templates of `state` (`None` without log signals).
fn prepare_logs(
    runbooks: &RunbookSet,
    interval: Duration,
    state: Option<&std::path::Path>,
) -> Result<Option<ingest::log_source::PreparedLogSource>> {
    let watches = crate::log_sources::watches(runbooks);
    if watches.is_empty() {
        return Ok(None);
    }
    let sources = crate::log_sources::sources(runbooks, crate::log_sources::Inputs::Live);
    if state.is_none() {
        eprintln!(
            "heal: log offsets are not kept (give --log-state FILE): a restart reads every log file from its end"
        );
    }
    ingest::log_source::prepare_log_source(sources, watches, interval.as_millis() as i64, state)
        .map(Some)
        .map_err(|e| Error::Usage(e.to_string()))
}

/// The runbooks' `alertmanager:` signals, for the alerts source.
fn alert_signals(runbooks: &RunbookSet) -> Vec<ingest::alerts::AlertWatch> {
    runbooks
        .signals()
        .iter()
        .filter_map(|s| {
            Some(ingest::alerts::AlertWatch {
                name: s.name.clone(),
                matchers: s.alertmanager.as_ref()?.matchers.clone(),
            })
        })
        .collect()
}

/// The runbooks' `remote_write:` signals, for the push source.
fn remote_write_signals(runbooks: &RunbookSet) -> Vec<ingest::remote_write::PushWatch> {
    runbooks
        .signals()
        .iter()
        .filter_map(|s| {
            let rw = s.remote_write.as_ref()?;
            Some(ingest::remote_write::PushWatch {
                name: s.name.clone(),
                metric: rw.metric.clone(),
                matchers: rw.matchers.clone(),
                rate: rw.rate,
            })
        })
        .collect()
}

/// The runbooks' `docker:` signals, for the Docker source.
fn docker_signals(runbooks: &RunbookSet) -> Vec<ingest::docker::DockerWatch> {
    use remediate::runbook::{DockerMetric, DockerPer};
    runbooks
        .signals()
        .iter()
        .filter_map(|s| {
            let d = s.docker.as_ref()?;
            Some(ingest::docker::DockerWatch {
                name: s.name.clone(),
                metric: match d.metric {
                    DockerMetric::Up => ingest::docker::DockerMetric::Up,
                    DockerMetric::Healthy => ingest::docker::DockerMetric::Healthy,
                    DockerMetric::Memory => ingest::docker::DockerMetric::Memory,
                    DockerMetric::Cpu => ingest::docker::DockerMetric::Cpu,
                    DockerMetric::Restarts => ingest::docker::DockerMetric::Restarts,
                    DockerMetric::Replicas => ingest::docker::DockerMetric::Replicas,
                    DockerMetric::SpareReplicas => ingest::docker::DockerMetric::SpareReplicas,
                },
                label: d.label.clone(),
                per: match d.per {
                    DockerPer::Container => ingest::docker::DockerPer::Container,
                    DockerPer::Service => ingest::docker::DockerPer::Service,
                },
                cpu_per_replica: d.cpu_per_replica,
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
                .to_string(),
            r#"signal "slow_probe": probe timeout 1s is not below --interval"#
        );
        assert!(check_probe_timeouts(&runbooks, Duration::from_millis(1001)).is_ok());
    }
}
