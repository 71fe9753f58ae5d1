//! The executor of `docker` steps (and of `restart`, `scale` and
//! `rollback` on `docker/...` targets): the Docker Engine API on its UNIX
//! socket, through `bollard`, never the `docker` command line.
//!
//! - containers, by name (`container/NAME`) or by label selector
//!   (`label/KEY=VALUE`, at most [`MAX_SELECTED`] containers): restart,
//!   stop, start, kill with a signal;
//! - Swarm services (`service/NAME`): scale, force a redeploy, roll back to
//!   the previous spec (the engine's own `rollback=previous`).
//!
//! Every run records the state before and after (container: status,
//! restart count, health, image, start time; service: spec version,
//! replicas, image, update state, task states) in the result's output as
//! JSON, and checks the change took: a restarted container runs with a new
//! start time, a stopped one does not run, a scaled or rolled back
//! service has its replicas running within the step's timeout. Whether the
//! action *helped* is the rule engine's verification, as for every
//! executor.
//!
//! Targets are parsed and checked again here ([`DockerTarget::parse`]):
//! a name becomes a path segment of an API URL and a selector a query
//! filter, so a label value that slipped past the engine's safe-value
//! check still never reaches the API.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    InspectServiceOptions, KillContainerOptions, ListContainersOptions, ListTasksOptions,
    RestartContainerOptions, StopContainerOptions, UpdateNodeOptions, UpdateServiceOptions,
};
use bollard::{ClientVersion, Docker};
use remediate::action::{
    ActionResult, DockerTarget, DEFAULT_SIGNAL, DOCKER_SIGNALS, MAX_DOCKER_REPLICAS,
};
use remediate::runbook::DockerOp;
use serde::Serialize;

/// The engine's socket when none is given.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Most containers one label selector may act on.
pub const MAX_SELECTED: usize = 50;

/// The API version heal speaks: Docker Engine 20.10's (1.41), which every
/// later engine accepts.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// How often convergence is polled.
const POLL: Duration = Duration::from_millis(250);

/// A client of one engine.
#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
    socket: String,
}

impl std::fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerClient")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// A container's state, as recorded before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerState {
    /// Name, without the leading `/`.
    pub name: String,
    /// First 12 characters of the id.
    pub id: String,
    /// `running`, `exited`, `restarting`, ...
    pub status: String,
    /// Whether it runs.
    pub running: bool,
    /// The engine's restart count (its restart policy's restarts).
    pub restart_count: i64,
    /// When it last started (RFC 3339).
    pub started_at: String,
    /// `healthy`, `unhealthy`, `starting`, or empty without a health check.
    pub health: String,
    /// The image it was created from.
    pub image: String,
    /// Whether the kernel's OOM killer ended its last run.
    pub oom_killed: bool,
}

/// A Swarm service's state, as recorded before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    /// Name.
    pub name: String,
    /// The spec's version index (every update raises it).
    pub version: u64,
    /// Desired replicas (`None` for a global service).
    pub replicas: Option<u64>,
    /// Image of the task template.
    pub image: String,
    /// Arguments of the task template.
    pub args: Vec<String>,
    /// The rolling update's state (`updating`, `paused`, `completed`,
    /// `rollback_completed`, ...), empty when none ran.
    pub update: String,
    /// Tasks meant to run, counted by their actual state.
    pub tasks: BTreeMap<String, usize>,
}

impl ServiceState {
    fn running(&self) -> usize {
        self.tasks.get("running").copied().unwrap_or(0)
    }
}

/// A Swarm node's state, as recorded before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeState {
    /// Its id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, ...
    pub state: String,
    /// The spec's version index (every update raises it).
    pub version: u64,
    /// Tasks placed on it that are meant to run, by their actual state.
    pub tasks: BTreeMap<String, usize>,
}

