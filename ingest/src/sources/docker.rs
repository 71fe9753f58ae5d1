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
//! container. A death is in the next slot's evaluation, not a scrape and a
//! query later. Tested on the real engine in `executors/tests/docker.rs`
//! (beside the executor, which builds the lab image) and end to end in
//! `tests/docker_watch.rs`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::{ClientVersion, Docker};
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
}

/// A runbook signal read from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerWatch {
    /// The signal's name (`__name__` of its series).
    pub name: String,
    /// What it measures.
    pub metric: DockerMetric,
    /// Only containers with this engine label, `KEY=VALUE`.
    pub label: Option<String>,
}

#[derive(Debug, Clone)]
struct Tracked {
    labels: BTreeMap<String, String>,
    engine: HashMap<String, String>,
    up: bool,
    healthy: Option<bool>,
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
    });
    match action {
        "start" | "restart" => {
            entry.up = true;
            // A new run's health starts over.
            entry.healthy = None;
        }
        "die" => entry.up = false,
        "health_status: healthy" => entry.healthy = Some(true),
        "health_status: unhealthy" => entry.healthy = Some(false),
        _ => {}
    }
}

/// The evaluation of `signal` at slot `ts_ms` from the tracked state:
/// series sorted by labels, each with `__name__`, `instance` (the
/// container) and `service` (its Compose or Swarm service, else its name).
fn evaluate(signal: &DockerWatch, tracked: &HashMap<String, Tracked>, ts_ms: i64) -> Evaluation {
    let selector = signal.label.as_ref().and_then(|l| l.split_once('='));
    let mut series: Vec<(Labels, f64)> = tracked
        .values()
        .filter(|t| selector.is_none_or(|(k, v)| t.engine.get(k).map(String::as_str) == Some(v)))
        .filter_map(|t| {
            let value = match signal.metric {
                DockerMetric::Up => Some(if t.up { 1.0 } else { 0.0 }),
                DockerMetric::Healthy => t.healthy.map(|h| if h { 1.0 } else { 0.0 }),
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
    Evaluation {
        signal: signal.name.clone(),
        ts_ms,
        outcome: Ok(series),
        duration_ms: 0,
        attempts: 1,
        truncated: 0,
        duplicates: 0,
    }
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
                for signal in &signals {
                    let ev = SourceEvent::Evaluation(evaluate(signal, &tracked, next));
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
        };
        let e = evaluate(&up, &tracked, 5000);
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
        };
        let e = evaluate(&healthy, &tracked, 5000);
        assert_eq!(
            e.outcome
                .unwrap()
                .iter()
                .map(|(_, v)| *v)
                .collect::<Vec<_>>(),
            [0.0]
        );
        apply(&mut tracked, &event("destroy", &[("name", "db-1")]));
        assert_eq!(evaluate(&up, &tracked, 6000).outcome.unwrap().len(), 1);
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
