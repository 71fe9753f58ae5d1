//! Executors: what performs an action the engine allowed.
//!
//! Every executor takes an action whose templates the engine already filled
//! in (every substituted label value checked against the safe-value pattern
//! first), honours dry-run, has a timeout, and returns an
//! [`ActionResult`] that says whether a retry can help (Alertmanager's
//! `Notifier.Notify` returning `(retry bool, err)` is the model).
//!
//! - [`exec`]: a local program with an argv, never a shell.
//! - [`haproxy`]: HAProxy's runtime API (reroute, replicas).
//! - [`webhook`]: an HTTP request, secrets from the environment, retried on
//!   timeouts, connection errors and 5xx only.
//! - [`agent`]: the client of `heal agent` and the protocol both sides
//!   share (the server is `daemons::agent`).
//! - [`supervisor`]: the client of `heal supervise`'s control API (the
//!   daemon is `daemons::supervisor`).
//! - [`docker`]: the Docker Engine API on its UNIX socket (containers and
//!   Swarm services), for `docker` steps and `restart`, `scale` and
//!   `rollback` on `docker/...` targets.
//!
//! [`Executors::perform`] is the one entry: the act stage hands it a
//! [`RenderedAction`] and gets an [`ActionResult`], whatever the kind.
//! `tests/compliance.rs` runs every kind through it against real processes
//! and servers: dry-run performs nothing, the timeout is honoured, and
//! retryable and final failures are told apart.

pub mod agent;
pub mod docker;
pub mod exec;
pub mod haproxy;
mod http;
pub mod supervisor;
#[cfg(test)]
mod test_server;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use remediate::action::{ActionResult, RenderedAction};
use stdx::Clock;

use crate::docker::DockerClient;
use crate::supervisor::SupervisorClient;
use remediate::runbook::DockerOp;

/// Prefix of `restart`, `scale` and `rollback` targets the Docker
/// executor handles: `docker/container/NAME`, `docker/label/KEY=VALUE`,
/// `docker/service/NAME` (a `restart` of a service is a forced redeploy;
/// a `rollback` goes to the previous spec, `to:` is not supported).
pub const DOCKER_PREFIX: &str = "docker/";

