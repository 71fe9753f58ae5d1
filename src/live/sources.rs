//! The live sources, one way to start them for both roles that read the
//! world: `heal watch` sends their evaluations to its decider, `heal ingest`
//! (`crate::scale::ingest::run_live`) to the samples topic. Whatever reads
//! the channel cannot tell the sources apart.
//!
//! Starting is two steps so that a bad configuration is reported before
//! anything runs: [`prepare`] checks the runbooks' signals against what
//! the caller can give them (a Prometheus, a Docker Engine, a log state
//! file) and reports every problem at once; [`Prepared::start`] spawns one
//! task per kind of source, all on the same aligned slot grid:
//!
//! - `query:` signals: the Prometheus source (with back-fill);
//! - `probe:` signals: HTTP probes heal runs itself;
//! - `docker:` signals: the Docker Engine's containers and events;
//! - `remote_write:` and `alertmanager:` signals: filled by the API edge
//!   between slots ([`Prepared::push`], [`Prepared::alerts`]), read once
//!   per slot;
//! - `logs:` signals: files and Kafka topics tailed and counted;
//! - `diagnosis.edges`: the call graph's edge queries, refreshed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ingest::{
    run_probe_source, run_source, ProbeOptions, ProbeSignal, PrometheusClient, PrometheusConfig,
    SignalQuery, SourceEvent, UrlPart, UrlTemplate,
};
use remediate::runbook::UrlPiece;
use remediate::RunbookSet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;
use crate::{Error, Result};

/// What the sources need from the caller.
pub(crate) struct SourceSettings<'a> {
    pub(crate) runbooks: &'a RunbookSet,
    /// Evaluations happen at multiples of this.
    pub(crate) interval: Duration,
    /// How far back to back-fill the `query:` signals at start (zero for
    /// none).
    pub(crate) backfill: Duration,
    /// Where the log sources keep their offsets (`--log-state`).
    pub(crate) log_state: Option<&'a Path>,
    /// Where Prometheus is: required by `query:` and `probe:` signals and
    /// by `diagnosis.edges`.
    pub(crate) prometheus: Option<&'a PrometheusConfig>,
    /// The Docker Engine's API: required by `docker:` signals.
    pub(crate) docker: Option<ingest::docker::Docker>,
    /// The command, for messages (`heal watch`, `heal ingest`).
    pub(crate) command: &'static str,
}

/// Sources checked and ready to start.
pub(crate) struct Prepared {
    interval_ms: i64,
    backfill_ms: Option<i64>,
    log_state: Option<std::path::PathBuf>,
    prometheus: Option<PrometheusClient>,
    queries: Vec<SignalQuery>,
    probes: Vec<ProbeSignal>,
    edges: Option<remediate::runbook::DiagnosisConfig>,
    docker: Option<(ingest::docker::Docker, Vec<ingest::docker::DockerWatch>)>,
    logs: Option<ingest::log_source::PreparedLogSource>,
    push: Option<ingest::remote_write::SharedPush>,
    alerts: Option<ingest::alerts::SharedAlerts>,
}