/// Why a call to the engine failed, and whether a retry could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whether trying again could help (no answer, a 5xx).
    pub retryable: bool,
    /// What failed, with the engine's message.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn engine_failure(what: &str, e: bollard::errors::Error) -> Failure {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => Failure {
            retryable: status_code >= 500,
            message: format!("{what}: engine answered {status_code}: {}", message.trim()),
        },
        other => Failure {
            retryable: true,
            message: format!("{what}: {other}"),
        },
    }
}

impl DockerClient {
    /// A client of the engine at `socket` (a path, `unix://` optional). The
    /// engine is not contacted until the first call.
    ///
    /// # Errors
    ///
    /// The socket does not exist.
    pub fn connect(socket: &str) -> Result<DockerClient, String> {
        let docker = Docker::connect_with_unix(socket, 60, &API_VERSION)
            .map_err(|e| format!("docker socket {socket}: {e}"))?;
        Ok(DockerClient {
            docker,
            socket: socket.trim_start_matches("unix://").to_owned(),
        })
    }

    /// The underlying API client (for the events and discovery sources).
    pub fn api(&self) -> &Docker {
        &self.docker
    }

    /// The socket path.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Asks the engine its version: whether it answers.
    ///
    /// # Errors
    ///
    /// The engine does not answer, with why.
    pub async fn ping(&self) -> Result<String, String> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| format!("docker engine at {}: {e}", self.socket))?;
        Ok(v.version.unwrap_or_default())
    }

    /// Performs `op` on `target` within `timeout`.
    ///
    /// Not ok and final: a target or signal that does not parse, an
    /// operation the target does not take, a 4xx answer (no such
    /// container or service, a global service to scale, no previous spec
    /// to roll back to), a selector matching nothing or too much, a change
    /// that took but did not converge in time. Retryable: the engine
    /// unreachable, a 5xx answer, a timeout before the change was made.
    pub async fn run(
        &self,
        op: DockerOp,
        target: &str,
        signal: Option<&str>,
        replicas: Option<u32>,
        timeout: Duration,
        dry_run: bool,
    ) -> ActionResult {
        self.run_with(
            op,
            target,
            signal,
            replicas,
            UpdateTo::default(),
            timeout,
            dry_run,
        )
        .await
    }

    /// [`Self::run`], with an `update`'s image and rollout.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_with(
        &self,
        op: DockerOp,
        target: &str,
        signal: Option<&str>,
        replicas: Option<u32>,
        update: UpdateTo<'_>,
        timeout: Duration,
        dry_run: bool,
    ) -> ActionResult {
        let started = Instant::now();
        let what = describe(op, target, signal, replicas, update.image);
        let result = |ok, retryable, summary: String, output: String| ActionResult {
            ok,
            retryable,
            summary,
            output,
            duration: started.elapsed(),
        };
        let parsed = match check(op, target, signal, replicas, update) {
            Ok(t) => t,
            Err(e) => return result(false, false, e, String::new()),
        };
        if dry_run {
            return result(
                true,
                false,
                format!("dry run: would {what} via unix:{}", self.socket),
                String::new(),
            );
        }
        let deadline = started + timeout;
        let work = async {
            match &parsed {
                DockerTarget::Service(name) => {
                    self.on_service(op, name, replicas, update, deadline).await
                }
                DockerTarget::Node(name) => self.on_node(op, name, deadline).await,
                _ => self.on_containers(op, &parsed, signal, deadline).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(done)) => result(
                done.ok,
                false,
                format!("{what}: {}", done.summary),
                done.output,
            ),
            Ok(Err(f)) => result(
                false,
                f.retryable,
                format!("{what}: {}", f.message),
                String::new(),
            ),
            Err(_) => result(
                false,
                true,
                format!("{what}: timed out after {timeout:?}"),
                String::new(),
            ),
        }
    }

    async fn on_containers(
        &self,
        op: DockerOp,
        target: &DockerTarget,
        signal: Option<&str>,
        deadline: Instant,
    ) -> Result<Done, Failure> {
        let names = match target {
            DockerTarget::Container(name) => vec![name.clone()],
            DockerTarget::Label { key, value } => self.select(key, value).await?,
            DockerTarget::Service(_) | DockerTarget::Node(_) => {
                unreachable!("services and nodes are handled by on_service and on_node")
            }
        };
        let mut records = Vec::new();
        let mut lines = Vec::new();
        let mut ok = true;
        for name in &names {
            let before = self.container(name).await?;
            let grace = i32::try_from(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    .saturating_sub(1)
                    .min(10),
            )
            .unwrap_or(10);
            let sig = signal.unwrap_or(DEFAULT_SIGNAL);
            let call = match op {
                DockerOp::Restart => {
                    let o = RestartContainerOptions {
                        t: Some(grace),
                        ..Default::default()
                    };
                    self.docker.restart_container(name, Some(o)).await
                }
                DockerOp::Stop => {
                    let o = StopContainerOptions {
                        t: Some(grace),
                        ..Default::default()
                    };
                    self.docker.stop_container(name, Some(o)).await
                }
                DockerOp::Start => self.docker.start_container(name, None).await,
                DockerOp::Kill => {
                    let o = KillContainerOptions {
                        signal: sig.to_owned(),
                    };
                    self.docker.kill_container(name, Some(o)).await
                }
                DockerOp::Scale
                | DockerOp::Redeploy
                | DockerOp::Rollback
                | DockerOp::Update
                | DockerOp::Drain
                | DockerOp::Activate => {
                    unreachable!("checked: container targets take container operations")
                }
            };
            // Starting a running container is a 304, which bollard reports
            // as an error: already what was asked.
            match call {
                Ok(()) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => return Err(engine_failure(&format!("container {name}"), e)),
            }
            // What the change should leave, checked until the deadline.
            let wanted = |s: &ContainerState| match op {
                DockerOp::Restart => s.running && s.started_at != before.started_at,
                DockerOp::Start => s.running,
                DockerOp::Stop => !s.running,
                DockerOp::Kill
                    if ["SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGABRT"].contains(&sig) =>
                {
                    !s.running || s.started_at != before.started_at
                }
                _ => true,
            };
            let mut after = self.container(name).await?;
            while !wanted(&after) && Instant::now() + POLL < deadline {
                tokio::time::sleep(POLL).await;
                after = self.container(name).await?;
            }
            let took = wanted(&after);
            ok &= took;
            lines.push(format!(
                "{name} {} -> {}{}",
                brief(&before),
                brief(&after),
                if took { "" } else { " (not as asked)" }
            ));
            records
                .push(serde_json::json!({ "container": name, "before": before, "after": after }));
        }
        Ok(Done {
            ok,
            summary: lines.join("; "),
            output: serde_json::json!({ "containers": records }).to_string(),
        })
    }

    /// Names of the containers (running or not) carrying `key=value`.
    async fn select(&self, key: &str, value: &str) -> Result<Vec<String>, Failure> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{key}={value}")])]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self.docker.list_containers(Some(opts)).await.map_err(|e| {
            engine_failure(&format!("listing containers with label {key}={value}"), e)
        })?;
        let mut names: Vec<String> = list
            .into_iter()
            .filter_map(|c| c.names?.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Failure {
                retryable: false,
                message: format!("no container carries label {key}={value}"),
            });
        }
        if names.len() > MAX_SELECTED {
            return Err(Failure {
                retryable: false,
                message: format!(
                    "{} containers carry label {key}={value}, more than the {MAX_SELECTED} one step may act on",
                    names.len()
                ),
            });
        }
        Ok(names)
    }

    /// A container's state.
    ///
    /// # Errors
    ///
    /// The engine's answer (404 for no such container) or no answer.
    pub async fn container(&self, name: &str) -> Result<ContainerState, Failure> {
        let c = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(|e| engine_failure(&format!("container {name}"), e))?;
        let state = c.state.unwrap_or_default();
        Ok(ContainerState {
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            id: c.id.unwrap_or_default().chars().take(12).collect(),
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            restart_count: c.restart_count.unwrap_or(0),
            started_at: state.started_at.unwrap_or_default(),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            image: c.config.and_then(|c| c.image).unwrap_or_default(),
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    /// A service's state, its tasks counted.
    ///
    /// # Errors
    ///
    /// The engine's answer (404 for no such service, 503 outside a swarm)
    /// or no answer.
    pub async fn service(&self, name: &str) -> Result<ServiceState, Failure> {
        Ok(self.service_full(name).await?.0)
    }

    async fn service_full(
        &self,
        name: &str,
    ) -> Result<(ServiceState, bollard::models::Service), Failure> {
        let s = self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
            .map_err(|e| engine_failure(&format!("service {name}"), e))?;
        let counts = self.task_states("service", name).await?;
        let spec = s.spec.clone().unwrap_or_default();
        let container = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref());
        let state = ServiceState {
            name: spec.name.clone().unwrap_or_else(|| name.to_owned()),
            version: s.version.as_ref().and_then(|v| v.index).unwrap_or(0),
            replicas: spec
                .mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas)
                .and_then(|r| u64::try_from(r).ok()),
            image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
            args: container.and_then(|c| c.args.clone()).unwrap_or_default(),
            update: s
                .update_status
                .as_ref()
                .and_then(|u| u.state)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            tasks: counts,
        };
        Ok((state, s))
    }

    /// The tasks meant to run (desired state `running`) of a service or a
    /// node (`by`: `service` or `node`), counted by their actual state.
    async fn task_states(&self, by: &str, name: &str) -> Result<BTreeMap<String, usize>, Failure> {
        let filters = HashMap::from([
            (by.to_owned(), vec![name.to_owned()]),
            ("desired-state".to_owned(), vec!["running".to_owned()]),
        ]);
        let tasks = self
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| engine_failure(&format!("tasks of {by} {name}"), e))?;
        let mut counts = BTreeMap::new();
        for t in tasks {
            let state = t
                .status
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".to_owned());
            *counts.entry(state).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// A node's state, its tasks counted.
    ///
    /// # Errors
    ///
    /// The engine's answer (404 for no such node, 503 outside a swarm) or
    /// no answer.
    pub async fn node(&self, name: &str) -> Result<NodeState, Failure> {
        Ok(self.node_full(name).await?.0)
    }

    async fn node_full(&self, name: &str) -> Result<(NodeState, bollard::models::Node), Failure> {
        let n = self
            .docker
            .inspect_node(name)
            .await
            .map_err(|e| engine_failure(&format!("node {name}"), e))?;
        let id = n.id.clone().unwrap_or_default();
        let counts = self.task_states("node", &id).await?;
        let state = NodeState {
            id,
            hostname: n
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            availability: n
                .spec
                .as_ref()
                .and_then(|s| s.availability)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            state: n
                .status
                .as_ref()
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            version: n.version.as_ref().and_then(|v| v.index).unwrap_or(0),
            tasks: counts,
        };
        Ok((state, n))
    }

    /// Drains a node (and waits until none of its tasks runs: the engine
    /// moved them to the other nodes, or, with none to take them, left
    /// them pending) or makes it active again.
    async fn on_node(&self, op: DockerOp, name: &str, deadline: Instant) -> Result<Done, Failure> {
        use bollard::models::NodeSpecAvailabilityEnum as A;
        let (before, node) = self.node_full(name).await?;
        let mut spec = node.spec.clone().unwrap_or_default();
        spec.availability = Some(match op {
            DockerOp::Drain => A::DRAIN,
            _ => A::ACTIVE,
        });
        let options = UpdateNodeOptions {
            version: i64::try_from(before.version).unwrap_or(i64::MAX),
        };
        self.docker
            .update_node(&before.id, spec, options)
            .await
            .map_err(|e| engine_failure(&format!("updating node {name}"), e))?;
        let done = |s: &NodeState| match op {
            DockerOp::Drain => s.availability == "drain" && !s.tasks.contains_key("running"),
            _ => s.availability == "active",
        };
        let mut after = self.node(name).await?;
        while !done(&after) && Instant::now() + POLL < deadline {
            tokio::time::sleep(POLL).await;
            after = self.node(name).await?;
        }
        let ok = done(&after);
        let brief = |s: &NodeState| {
            let tasks: Vec<String> = s.tasks.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!(
                "{} {} ({})",
                s.availability,
                s.state,
                if tasks.is_empty() {
                    "no tasks".to_owned()
                } else {
                    tasks.join(", ")
                }
            )
        };
        Ok(Done {
            ok,
            summary: format!(
                "{} -> {}{}",
                brief(&before),
                brief(&after),
                if ok {
                    ""
                } else {
                    " (not converged within the step's timeout)"
                }
            ),
            output: serde_json::json!({"node": name, "before": before, "after": after}).to_string(),
        })
    }

    async fn on_service(
        &self,
        op: DockerOp,
        name: &str,
        replicas: Option<u32>,
        update: UpdateTo<'_>,
        deadline: Instant,
    ) -> Result<Done, Failure> {
        let (before, service) = self.service_full(name).await?;
        let mut spec = service.spec.clone().unwrap_or_default();
        let version = i32::try_from(before.version).unwrap_or(i32::MAX);
        let mut options = UpdateServiceOptions {
            version,
            ..Default::default()
        };
        match op {
            DockerOp::Scale => {
                let Some(replicated) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut())
                else {
                    return Err(Failure {
                        retryable: false,
                        message: format!(
                            "service {name} is not replicated: only replicated services scale"
                        ),
                    });
                };
                replicated.replicas = replicas.map(i64::from);
            }
            DockerOp::Redeploy => {
                let template = spec.task_template.get_or_insert_with(Default::default);
                template.force_update = Some(template.force_update.unwrap_or(0) + 1);
            }
            DockerOp::Rollback => options.rollback = Some("previous".to_owned()),
            DockerOp::Update => {
                use bollard::models::ServiceSpecUpdateConfigFailureActionEnum as F;
                use remediate::runbook::FailureAction;
                let template = spec.task_template.get_or_insert_with(Default::default);
                let container = template.container_spec.get_or_insert_with(Default::default);
                container.image = update.image.map(str::to_owned);
                let r = update.rollout.cloned().unwrap_or_default();
                let ns = |d: remediate::Duration| d.as_millis_i64().saturating_mul(1_000_000);
                spec.update_config = Some(bollard::models::ServiceSpecUpdateConfig {
                    parallelism: Some(i64::from(r.parallelism)),
                    delay: Some(ns(r.delay)),
                    monitor: Some(ns(r.monitor)),
                    failure_action: Some(match r.failure_action {
                        FailureAction::Rollback => F::ROLLBACK,
                        FailureAction::Pause => F::PAUSE,
                        FailureAction::Continue => F::CONTINUE,
                    }),
                    max_failure_ratio: Some(r.max_failure_ratio),
                    ..spec.update_config.clone().unwrap_or_default()
                });
            }
            DockerOp::Restart
            | DockerOp::Stop
            | DockerOp::Start
            | DockerOp::Kill
            | DockerOp::Drain
            | DockerOp::Activate => {
                unreachable!("checked: service targets take service operations")
            }
        }
        let answer = self
            .docker
            .update_service(name, spec, options, None)
            .await
            .map_err(|e| engine_failure(&format!("updating service {name}"), e))?;
        let warnings = answer.warnings.unwrap_or_default();
        // Converged: the update (if one runs) is done and as many tasks
        // run as are desired. A paused update is a failure the engine
        // stopped at; waiting longer would not help.
        let mut after = self.service(name).await?;
        let converged = |s: &ServiceState| {
            let update_done = matches!(s.update.as_str(), "" | "completed" | "rollback_completed");
            let update_stuck = matches!(s.update.as_str(), "paused" | "rollback_paused");
            let running_ok = s.replicas.is_none_or(|r| s.running() as u64 == r)
                && s.tasks.keys().all(|k| k == "running");
            match op {
                DockerOp::Rollback => {
                    (s.update == "rollback_completed" && running_ok, update_stuck)
                }
                // The engine's own rollback of a failed update is the end
                // of it, and a failure.
                DockerOp::Update => (
                    s.update == "completed" && running_ok && s.version > before.version,
                    update_stuck || s.update == "rollback_completed",
                ),
                _ => (
                    update_done && running_ok && s.version > before.version,
                    update_stuck,
                ),
            }
        };
        loop {
            let (done, stuck) = converged(&after);
            if done || stuck || Instant::now() + POLL >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
            after = self.service(name).await?;
        }
        let (ok, stuck) = converged(&after);
        let how = if ok {
            String::new()
        } else if stuck {
            format!(" (the engine's update is {})", after.update)
        } else {
            " (not converged within the step's timeout)".to_owned()
        };
        Ok(Done {
            ok,
            summary: format!(
                "{} -> {}{how}",
                brief_service(&before),
                brief_service(&after)
            ),
            output: serde_json::json!({
                "service": name,
                "before": before,
                "after": after,
                "warnings": warnings,
            })
            .to_string(),
        })
    }
}

