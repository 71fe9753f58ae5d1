//! Docker Engine as a source: the containers it runs, with the labels that
//! say what they are (Compose project and service, Swarm service, task and
//! node), and its events stream as immediate per-target signals, the
//! moment a container dies, is OOM-killed, turns unhealthy or restarts,
//! without waiting for a scrape.
//!
//! Each event becomes a [`DockerSignal`]: a signal name, the target's
//! labels and a value, the shape every other source produces.
//!
//! | event | signal | value |
//! |---|---|---|
//! | `die` | `docker_container_up` | 0 (and `exit_code` in `detail`) |
//! | `oom` | `docker_container_oom` | 1 |
//! | `start`, `restart` | `docker_container_up` | 1 |
//! | `health_status: healthy/unhealthy` | `docker_container_healthy` | 1 / 0 |
//!
//! [`run_docker_source`] is what `heal watch` runs for runbook signals
//! with `docker:`: it tracks every container (discovered at start, then
//! kept current by the events) and, on the same aligned slot grid as the
//! other sources, sends one evaluation per signal with one series per
//! container. Besides `up` and `healthy` from the events, it reads each
//! container's usage from the engine at every slot when a signal asks for
//! it: `memory` (bytes in use, as `docker stats` counts them: usage less
//! the inactive page cache), `cpu` (cores used since the previous slot)
//! and `restarts` (the engine's restart count: restarts by its restart
//! policy). A death is in the next slot's evaluation, not a scrape and a
//! query later. Tested on the real engine in `executors/tests/docker.rs`
//! (beside the executor, which builds the lab image) and end to end in
//! `tests/docker_watch.rs`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::{EventsOptions, ListContainersOptions, StatsOptions};
use bollard::ClientVersion;
/// The Docker Engine API client the source reads (bollard's), named here so
/// that callers need not depend on bollard.
pub use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sources::prometheus::{Evaluation, SourceEvent, Timer};
use crate::Labels;

/// Engine labels carried over as target labels, by the label name heal
/// gives them.
pub const CARRIED_LABELS: [(&str, &str); 5] = [
    ("compose_project", "com.docker.compose.project"),
    ("compose_service", "com.docker.compose.service"),
    ("swarm_service", "com.docker.swarm.service.name"),
    ("swarm_task", "com.docker.swarm.task.name"),
    ("node", "com.docker.swarm.node.id"),
];

/// Most bytes of one label value kept (longer ones are cut, so a hostile
/// label cannot grow memory; the engine's safe-value check still applies
/// before any action).
const MAX_VALUE: usize = 253;

/// A container as discovered, with its target labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredContainer {
    /// Target labels: `container`, `image`, `state` and the
    /// [`CARRIED_LABELS`] it has.
    pub labels: BTreeMap<String, String>,
}

/// One engine event as a per-target signal.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerSignal {
    /// `docker_container_up`, `docker_container_oom` or
    /// `docker_container_healthy`.
    pub signal: &'static str,
    /// The target's labels: `container`, `image` and the carried ones.
    pub labels: BTreeMap<String, String>,
    /// Event time, ms since the Unix epoch (the engine's clock).
    pub ts_ms: i64,
    /// The value (see the module's table).
    pub value: f64,
    /// The engine's action (`die`, `oom`, `health_status: unhealthy`, ...)
    /// and, for `die`, the exit code.
    pub detail: String,
}

/// Why the source could not read the engine.
#[derive(Debug, thiserror::Error)]
#[error("docker engine: {0}")]
pub struct DockerSourceError(String);

/// A client of the engine at `socket`, speaking API 1.41 (Engine 20.10).
///
/// # Errors
///
/// The socket does not exist.
pub fn connect(socket: &str) -> Result<Docker, DockerSourceError> {
    let v = ClientVersion {
        major_version: 1,
        minor_version: 41,
    };
    Docker::connect_with_unix(socket, 60, &v)
        .map_err(|e| DockerSourceError(format!("{socket}: {e}")))
}

fn cut(value: &str) -> String {
    let mut end = value.len().min(MAX_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

fn target_labels(
    name: &str,
    image: &str,
    engine: &HashMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("container".to_owned(), cut(name.trim_start_matches('/'))),
        ("image".to_owned(), cut(image)),
    ]);
    for (ours, theirs) in CARRIED_LABELS {
        if let Some(v) = engine.get(theirs) {
            labels.insert(ours.to_owned(), cut(v));
        }
    }
    labels
}