/// Checks the runbooks' signals against `settings` and compiles their
/// sources; every problem is reported at once.
///
/// # Errors
///
/// [`Error::Usage`] naming each problem: a probe timeout not below the
/// interval, a signal whose source the caller cannot give (no Prometheus,
/// no Docker Engine), bad Prometheus settings, a log source that does not
/// compile or a corrupt log state.
pub(crate) fn prepare(settings: SourceSettings<'_>) -> Result<Prepared> {
    let runbooks = settings.runbooks;
    let mut problems = check_probe_timeouts(runbooks, settings.interval);
    let (queries, probes) = split_signals(runbooks);
    let edges = runbooks
        .diagnosis()
        .filter(|d| !d.edges.is_empty())
        .cloned();
    let prometheus = match settings.prometheus {
        Some(config) => {
            let bad: Vec<String> = config
                .problems()
                .into_iter()
                .map(|(f, m)| format!("prometheus configuration: {f}: {m}"))
                .collect();
            if bad.is_empty() {
                match PrometheusClient::new(config.clone()) {
                    Ok(client) => Some(client),
                    Err(e) => {
                        problems.push(e.to_string());
                        None
                    }
                }
            } else {
                problems.extend(bad);
                None
            }
        }
        None => {
            let mut needing: Vec<&str> = queries.iter().map(|q| q.name.as_str()).collect();
            needing.extend(probes.iter().map(|p| p.name.as_str()));
            if !needing.is_empty() {
                problems.push(format!(
                    "signals {} read Prometheus: start {} with --prometheus URL",
                    needing.join(", "),
                    settings.command
                ));
            }
            if edges.is_some() {
                problems.push(format!(
                    "diagnosis.edges are PromQL queries: start {} with --prometheus URL",
                    settings.command
                ));
            }
            None
        }
    };
    let docker_watches = docker_signals(runbooks);
    let docker = match (docker_watches.is_empty(), settings.docker) {
        (true, _) => None,
        (false, Some(api)) => Some((api, docker_watches)),
        (false, None) => {
            let names: Vec<&str> = docker_watches.iter().map(|s| s.name.as_str()).collect();
            problems.push(format!(
                "signals {} read the Docker Engine: start {} with --docker SOCKET",
                names.join(", "),
                settings.command
            ));
            None
        }
    };
    let logs = match prepare_logs(runbooks, settings.interval, settings.log_state) {
        Ok(logs) => logs,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if !problems.is_empty() {
        return Err(Error::Usage(problems.join("; ")));
    }
    let push_watches = remote_write_signals(runbooks);
    let alert_watches = alert_signals(runbooks);
    Ok(Prepared {
        interval_ms: settings.interval.as_millis() as i64,
        backfill_ms: (!settings.backfill.is_zero()).then_some(settings.backfill.as_millis() as i64),
        log_state: settings.log_state.map(Path::to_path_buf),
        prometheus,
        queries,
        probes,
        edges,
        docker,
        logs,
        push: (!push_watches.is_empty()).then(|| {
            Arc::new(std::sync::Mutex::new(
                ingest::remote_write::PushSignals::new(push_watches),
            ))
        }),
        alerts: (!alert_watches.is_empty()).then(|| {
            Arc::new(std::sync::Mutex::new(ingest::alerts::AlertSignals::new(
                alert_watches,
            )))
        }),
    })
}

impl Prepared {
    /// The remote-write signals the API edge fills (`None` without any).
    pub(crate) fn push(&self) -> Option<ingest::remote_write::SharedPush> {
        self.push.clone()
    }

    /// The Alertmanager signals the API edge fills (`None` without any).
    pub(crate) fn alerts(&self) -> Option<ingest::alerts::SharedAlerts> {
        self.alerts.clone()
    }

    /// Spawns every source, sending into `tx` until `stop` is cancelled.
    /// The tasks end on cancellation (each drops its sender, so the channel
    /// closes once all have ended).
    pub(crate) fn start(
        self,
        telemetry: &Arc<Telemetry>,
        tx: mpsc::Sender<SourceEvent>,
        stop: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let interval_ms = self.interval_ms;
        let mut tasks = Vec::new();
        let mut spawn = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            tasks.push(tokio::spawn(f));
        };
        if let Some(client) = &self.prometheus {
            if !self.probes.is_empty() {
                let mut options = ProbeOptions::new(interval_ms);
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
                spawn(detached(run_probe_source(
                    client.clone(),
                    self.probes,
                    options,
                    tx.clone(),
                    stop.clone(),
                )));
            }
            // The call graph's edge queries, refreshed into the same channel.
            if let Some(d) = self.edges {
                spawn(detached(crate::topology::run_edges(
                    client.clone(),
                    d.edges.clone(),
                    d.refresh.as_millis_i64(),
                    tx.clone(),
                    stop.clone(),
                    ingest::SystemClock,
                )));
            }
        }
        // Docker signals: discovery and the engine's events.
        if let Some((api, watches)) = self.docker {
            spawn(detached(ingest::docker::run_docker_source(
                api,
                watches,
                interval_ms,
                tx.clone(),
                stop.clone(),
                ingest::SystemClock,
            )));
        }
        if let Some(push) = self.push {
            spawn(detached(ingest::remote_write::run_push_source(
                push,
                interval_ms,
                ingest::remote_write::PUSH_LAG_MS,
                tx.clone(),
                stop.clone(),
                ingest::SystemClock,
            )));
        }
        if let Some(alerts) = self.alerts {
            spawn(detached(ingest::remote_write::run_push_source(
                alerts,
                interval_ms,
                0,
                tx.clone(),
                stop.clone(),
                ingest::SystemClock,
            )));
        }
        // Log signals: files tailed and counted on the same slot grid.
        if let Some(prepared) = self.logs {
            let observer = log_observer(telemetry.clone());
            observer(&prepared.stats());
            spawn(detached(ingest::log_source::run_log_source(
                prepared,
                ingest::log_source::LogSourceOptions {
                    interval_ms,
                    state: self.log_state,
                    observer: Some(observer),
                },
                tx.clone(),
                stop.clone(),
                ingest::SystemClock,
            )));
        }
        // The query signals last: the Prometheus source holds the last
        // sender.
        if let Some(client) = self.prometheus {
            spawn(detached(run_source(
                client,
                self.queries,
                interval_ms,
                self.backfill_ms,
                tx,
                stop.clone(),
            )));
        }
        tasks
    }
}

/// `f` as a task body whose result is dropped (each source logs its own
/// failures).
fn detached<F>(f: F) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
where
    F: std::future::Future + Send + 'static,
{
    Box::pin(async move {
        let _ = f.await;
    })
}

/// The log sources' statistics, as heal's own metrics.
fn log_observer(t: Arc<Telemetry>) -> ingest::log_source::LogObserver {
    Arc::new(move |stats| {
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
    })
}

/// A probe for a slot starts `timeout` before it: a timeout as long as the
/// interval would overlap the previous slot's probe. Every offending signal
/// is named.
fn check_probe_timeouts(runbooks: &RunbookSet, interval: Duration) -> Vec<String> {
    runbooks
        .signals()
        .iter()
        .filter_map(|s| Some((&s.name, s.probe.as_ref()?.timeout)))
        .filter(|(_, t)| u128::from(t.as_millis()) >= interval.as_millis())
        .map(|(name, t)| format!("signal {name:?}: probe timeout {t} is not below --interval"))
        .collect()
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
            check_probe_timeouts(&runbooks, Duration::from_secs(1)),
            [r#"signal "slow_probe": probe timeout 1s is not below --interval"#]
        );
        assert!(check_probe_timeouts(&runbooks, Duration::from_millis(1001)).is_empty());
    }
}