/// What a run did.
#[derive(Debug)]
struct Done {
    ok: bool,
    summary: String,
    output: String,
}

fn brief(s: &ContainerState) -> String {
    let health = if s.health.is_empty() {
        String::new()
    } else {
        format!(" {}", s.health)
    };
    format!("{}{health} (restarts {})", s.status, s.restart_count)
}

fn brief_service(s: &ServiceState) -> String {
    let replicas = s
        .replicas
        .map_or_else(|| "global".to_owned(), |r| r.to_string());
    format!(
        "v{} {} {}/{replicas} running{}",
        s.version,
        s.image,
        s.running(),
        if s.update.is_empty() {
            String::new()
        } else {
            format!(" update {}", s.update)
        }
    )
}

/// The image and rollout of an `update` step (none for the others).
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateTo<'a> {
    /// The image the tasks move to.
    pub image: Option<&'a str>,
    /// How the rolling update proceeds (Swarm's defaults for the rest).
    pub rollout: Option<&'a remediate::runbook::Rollout>,
}

/// One line naming the operation, for summaries.
pub fn describe(
    op: DockerOp,
    target: &str,
    signal: Option<&str>,
    replicas: Option<u32>,
    image: Option<&str>,
) -> String {
    match op {
        DockerOp::Update => format!("update {target} to {}", image.unwrap_or("?")),
        DockerOp::Kill => format!("kill {target} with {}", signal.unwrap_or(DEFAULT_SIGNAL)),
        DockerOp::Scale => match replicas {
            Some(n) => format!("scale {target} to {n}"),
            None => format!("scale {target}"),
        },
        _ => format!("{} {target}", op.as_str()),
    }
}