/// Every container (running or not) with its target labels, sorted by
/// name; only those carrying `label` (`KEY=VALUE`) when given.
///
/// # Errors
///
/// The engine does not answer.
pub async fn discover(
    docker: &Docker,
    label: Option<&str>,
) -> Result<Vec<DiscoveredContainer>, DockerSourceError> {
    let filters = label.map(|l| HashMap::from([("label".to_owned(), vec![l.to_owned()])]));
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await
        .map_err(|e| DockerSourceError(format!("listing containers: {e}")))?;
    let mut out: Vec<DiscoveredContainer> = list
        .into_iter()
        .map(|c| {
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .unwrap_or_default();
            let mut labels = target_labels(
                &name,
                &c.image.unwrap_or_default(),
                &c.labels.unwrap_or_default(),
            );
            labels.insert(
                "state".to_owned(),
                c.state.map(|s| s.to_string()).unwrap_or_default(),
            );
            DiscoveredContainer { labels }
        })
        .collect();
    out.sort_by(|a, b| a.labels["container"].cmp(&b.labels["container"]));
    Ok(out)
}

/// The signal an engine event stands for, if any.
pub fn signal_of(message: &bollard::models::EventMessage) -> Option<DockerSignal> {
    let action = message.action.as_deref()?;
    let actor = message.actor.as_ref()?;
    let attrs = actor.attributes.clone().unwrap_or_default();
    let (signal, value) = match action {
        "die" => ("docker_container_up", 0.0),
        "start" | "restart" => ("docker_container_up", 1.0),
        "oom" => ("docker_container_oom", 1.0),
        "health_status: healthy" => ("docker_container_healthy", 1.0),
        "health_status: unhealthy" => ("docker_container_healthy", 0.0),
        _ => return None,
    };
    let name = attrs.get("name").map_or("", String::as_str);
    let image = attrs.get("image").map_or("", String::as_str);
    let ts_ms = message
        .time_nano
        .map(|n| n / 1_000_000)
        .or(message.time.map(|s| s * 1000))
        .unwrap_or(0);
    let detail = match attrs.get("exitCode") {
        Some(code) if action == "die" => format!("die exit_code={}", cut(code)),
        _ => action.to_owned(),
    };
    Some(DockerSignal {
        signal,
        labels: target_labels(name, image, &attrs),
        ts_ms,
        value,
        detail,
    })
}