/// An environment lookup: only the binary reads the environment, and hands
/// the executors this (for `${env:NAME}` webhook secrets, the agent key's
/// `key_env`, and the `PATH` programs get).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything the executors need besides the action: the environment
/// lookup, the wall clock (agent requests are signed with the time) and
/// the supervisor's control API, when heal was given one.
#[derive(Clone)]
pub struct Executors {
    env: EnvLookup,
    clock: Arc<dyn Clock>,
    supervisor: Option<SupervisorClient>,
    docker: Option<DockerClient>,
    retry: webhook::Retry,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executors")
            .field("clock", &self.clock)
            .field("supervisor", &self.supervisor)
            .field("docker", &self.docker)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Executors {
    /// Executors reading the environment through `env` and the time from
    /// `clock`; `restart`, `scale` and `rollback` fail (saying so) until a
    /// supervisor is given.
    pub fn new(env: EnvLookup, clock: Arc<dyn Clock>) -> Executors {
        Executors {
            env,
            clock,
            supervisor: None,
            docker: None,
            retry: webhook::Retry::default(),
        }
    }

    /// Sends `restart`, `scale` and `rollback` on `supervisor/NAME` targets
    /// to this control API.
    pub fn with_supervisor(mut self, client: SupervisorClient) -> Executors {
        self.supervisor = Some(client);
        self
    }

    /// Sends `docker` steps, and `restart`, `scale` and `rollback` on
    /// `docker/...` targets, to this engine.
    pub fn with_docker(mut self, client: DockerClient) -> Executors {
        self.docker = Some(client);
        self
    }

    /// The Docker client, when heal was given one (the Docker source reads
    /// the same engine).
    pub fn docker(&self) -> Option<&DockerClient> {
        self.docker.as_ref()
    }

    /// How webhooks retry (three attempts by default).
    pub fn with_webhook_retry(mut self, retry: webhook::Retry) -> Executors {
        self.retry = retry;
        self
    }

    /// Performs `action` with its executor within `timeout`. With
    /// `dry_run`, nothing is performed: the result says what would have
    /// been. Every kind has an executor; a target none handles
    /// (`deployment/x` for `restart`) is a failed, final result saying so,
    /// never a panic.
    pub async fn perform(
        &self,
        action: &RenderedAction,
        timeout: Duration,
        dry_run: bool,
    ) -> ActionResult {
        self.perform_observed(action, timeout, dry_run, None).await
    }

    /// [`Executors::perform`], telling `spawned` the pid of the child an
    /// `exec` action starts, right after its spawn (the act stage records
    /// it in the incident store, so a restart can settle it).
    pub async fn perform_observed(
        &self,
        action: &RenderedAction,
        timeout: Duration,
        dry_run: bool,
        spawned: Option<tokio::sync::oneshot::Sender<exec::Spawned>>,
    ) -> ActionResult {
        match action {
            RenderedAction::Exec { argv } => {
                let req = exec::ExecRequest {
                    argv: argv.clone(),
                    env: [("PATH".to_owned(), (self.env)("PATH").unwrap_or_default())].into(),
                    timeout,
                    dry_run,
                };
                exec::run_observed(&req, spawned).await
            }
            RenderedAction::Reroute {
                target,
                backend,
                state,
                api,
                weight,
            } => {
                let req = haproxy::HaproxyRequest {
                    api: api.clone(),
                    operation: haproxy::Operation::SetServer {
                        backend: backend.clone(),
                        server: target.clone(),
                        state: Some(*state),
                        weight: *weight,
                    },
                    timeout,
                    dry_run,
                };
                haproxy::run(&req).await
            }
            RenderedAction::Docker {
                op,
                target,
                signal,
                replicas,
                image,
                rollout,
            } => match &self.docker {
                Some(client) => {
                    let update = docker::UpdateTo {
                        image: image.as_deref(),
                        rollout: rollout.as_ref(),
                    };
                    client
                        .run_with(
                            *op,
                            target,
                            signal.as_deref(),
                            *replicas,
                            update,
                            timeout,
                            dry_run,
                        )
                        .await
                }
                None => self.dock(*op, target, None, None, timeout, dry_run).await,
            },
            RenderedAction::Restart { target } if target.starts_with(DOCKER_PREFIX) => {
                let op = if target.starts_with("docker/service/") {
                    DockerOp::Redeploy
                } else {
                    DockerOp::Restart
                };
                self.dock(
                    op,
                    &target[DOCKER_PREFIX.len()..],
                    None,
                    None,
                    timeout,
                    dry_run,
                )
                .await
            }
            RenderedAction::Scale { target, replicas } if target.starts_with(DOCKER_PREFIX) => {
                let t = &target[DOCKER_PREFIX.len()..];
                self.dock(DockerOp::Scale, t, None, Some(*replicas), timeout, dry_run)
                    .await
            }
            RenderedAction::Rollback { target, to: None } if target.starts_with(DOCKER_PREFIX) => {
                let t = &target[DOCKER_PREFIX.len()..];
                self.dock(DockerOp::Rollback, t, None, None, timeout, dry_run)
                    .await
            }
            RenderedAction::Rollback {
                target,
                to: Some(to),
            } if target.starts_with(DOCKER_PREFIX) => ActionResult {
                ok: false,
                retryable: false,
                summary: format!(
                    "roll back {target} to {to}: a Docker rollback goes to the service's previous spec only; leave out `to`"
                ),
                output: String::new(),
                duration: Duration::ZERO,
            },
            RenderedAction::Restart { target } => {
                self.supervise(target, supervisor::Operation::Restart, timeout, dry_run)
                    .await
            }
            RenderedAction::Scale { target, replicas } => {
                let op = supervisor::Operation::Scale {
                    replicas: *replicas,
                };
                self.supervise(target, op, timeout, dry_run).await
            }
            RenderedAction::Rollback { target, to } => {
                let op = supervisor::Operation::Rollback { to: to.clone() };
                self.supervise(target, op, timeout, dry_run).await
            }
            RenderedAction::Webhook {
                url,
                method,
                headers,
                body,
            } => {
                let req = webhook::WebhookRequest {
                    method: *method,
                    url: url.clone(),
                    headers: headers.clone(),
                    body: body.clone(),
                    // The step's timeout bounds all attempts together.
                    timeout: timeout / self.retry.attempts.max(1),
                    dry_run,
                    retry: self.retry,
                };
                let env = |name: &str| (self.env)(name);
                webhook::run(&req, &env).await
            }
            RenderedAction::Agent {
                url,
                name,
                params,
                key_env,
            } => {
                let key = (self.env)(key_env)
                    .ok_or_else(|| format!("environment variable {key_env} is not set"))
                    .and_then(|text| agent::key_from_text(&text));
                match key {
                    Ok(key) => {
                        let call = agent::AgentCall {
                            url: url.clone(),
                            action: name.clone(),
                            params: params.clone(),
                            key,
                            timeout,
                            dry_run,
                        };
                        agent::call(&call, self.clock.now_secs()).await
                    }
                    Err(e) => ActionResult {
                        ok: false,
                        retryable: false,
                        summary: format!("agent {url} action {name}: key_env {key_env}: {e}"),
                        output: String::new(),
                        duration: Duration::ZERO,
                    },
                }
            }
        }
    }

    /// A Docker operation; without an engine, a failed result that says
    /// so.
    async fn dock(
        &self,
        op: DockerOp,
        target: &str,
        signal: Option<&str>,
        replicas: Option<u32>,
        timeout: Duration,
        dry_run: bool,
    ) -> ActionResult {
        match &self.docker {
            Some(client) => {
                client
                    .run(op, target, signal, replicas, timeout, dry_run)
                    .await
            }
            None => ActionResult {
                ok: false,
                retryable: false,
                summary: format!(
                    "no executor for docker target {target:?}: heal was started without --docker"
                ),
                output: String::new(),
                duration: Duration::ZERO,
            },
        }
    }

    /// `restart`, `scale` and `rollback`: through `heal supervise`'s
    /// control API for targets `supervisor/NAME`; any other target (or no
    /// supervisor) is a failed result that says so.
    async fn supervise(
        &self,
        target: &str,
        op: supervisor::Operation,
        timeout: Duration,
        dry_run: bool,
    ) -> ActionResult {
        let started = Instant::now();
        match &self.supervisor {
            Some(client) => client.run(target, &op, timeout, dry_run).await,
            None => {
                let summary = match supervisor::service_of(target) {
                    Ok(_) => format!(
                        "no executor for target {target:?}: heal watch was started without --supervisor"
                    ),
                    Err(e) => e,
                };
                ActionResult {
                    ok: false,
                    retryable: false,
                    summary,
                    output: String::new(),
                    duration: started.elapsed(),
                }
            }
        }
    }
}