/// Everything checked before the engine is contacted: the target's form
/// and kind, the signal, the replica count.
fn check(
    op: DockerOp,
    target: &str,
    signal: Option<&str>,
    replicas: Option<u32>,
    update: UpdateTo<'_>,
) -> Result<DockerTarget, String> {
    let parsed = DockerTarget::parse(target, op)?;
    match (op, update.image) {
        (DockerOp::Update, Some(image)) => remediate::action::image_ref(image)?,
        (DockerOp::Update, None) => return Err("update needs an image".to_owned()),
        (_, Some(_)) => return Err(format!("{} takes no image", op.as_str())),
        (_, None) => {}
    }
    if let Some(r) = update.rollout {
        if op != DockerOp::Update {
            return Err(format!("{} takes no rollout", op.as_str()));
        }
        if r.parallelism == 0 || !(0.0..=1.0).contains(&r.max_failure_ratio) {
            return Err(format!(
                "refusing rollout: parallelism {} (at least 1), max_failure_ratio {} (within [0, 1])",
                r.parallelism, r.max_failure_ratio
            ));
        }
    }
    if let Some(sig) = signal {
        if op != DockerOp::Kill {
            return Err(format!("{} takes no signal", op.as_str()));
        }
        if !DOCKER_SIGNALS.contains(&sig) {
            return Err(format!(
                "refusing signal {sig:?}: expected one of {}",
                DOCKER_SIGNALS.join(", ")
            ));
        }
    }
    match (op, replicas) {
        (DockerOp::Scale, Some(n)) if (1..=MAX_DOCKER_REPLICAS).contains(&n) => {}
        (DockerOp::Scale, Some(n)) => {
            return Err(format!(
                "refusing {n} replicas: must be within [1, {MAX_DOCKER_REPLICAS}]"
            ))
        }
        (DockerOp::Scale, None) => return Err("scale needs a replica count".to_owned()),
        (_, Some(_)) => return Err(format!("{} takes no replica count", op.as_str())),
        (_, None) => {}
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_plain(
        op: DockerOp,
        target: &str,
        signal: Option<&str>,
        replicas: Option<u32>,
    ) -> Result<DockerTarget, String> {
        check(op, target, signal, replicas, UpdateTo::default())
    }

    #[test]
    fn an_update_takes_a_checked_image_and_only_an_update_does() {
        let to = |image| UpdateTo {
            image: Some(image),
            rollout: None,
        };
        assert!(check(
            DockerOp::Update,
            "service/api",
            None,
            None,
            to("reg.example:5000/api:v2")
        )
        .is_ok());
        assert!(check(
            DockerOp::Update,
            "service/api",
            None,
            None,
            to("api:v2; rm -rf /")
        )
        .is_err());
        assert!(check(DockerOp::Update, "service/api", None, None, to("../../etc")).is_err());
        assert!(check(
            DockerOp::Update,
            "service/api",
            None,
            None,
            UpdateTo::default()
        )
        .is_err());
        assert!(check(DockerOp::Restart, "container/api", None, None, to("api:v2")).is_err());
        let bad = remediate::runbook::Rollout {
            parallelism: 0,
            ..Default::default()
        };
        let with = UpdateTo {
            image: Some("api:v2"),
            rollout: Some(&bad),
        };
        assert!(check(DockerOp::Update, "service/api", None, None, with).is_err());
    }

    #[test]
    fn hostile_targets_and_arguments_are_refused_before_the_engine() {
        assert!(check_plain(DockerOp::Restart, "container/web", None, None).is_ok());
        assert_eq!(
            check_plain(DockerOp::Restart, "container/web/../../v1.41/containers/x/kill", None, None).unwrap_err(),
            "docker target \"container/web/../../v1.41/containers/x/kill\": refusing name \"web/../../v1.41/containers/x/kill\": allowed are 1 to 128 of [A-Za-z0-9_.-], starting with a letter or digit"
        );
        assert!(check_plain(DockerOp::Kill, "container/web", Some("SIGKILL; rm"), None).is_err());
        assert!(check_plain(DockerOp::Stop, "container/web", Some("SIGTERM"), None).is_err());
        assert!(check_plain(DockerOp::Scale, "service/api", None, Some(0)).is_err());
        assert!(check_plain(DockerOp::Scale, "service/api", None, Some(101)).is_err());
        assert!(check_plain(DockerOp::Scale, "service/api", None, None).is_err());
        assert!(check_plain(DockerOp::Restart, "container/web", None, Some(2)).is_err());
        assert!(check_plain(DockerOp::Restart, "label/app=web&all=1", None, None).is_err());
    }

    #[tokio::test]
    async fn dry_run_contacts_no_engine() {
        // A socket path that exists but is no engine: any call would fail.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        std::fs::write(&path, b"").unwrap();
        let c = DockerClient::connect(path.to_str().unwrap()).unwrap();
        let r = c
            .run(
                DockerOp::Scale,
                "service/api",
                None,
                Some(3),
                Duration::from_secs(1),
                true,
            )
            .await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.summary,
            format!(
                "dry run: would scale service/api to 3 via unix:{}",
                path.display()
            )
        );
        let r = c
            .run(
                DockerOp::Restart,
                "container/web",
                None,
                None,
                Duration::from_secs(1),
                false,
            )
            .await;
        assert!(!r.ok && r.retryable, "{r:?}");
    }
}