/// Streams the engine's container events as [`DockerSignal`]s into `tx`
/// until `stop` is cancelled, `tx` is closed or the stream ends.
///
/// # Errors
///
/// The stream failed (the engine went away); the caller reconnects.
pub async fn run_events(
    docker: &Docker,
    tx: mpsc::Sender<DockerSignal>,
    stop: CancellationToken,
) -> Result<(), DockerSourceError> {
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        (
            "event".to_owned(),
            ["die", "oom", "start", "restart", "health_status"]
                .map(String::from)
                .to_vec(),
        ),
    ]);
    let mut events = docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }));
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = events.next() => next,
        };
        match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(DockerSourceError(format!("events stream: {e}"))),
            Some(Ok(message)) => {
                if let Some(signal) = signal_of(&message) {
                    if tx.send(signal).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Most containers tracked; past it new ones are not (a bound on memory
/// whatever the engine runs).
pub const MAX_TRACKED: usize = 10_000;

/// What a Docker signal measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerMetric {
    /// 1 while the container runs, 0 once it stopped.
    Up,
    /// 1 healthy, 0 unhealthy; no series without a health check or while
    /// it starts.
    Healthy,
    /// Bytes of memory in use (usage less inactive page cache, as `docker
    /// stats` shows it); running containers only.
    Memory,
    /// CPU cores used on average since the previous slot; running
    /// containers only, from their second slot.
    Cpu,
    /// The engine's restart count (restarts by the restart policy; a
    /// restart asked through the API, heal's included, is not counted).
    Restarts,
    /// Per service only: the replicas a Swarm service is set to run (its
    /// spec, read from the engine at each slot).
    Replicas,
    /// Per service only: running containers less the replicas needed to
    /// keep each under `cpu_per_replica` cores (at least one), as
    /// Kubernetes' HPA computes them: negative when short, positive when
    /// some are spare. A series only once every running container's CPU is
    /// known.
    SpareReplicas,
}

impl DockerMetric {
    /// Whether its value is read from the engine at each slot (stats or
    /// inspect) rather than kept from the events.
    fn polled(self) -> bool {
        matches!(
            self,
            Self::Memory | Self::Cpu | Self::Restarts | Self::SpareReplicas
        )
    }

    /// Whether it needs the containers' stats (memory and CPU).
    fn needs_stats(self) -> bool {
        matches!(self, Self::Memory | Self::Cpu | Self::SpareReplicas)
    }
}

/// What one series of a Docker signal stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DockerPer {
    /// A container.
    #[default]
    Container,
    /// A Swarm or Compose service: its containers together.
    Service,
}

/// Most containers whose usage is read per slot (a bound on the calls to
/// the engine whatever it runs); the rest have no usage series.
pub const MAX_POLLED: usize = 1_000;

/// Usage reads in flight at once.
const POLL_PARALLEL: usize = 8;

/// A container's usage as last read.
#[derive(Debug, Clone, Default)]
struct Usage {
    memory_bytes: Option<f64>,
    cpu_cores: Option<f64>,
    restarts: Option<f64>,
    /// CPU time (ns) at the previous read and the slot (ms) it was read at.
    cpu_prev: Option<(u64, i64)>,
}

/// One read of a container's usage from the engine.
#[derive(Debug, Default)]
struct Reading {
    memory_bytes: Option<f64>,
    cpu_total_ns: Option<u64>,
    restarts: Option<i64>,
}

/// Memory in use as `docker stats` shows it: usage less the inactive page
/// cache (`inactive_file` on cgroup v2, `total_inactive_file` on v1).
fn memory_in_use(m: &bollard::models::ContainerMemoryStats) -> Option<f64> {
    let usage = m.usage?;
    let inactive = m
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Some(usage.saturating_sub(inactive) as f64)
}

/// Cores used between two reads of the container's CPU time: none for the
/// first read, a counter that went back (the container restarted) or no
/// time between them.
fn cpu_cores(prev: Option<(u64, i64)>, total_ns: u64, at_ms: i64) -> Option<f64> {
    let (prev_ns, prev_ms) = prev?;
    if total_ns < prev_ns || at_ms <= prev_ms {
        return None;
    }
    Some((total_ns - prev_ns) as f64 / ((at_ms - prev_ms) as f64 * 1e6))
}

/// Reads one container's usage: stats when it runs and `stats` is asked,
/// the restart count when `restarts` is. Each call gives up after `timeout`.
async fn read_usage(
    docker: &Docker,
    name: &str,
    stats: bool,
    restarts: bool,
    timeout: Duration,
) -> Reading {
    let mut reading = Reading::default();
    if stats {
        let mut stream = docker.stats(
            name,
            Some(StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        if let Ok(Some(Ok(s))) = tokio::time::timeout(timeout, stream.next()).await {
            reading.memory_bytes = s.memory_stats.as_ref().and_then(memory_in_use);
            reading.cpu_total_ns = s
                .cpu_stats
                .as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage);
        }
    }
    if restarts {
        if let Ok(Ok(c)) = tokio::time::timeout(timeout, docker.inspect_container(name, None)).await
        {
            reading.restarts = c.restart_count;
        }
    }
    reading
}

/// Reads the usage of the tracked containers that a polled signal selects
/// (at most [`MAX_POLLED`], [`POLL_PARALLEL`] at a time), all within
/// `budget`: what has not answered by then keeps no value for this slot.
async fn refresh_usage(
    docker: &Docker,
    tracked: &mut HashMap<String, Tracked>,
    signals: &[DockerWatch],
    at_ms: i64,
    budget: Duration,
) {
    let stats = signals.iter().any(|s| s.metric.needs_stats());
    let restarts = signals.iter().any(|s| s.metric == DockerMetric::Restarts);
    let mut wanted: Vec<(String, bool)> = tracked
        .iter_mut()
        .filter(|(_, t)| {
            signals
                .iter()
                .filter(|s| s.metric.polled())
                .any(|s| selects(s, t))
        })
        .map(|(name, t)| {
            // A value is for this slot only: what is not read again is gone.
            t.usage.memory_bytes = None;
            t.usage.cpu_cores = None;
            t.usage.restarts = None;
            if !t.up {
                t.usage.cpu_prev = None;
            }
            (name.clone(), t.up)
        })
        // A stopped container has no usage to read, only a restart count.
        .filter(|&(_, up)| up || restarts)
        .collect();
    wanted.sort();
    wanted.truncate(MAX_POLLED);
    let per_call = budget.min(Duration::from_secs(2));
    let mut reads = futures_util::stream::iter(wanted)
        .map(|(name, up)| async move {
            let r = read_usage(docker, &name, stats && up, restarts, per_call).await;
            (name, r)
        })
        .buffer_unordered(POLL_PARALLEL);
    let deadline = tokio::time::Instant::now() + budget;
    while let Ok(Some((name, r))) = tokio::time::timeout_at(deadline, reads.next()).await {
        let Some(t) = tracked.get_mut(&name) else {
            continue;
        };
        t.usage.memory_bytes = r.memory_bytes;
        t.usage.restarts = r.restarts.map(|n| n as f64);
        match r.cpu_total_ns {
            Some(ns) => {
                t.usage.cpu_cores = cpu_cores(t.usage.cpu_prev, ns, at_ms);
                t.usage.cpu_prev = Some((ns, at_ms));
            }
            None => t.usage.cpu_prev = None,
        }
    }
}

/// Whether `signal`'s label selector takes this container.
fn selects(signal: &DockerWatch, t: &Tracked) -> bool {
    match signal.label.as_ref().and_then(|l| l.split_once('=')) {
        None => true,
        Some((k, v)) => t.engine.get(k).map(String::as_str) == Some(v),
    }
}

/// A runbook signal read from the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerWatch {
    /// The signal's name (`__name__` of its series).
    pub name: String,
    /// What it measures.
    pub metric: DockerMetric,
    /// Only containers with this engine label, `KEY=VALUE`.
    pub label: Option<String>,
    /// A series per container or per service.
    pub per: DockerPer,
    /// With [`DockerMetric::SpareReplicas`]: the cores one replica should
    /// use at most.
    pub cpu_per_replica: Option<f64>,
}

#[derive(Debug, Clone)]
struct Tracked {
    labels: BTreeMap<String, String>,
    engine: HashMap<String, String>,
    up: bool,
    healthy: Option<bool>,
    usage: Usage,
}

fn health_of_status(status: &str) -> Option<bool> {
    if status.contains("(healthy)") {
        Some(true)
    } else if status.contains("(unhealthy)") {
        Some(false)
    } else {
        None
    }
}

async fn discover_all(docker: &Docker) -> Result<HashMap<String, Tracked>, DockerSourceError> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| DockerSourceError(format!("listing containers: {e}")))?;
    let mut out = HashMap::new();
    for c in list.into_iter().take(MAX_TRACKED) {
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_default();
        let engine = c.labels.unwrap_or_default();
        let labels = target_labels(&name, &c.image.unwrap_or_default(), &engine);
        let running = c.state.is_some_and(|s| s.to_string() == "running");
        let healthy = c.status.as_deref().and_then(health_of_status);
        out.insert(
            labels["container"].clone(),
            Tracked {
                labels,
                engine,
                up: running,
                healthy,
                usage: Usage::default(),
            },
        );
    }
    Ok(out)
}

/// Applies one engine event to the tracked containers.
fn apply(tracked: &mut HashMap<String, Tracked>, message: &bollard::models::EventMessage) {
    let (Some(action), Some(actor)) = (message.action.as_deref(), message.actor.as_ref()) else {
        return;
    };
    let attrs = actor.attributes.clone().unwrap_or_default();
    let name = cut(attrs.get("name").map_or("", String::as_str));
    if name.is_empty() {
        return;
    }
    if action == "destroy" {
        tracked.remove(&name);
        return;
    }
    if !tracked.contains_key(&name) && tracked.len() >= MAX_TRACKED {
        return;
    }
    let image = attrs.get("image").cloned().unwrap_or_default();
    let entry = tracked.entry(name.clone()).or_insert_with(|| Tracked {
        labels: target_labels(&name, &image, &attrs),
        engine: attrs.clone(),
        up: false,
        healthy: None,
        usage: Usage::default(),
    });
    match action {
        "start" | "restart" => {
            entry.up = true;
            // A new run's health starts over.
            entry.healthy = None;
        }
        "die" => {
            entry.up = false;
            entry.usage = Usage {
                restarts: entry.usage.restarts,
                ..Usage::default()
            };
        }
        "health_status: healthy" => entry.healthy = Some(true),
        "health_status: unhealthy" => entry.healthy = Some(false),
        _ => {}
    }
}

/// The evaluation of `signal` at slot `ts_ms` from the tracked state:
/// series sorted by labels, each with `__name__`, `instance` (the
/// container) and `service` (its Compose or Swarm service, else its name).
fn evaluate(
    signal: &DockerWatch,
    tracked: &HashMap<String, Tracked>,
    services: &HashMap<String, u64>,
    ts_ms: i64,
) -> Evaluation {
    if signal.per == DockerPer::Service {
        return evaluate_services(signal, tracked, services, ts_ms);
    }
    let mut series: Vec<(Labels, f64)> = tracked
        .values()
        .filter(|t| selects(signal, t))
        .filter_map(|t| {
            let value = match signal.metric {
                DockerMetric::Up => Some(if t.up { 1.0 } else { 0.0 }),
                DockerMetric::Healthy => t.healthy.map(|h| if h { 1.0 } else { 0.0 }),
                DockerMetric::Memory => t.usage.memory_bytes,
                DockerMetric::Cpu => t.usage.cpu_cores,
                DockerMetric::Restarts => t.usage.restarts,
                // Refused for containers by the runbook's validation.
                DockerMetric::Replicas | DockerMetric::SpareReplicas => None,
            }?;
            let container = t.labels["container"].clone();
            let service = t
                .labels
                .get("compose_service")
                .or(t.labels.get("swarm_service"))
                .cloned()
                .unwrap_or_else(|| container.clone());
            let labels = Labels::from_pairs(t.labels.iter().map(|(k, v)| (k.clone(), v.clone())))
                .with("instance", container)
                .with("service", service)
                .with(crate::METRIC_NAME_LABEL, signal.name.clone());
            Some((labels, value))
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    Evaluation::of(signal.name.clone(), ts_ms, series)
}

/// The service a container belongs to, with the labels its service series
/// carries: its Swarm service, else its Compose project and service.
fn service_of(t: &Tracked) -> Option<(String, Vec<(&'static str, String)>)> {
    if let Some(s) = t.labels.get("swarm_service") {
        return Some((s.clone(), vec![("swarm_service", s.clone())]));
    }
    let service = t.labels.get("compose_service")?;
    let mut carried = vec![("compose_service", service.clone())];
    if let Some(p) = t.labels.get("compose_project") {
        carried.push(("compose_project", p.clone()));
    }
    Some((service.clone(), carried))
}

/// `spare_replicas`: running containers less the replicas needed for
/// `total_cores` at `per_replica` cores each (at least one).
fn spare_replicas(running: usize, total_cores: f64, per_replica: f64) -> f64 {
    let needed = (total_cores / per_replica).ceil().max(1.0);
    running as f64 - needed
}

/// The evaluation of a `per: service` signal: one series per Swarm or
/// Compose service over its selected containers (see [`DockerPer`]),
/// labelled `service`, `instance` (both the service's name) and its
/// Swarm or Compose labels. Containers of no service have none.
fn evaluate_services(
    signal: &DockerWatch,
    tracked: &HashMap<String, Tracked>,
    services: &HashMap<String, u64>,
    ts_ms: i64,
) -> Evaluation {
    struct Group<'a> {
        carried: Vec<(&'static str, String)>,
        members: Vec<&'a Tracked>,
    }
    let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
    for t in tracked.values().filter(|t| selects(signal, t)) {
        let Some((name, carried)) = service_of(t) else {
            continue;
        };
        groups
            .entry(name)
            .or_insert_with(|| Group {
                carried,
                members: Vec::new(),
            })
            .members
            .push(t);
    }
    let mean = |values: Vec<f64>| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let mut series = Vec::new();
    for (name, g) in groups {
        let running: Vec<&Tracked> = g.members.iter().copied().filter(|t| t.up).collect();
        let value = match signal.metric {
            DockerMetric::Up => Some(running.len() as f64),
            DockerMetric::Healthy => {
                let known: Vec<bool> = running.iter().filter_map(|t| t.healthy).collect();
                (!known.is_empty())
                    .then(|| known.iter().filter(|h| **h).count() as f64 / known.len() as f64)
            }
            DockerMetric::Memory => mean(
                running
                    .iter()
                    .filter_map(|t| t.usage.memory_bytes)
                    .collect(),
            ),
            DockerMetric::Cpu => mean(running.iter().filter_map(|t| t.usage.cpu_cores).collect()),
            DockerMetric::Restarts => {
                let counts: Vec<f64> = g.members.iter().filter_map(|t| t.usage.restarts).collect();
                (!counts.is_empty()).then(|| counts.iter().sum())
            }
            DockerMetric::Replicas => g
                .carried
                .iter()
                .find(|(k, _)| *k == "swarm_service")
                .and_then(|(_, s)| services.get(s))
                .map(|n| *n as f64),
            DockerMetric::SpareReplicas => {
                let cores: Option<Vec<f64>> = running.iter().map(|t| t.usage.cpu_cores).collect();
                match (cores, signal.cpu_per_replica) {
                    (Some(c), Some(per)) if !running.is_empty() && per > 0.0 => {
                        Some(spare_replicas(running.len(), c.iter().sum(), per))
                    }
                    _ => None,
                }
            }
        };
        let Some(value) = value else { continue };
        let labels = Labels::from_pairs(g.carried.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .with("instance", name.clone())
            .with("service", name)
            .with(crate::METRIC_NAME_LABEL, signal.name.clone());
        series.push((labels, value));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    Evaluation::of(signal.name.clone(), ts_ms, series)
}

/// The replicas each replicated Swarm service is set to run, by name
/// (empty when the engine is no Swarm manager or does not answer within
/// `timeout`).
async fn swarm_replicas(docker: &Docker, timeout: Duration) -> HashMap<String, u64> {
    let Ok(Ok(list)) = tokio::time::timeout(timeout, docker.list_services(None)).await else {
        return HashMap::new();
    };
    list.into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let replicas = spec.mode?.replicated?.replicas?;
            Some((cut(&spec.name?), u64::try_from(replicas).ok()?))
        })
        .collect()
}

/// Runs the Docker source until `stop` is cancelled or `tx` closes: the
/// containers discovered at start, kept current by the events stream
/// (re-discovered after the stream breaks, every second until the engine
/// answers), one [`SourceEvent::Evaluation`] per signal per slot (multiples
/// of `interval_ms` on `clock`).
///
/// # Errors
///
/// A non-positive interval.
pub async fn run_docker_source<C: Timer>(
    docker: Docker,
    signals: Vec<DockerWatch>,
    interval_ms: i64,
    tx: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
    clock: C,
) -> Result<(), DockerSourceError> {
    if interval_ms <= 0 {
        return Err(DockerSourceError(format!(
            "evaluation interval must be positive, got {interval_ms} ms"
        )));
    }
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        (
            "event".to_owned(),
            ["die", "start", "restart", "health_status", "destroy"]
                .map(String::from)
                .to_vec(),
        ),
    ]);
    let polled = signals.iter().any(|s| s.metric.polled());
    let replicas = signals.iter().any(|s| s.metric == DockerMetric::Replicas);
    let mut services: HashMap<String, u64> = HashMap::new();
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    let mut connected = false;
    let mut next = (clock.now_ms() / interval_ms + 1) * interval_ms;
    let mut events = docker
        .events(Some(EventsOptions {
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .boxed();
    loop {
        if !connected {
            match discover_all(&docker).await {
                Ok(found) => {
                    tracked = found;
                    connected = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "docker source: engine not answering; retrying in 1s");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = clock.sleep_until(next) => {
                if polled {
                    // Half an interval at most, so that a slow engine
                    // delays this slot's evaluations, never the next slot.
                    let budget = Duration::from_millis(u64::try_from(interval_ms / 2).unwrap_or(0));
                    refresh_usage(&docker, &mut tracked, &signals, next, budget).await;
                }
                if replicas {
                    let budget = Duration::from_millis(u64::try_from(interval_ms / 4).unwrap_or(0));
                    services = swarm_replicas(&docker, budget).await;
                }
                for signal in &signals {
                    let ev = SourceEvent::Evaluation(evaluate(signal, &tracked, &services, next));
                    if tx.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
                next += interval_ms;
                let now = clock.now_ms();
                if next <= now {
                    next = (now / interval_ms + 1) * interval_ms;
                }
            }
            message = events.next() => match message {
                Some(Ok(m)) => apply(&mut tracked, &m),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker source: events stream broke; re-discovering");
                    connected = false;
                    events = docker
                        .events(Some(EventsOptions {
                            filters: Some(filters.clone()),
                            ..Default::default()
                        }))
                        .boxed();
                }
                None => {
                    connected = false;
                    events = docker
                        .events(Some(EventsOptions {
                            filters: Some(filters.clone()),
                            ..Default::default()
                        }))
                        .boxed();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, EventMessage};

    fn event(action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
            }),
            time_nano: Some(1_700_000_000_123_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn events_keep_the_tracked_state_and_slots_read_it() {
        let mut tracked = HashMap::new();
        apply(
            &mut tracked,
            &event(
                "start",
                &[
                    ("name", "web-1"),
                    ("image", "lab"),
                    ("com.docker.compose.service", "web"),
                ],
            ),
        );
        apply(
            &mut tracked,
            &event("start", &[("name", "db-1"), ("image", "pg")]),
        );
        apply(
            &mut tracked,
            &event("health_status: unhealthy", &[("name", "web-1")]),
        );
        apply(
            &mut tracked,
            &event("die", &[("name", "db-1"), ("exitCode", "1")]),
        );
        let up = DockerWatch {
            name: "c_up".into(),
            metric: DockerMetric::Up,
            label: None,
            per: DockerPer::Container,
            cpu_per_replica: None,
        };
        let none = HashMap::new();
        let e = evaluate(&up, &tracked, &none, 5000);
        let got: Vec<String> = e
            .outcome
            .unwrap()
            .iter()
            .map(|(l, v)| format!("{l} {v}"))
            .collect();
        assert_eq!(
            got,
            [
                r#"c_up{compose_service="web",container="web-1",image="lab",instance="web-1",service="web"} 1"#,
                r#"c_up{container="db-1",image="pg",instance="db-1",service="db-1"} 0"#
            ]
        );
        let healthy = DockerWatch {
            name: "c_healthy".into(),
            metric: DockerMetric::Healthy,
            label: Some("com.docker.compose.service=web".into()),
            per: DockerPer::Container,
            cpu_per_replica: None,
        };
        let e = evaluate(&healthy, &tracked, &none, 5000);
        assert_eq!(
            e.outcome
                .unwrap()
                .iter()
                .map(|(_, v)| *v)
                .collect::<Vec<_>>(),
            [0.0]
        );
        apply(&mut tracked, &event("destroy", &[("name", "db-1")]));
        assert_eq!(
            evaluate(&up, &tracked, &none, 6000).outcome.unwrap().len(),
            1
        );
    }

    #[test]
    fn usage_is_read_as_docker_stats_counts_it() {
        let m = |usage, stats: &[(&str, u64)]| bollard::models::ContainerMemoryStats {
            usage,
            stats: Some(stats.iter().map(|(k, v)| ((*k).into(), *v)).collect()),
            ..Default::default()
        };
        // cgroup v2, v1, and a page cache larger than the usage.
        assert_eq!(
            memory_in_use(&m(Some(100 << 20), &[("inactive_file", 30 << 20)])),
            Some((70u64 << 20) as f64)
        );
        assert_eq!(
            memory_in_use(&m(Some(100 << 20), &[("total_inactive_file", 1 << 20)])),
            Some((99u64 << 20) as f64)
        );
        assert_eq!(
            memory_in_use(&m(Some(5), &[("inactive_file", 9)])),
            Some(0.0)
        );
        assert_eq!(memory_in_use(&m(None, &[])), None);
        // 1.5 s of CPU over 2 s of slots: 0.75 cores.
        assert_eq!(
            cpu_cores(Some((1_000_000_000, 10_000)), 2_500_000_000, 12_000),
            Some(0.75)
        );
        assert_eq!(
            cpu_cores(None, 5, 1_000),
            None,
            "the first read has nothing to compare with"
        );
        assert_eq!(
            cpu_cores(Some((9, 1_000)), 5, 2_000),
            None,
            "a counter that went back"
        );
        assert_eq!(
            cpu_cores(Some((5, 1_000)), 9, 1_000),
            None,
            "no time between the reads"
        );
    }

    #[test]
    fn polled_metrics_have_series_only_while_read() {
        let mut tracked = HashMap::new();
        apply(
            &mut tracked,
            &event("start", &[("name", "web-1"), ("image", "lab")]),
        );
        apply(
            &mut tracked,
            &event("start", &[("name", "db-1"), ("image", "pg")]),
        );
        let watch = |metric| DockerWatch {
            name: "m".into(),
            metric,
            label: None,
            per: DockerPer::Container,
            cpu_per_replica: None,
        };
        let values = |tracked: &HashMap<String, Tracked>, metric| {
            evaluate(&watch(metric), tracked, &HashMap::new(), 1000)
                .outcome
                .unwrap()
                .iter()
                .map(|(l, v)| format!("{}={v}", l.get("instance").unwrap()))
                .collect::<Vec<_>>()
        };
        assert!(values(&tracked, DockerMetric::Memory).is_empty());
        let web = tracked.get_mut("web-1").unwrap();
        web.usage.memory_bytes = Some(1024.0);
        web.usage.cpu_cores = Some(0.5);
        web.usage.restarts = Some(3.0);
        assert_eq!(values(&tracked, DockerMetric::Memory), ["web-1=1024"]);
        assert_eq!(values(&tracked, DockerMetric::Cpu), ["web-1=0.5"]);
        // A death ends the usage series; the restart count stays.
        apply(&mut tracked, &event("die", &[("name", "web-1")]));
        assert!(values(&tracked, DockerMetric::Memory).is_empty());
        assert!(values(&tracked, DockerMetric::Cpu).is_empty());
        assert_eq!(values(&tracked, DockerMetric::Restarts), ["web-1=3"]);
        assert!(DockerMetric::Restarts.polled() && !DockerMetric::Up.polled());
    }

    #[test]
    fn a_service_series_sums_up_its_containers() {
        let mut tracked = HashMap::new();
        let task = |n: &str| {
            [
                ("name", n.to_owned()),
                ("image", "lab".to_owned()),
                ("com.docker.swarm.service.name", "web".to_owned()),
            ]
        };
        for n in ["web.1", "web.2", "web.3"] {
            let attrs = task(n);
            let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            apply(&mut tracked, &event("start", &attrs));
        }
        // A Compose container, and one of no service (no service series).
        apply(
            &mut tracked,
            &event(
                "start",
                &[
                    ("name", "shop-db-1"),
                    ("com.docker.compose.project", "shop"),
                    ("com.docker.compose.service", "db"),
                ],
            ),
        );
        apply(&mut tracked, &event("start", &[("name", "lone")]));
        apply(
            &mut tracked,
            &event("health_status: healthy", &[("name", "web.1")]),
        );
        apply(
            &mut tracked,
            &event("health_status: unhealthy", &[("name", "web.2")]),
        );
        apply(&mut tracked, &event("die", &[("name", "web.3")]));
        let services = HashMap::from([("web".to_owned(), 4)]);
        let watch = |metric, cpu_per_replica| DockerWatch {
            name: "s".into(),
            metric,
            label: None,
            per: DockerPer::Service,
            cpu_per_replica,
        };
        let values = |tracked: &HashMap<String, Tracked>, metric, cpu| {
            evaluate(&watch(metric, cpu), tracked, &services, 1000)
                .outcome
                .unwrap()
                .iter()
                .map(|(l, v)| format!("{l} {v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(&tracked, DockerMetric::Up, None),
            [
                r#"s{compose_project="shop",compose_service="db",instance="db",service="db"} 1"#,
                r#"s{instance="web",service="web",swarm_service="web"} 2"#,
            ]
        );
        // Of the two running, one passes its check (the dead one's last
        // health does not count).
        assert_eq!(
            values(&tracked, DockerMetric::Healthy, None),
            [r#"s{instance="web",service="web",swarm_service="web"} 0.5"#]
        );
        assert_eq!(
            values(&tracked, DockerMetric::Replicas, None),
            [r#"s{instance="web",service="web",swarm_service="web"} 4"#]
        );
        // No series until every running container's CPU is known.
        assert!(values(&tracked, DockerMetric::SpareReplicas, Some(0.5)).is_empty());
        tracked.get_mut("web.1").unwrap().usage.cpu_cores = Some(0.9);
        assert!(values(&tracked, DockerMetric::SpareReplicas, Some(0.5)).is_empty());
        tracked.get_mut("web.2").unwrap().usage.cpu_cores = Some(0.3);
        // 1.2 cores at 0.5 a replica need 3; 2 run: one short.
        assert_eq!(
            values(&tracked, DockerMetric::SpareReplicas, Some(0.5)),
            [r#"s{instance="web",service="web",swarm_service="web"} -1"#]
        );
        assert_eq!(
            values(&tracked, DockerMetric::Cpu, None),
            [r#"s{instance="web",service="web",swarm_service="web"} 0.6"#]
        );
        // Idle: one replica is always needed.
        assert_eq!(spare_replicas(3, 0.0, 0.5), 2.0);
        assert_eq!(spare_replicas(1, 0.0, 0.5), 0.0);
        assert_eq!(spare_replicas(3, 1.0, 0.5), 1.0);
    }

    #[test]
    fn events_map_to_per_target_signals() {
        let s = signal_of(&event(
            "die",
            &[
                ("name", "web-1"),
                ("image", "lab:1"),
                ("exitCode", "137"),
                ("com.docker.compose.service", "web"),
                ("unrelated", "x"),
            ],
        ))
        .unwrap();
        assert_eq!(s.signal, "docker_container_up");
        assert_eq!(s.value, 0.0);
        assert_eq!(s.ts_ms, 1_700_000_000_123);
        assert_eq!(s.detail, "die exit_code=137");
        assert_eq!(
            s.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["compose_service=web", "container=web-1", "image=lab:1"]
        );
        let s = signal_of(&event("health_status: unhealthy", &[("name", "w")])).unwrap();
        assert_eq!((s.signal, s.value), ("docker_container_healthy", 0.0));
        assert_eq!(
            signal_of(&event("oom", &[])).unwrap().signal,
            "docker_container_oom"
        );
        assert!(signal_of(&event("exec_start: ls", &[])).is_none());
        // A huge label value is cut, never kept whole.
        let long = "a".repeat(100_000);
        let s = signal_of(&event("die", &[("name", &long)])).unwrap();
        assert_eq!(s.labels["container"].len(), MAX_VALUE);
    }
}
