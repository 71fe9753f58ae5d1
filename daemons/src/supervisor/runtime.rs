//! The running supervisor: one task per replica, each looping through
//! "wait for dependencies, start, watch, back off".
//!
//! Why one task per replica rather than one loop over all children: a
//! replica's life is a sequence of waits (for its dependencies, for its
//! child to exit, for the next check, for the backoff), and a task per
//! replica writes that sequence down as straight-line code whose every
//! wait also listens for a control message (restart, stop). The shared
//! part (statuses, the durable state) sits behind one std `Mutex` held
//! only for short, non-async updates; changes wake dependency waiters
//! through one `Notify`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::Command;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::config::{CheckKind, Release, ServiceConfig, SupervisorConfig, MAX_REPLICAS};
use super::state::{State, StateFile};
use super::SupervisorError;
use executors::haproxy::{self, HaproxyRequest};
use stdx::{Backoff, Clock};

/// Before its first passing check a replica is probed this often (or at
/// its check interval, if shorter), so dependents start soon after it
/// answers rather than up to a whole interval later.
const STARTUP_PROBE: Duration = Duration::from_millis(100);

/// Bound of one HAProxy registration or removal (removal waits for the
/// server's connections to finish).
const HAPROXY_TIMEOUT: Duration = Duration::from_secs(10);

/// Dependency waiters also re-check this often, in case what they wait
/// for changed without a status update (a dependency's port closing).
const DEPENDENCY_POLL: Duration = Duration::from_millis(250);

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for its `depends_on` services to pass their checks.
    WaitingForDependencies,
    /// Started, has not passed its check yet.
    Starting,
    /// Running and passing its check.
    Healthy,
    /// Exited or killed; waiting out the backoff before starting again.
    Backoff,
    /// Stopped on request (scale down, shutdown).
    Stopped,
}

/// One replica as the control API shows it. Times are ms since the Unix
/// epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    /// Index within the service, from 0.
    pub replica: u32,
    /// Its port, when the service has a range.
    pub port: Option<u16>,
    /// Where it is.
    pub phase: Phase,
    /// Pid of the running child.
    pub pid: Option<u32>,
    /// Release version of the running (or last) child.
    pub version: Option<String>,
    /// How many times a child was started for this replica.
    pub starts: u64,
    /// When the current (or last) child was started.
    pub started_ms: Option<i64>,
    /// When the current child first passed its check.
    pub healthy_ms: Option<i64>,
    /// Failed checks in a row of the current child.
    pub check_failures: u32,
    /// How the last child ended: `exit status 1`, `killed by signal 9`,
    /// `3 failed checks in a row, last: ...; killed by signal 15`,
    /// `restart requested; killed by signal 15`.
    pub last_exit: Option<String>,
    /// When the last child ended.
    pub last_exit_ms: Option<i64>,
    /// Why the last start failed, if it did (program not found, ...).
    pub last_error: Option<String>,
    /// During a backoff: when the next start is due.
    pub next_start_ms: Option<i64>,
    /// With `haproxy:` on the service: the last registration or removal
    /// (`registered server be/api-0 at 127.0.0.1:18000`, or its error).
    pub haproxy: Option<String>,
}

/// One service as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// The current release.
    pub release: Release,
    /// Every version recorded, in order of first activation.
    pub versions: Vec<String>,
    /// Replicas asked for.
    pub replicas: u32,
    /// Whether at least one replica passes its check (what dependents wait
    /// for).
    pub ready: bool,
    /// The services this one waits for.
    pub depends_on: Vec<String>,
    /// Every replica.
    pub instances: Vec<ReplicaStatus>,
}

/// A message to a replica task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Kill the child (if any) and start again at once, with the release
    /// current by then, backoff reset.
    Restart,
    /// Kill the child and end.
    Stop,
}

/// Runs the services of a configuration. Cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    services: BTreeMap<String, Arc<ServiceConfig>>,
    shared: Mutex<Shared>,
    changed: Notify,
    state_file: StateFile,
    log_dir: PathBuf,
    http: reqwest::Client,
    next_id: AtomicU64,
    /// Wall time of starts, exits and releases (status and state only:
    /// waits run on tokio's monotonic timers).
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Shared {
    state: State,
    replicas: BTreeMap<String, Vec<Slot>>,
    stopping: bool,
}

#[derive(Debug)]
struct Slot {
    /// Unique over the supervisor's life, so a task of a replica removed by
    /// a scale-down never updates a new replica with the same index.
    id: u64,
    status: ReplicaStatus,
    control: mpsc::UnboundedSender<Control>,
    task: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts every service of `config`, recording releases in `state_dir`
    /// (created if missing; children's output goes to `state_dir/logs/`).
    ///
    /// A service's current release is the one recorded in the state (so a
    /// `deploy` survives a restart of the supervisor), unless the
    /// configuration names a version never run, which is activated as if
    /// deployed.
    ///
    /// # Errors
    ///
    /// The state directory or file cannot be created or read, or the
    /// configuration's release reuses a recorded version with another argv.
    pub async fn start(
        config: SupervisorConfig,
        state_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Supervisor, SupervisorError> {
        let log_dir = state_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|source| SupervisorError::Dir {
            path: log_dir.clone(),
            source,
        })?;
        let state_file = StateFile::in_dir(state_dir);
        let mut state = state_file.read()?;
        let now = clock.now_ms();
        for s in &config.services {
            let entry = state.services.entry(s.name.clone()).or_default();
            if entry.release(&s.release.version).is_none() {
                entry.activate(s.release.clone(), now)?;
            } else if entry.release(&s.release.version).map(|r| &r.release) != Some(&s.release) {
                return Err(SupervisorError::VersionConflict {
                    version: s.release.version.clone(),
                });
            }
        }
        state_file.write(&state)?;
        let services: BTreeMap<String, Arc<ServiceConfig>> = config
            .services
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| SupervisorError::State {
                path: state_file.path().to_path_buf(),
                message: format!("building the HTTP check client: {e}"),
            })?;
        let inner = Arc::new(Inner {
            services,
            shared: Mutex::new(Shared {
                state,
                replicas: BTreeMap::new(),
                stopping: false,
            }),
            changed: Notify::new(),
            state_file,
            log_dir,
            http,
            next_id: AtomicU64::new(1),
            clock,
        });
        {
            let mut shared = inner.lock();
            for (name, svc) in &inner.services {
                let slots = shared.replicas.entry(name.clone()).or_default();
                for i in 0..svc.replicas {
                    slots.push(spawn_replica(&inner, svc, i));
                }
            }
        }
        Ok(Supervisor { inner })
    }

    /// Every service, by name.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let shared = self.inner.lock();
        self.inner
            .services
            .values()
            .map(|svc| self.inner.service_status(&shared, svc))
            .collect()
    }

    /// One service.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownService`].
    pub fn service(&self, name: &str) -> Result<ServiceStatus, SupervisorError> {
        let svc = self.inner.config(name)?;
        let shared = self.inner.lock();
        Ok(self.inner.service_status(&shared, svc))
    }

    /// Restarts every replica of `name` at once (kill, start again without
    /// backoff, after its dependencies pass). Returns once every replica
    /// was told; the new children's starts show in the status.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownService`], [`SupervisorError::ShuttingDown`].
    pub fn restart(&self, name: &str) -> Result<ServiceStatus, SupervisorError> {
        let svc = self.inner.config(name)?;
        let shared = self.inner.lock();
        if shared.stopping {
            return Err(SupervisorError::ShuttingDown);
        }
        for slot in shared.replicas.get(name).into_iter().flatten() {
            let _ = slot.control.send(Control::Restart);
        }
        Ok(self.inner.service_status(&shared, svc))
    }

    /// Runs `replicas` replicas of `name`: starts the missing ones on the
    /// next ports of the range, stops (SIGKILL) the highest ones beyond.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::InvalidReplicas`] for 0, or more than the port
    /// range holds; [`SupervisorError::UnknownService`].
    pub async fn scale(&self, name: &str, replicas: u32) -> Result<ServiceStatus, SupervisorError> {
        let svc = self.inner.config(name)?.clone();
        let room = svc.ports.map(|r| r.len()).unwrap_or(1).min(MAX_REPLICAS);
        let invalid = |reason: String| SupervisorError::InvalidReplicas {
            service: name.to_owned(),
            replicas,
            reason,
        };
        if replicas == 0 {
            return Err(invalid("at least 1 replica runs".to_owned()));
        }
        if replicas > room {
            return Err(invalid(match svc.ports {
                Some(r) => format!("port range {r} holds {room}"),
                None => "the service has no `ports`, so it runs one replica".to_owned(),
            }));
        }
        let removed: Vec<Slot> = {
            let mut shared = self.inner.lock();
            if shared.stopping {
                return Err(SupervisorError::ShuttingDown);
            }
            let slots = shared.replicas.entry(name.to_owned()).or_default();
            let have = slots.len() as u32;
            let removed = if replicas < have {
                slots.split_off(replicas as usize)
            } else {
                Vec::new()
            };
            for i in have..replicas {
                let slot = spawn_replica(&self.inner, &svc, i);
                shared
                    .replicas
                    .get_mut(name)
                    .expect("entry made above")
                    .push(slot);
            }
            removed
        };
        self.inner.deregister(&svc, &removed).await;
        stop_slots(removed).await;
        self.inner.changed.notify_waiters();
        self.service(name)
    }

    /// Makes `release` current for `name` and restarts every replica with
    /// it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::InvalidRelease`] (every problem listed),
    /// [`SupervisorError::VersionConflict`], [`SupervisorError::UnknownService`],
    /// [`SupervisorError::State`] when it cannot be recorded.
    pub fn deploy(&self, name: &str, release: Release) -> Result<ServiceStatus, SupervisorError> {
        let svc = self.inner.config(name)?;
        let problems = release.problems(svc.ports.is_some());
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .into_iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect();
            return Err(SupervisorError::InvalidRelease(text.join("; ")));
        }
        let now = self.inner.now_ms();
        self.activate(name, move |state| state.activate(release, now))
    }

    /// Goes back to release `to`, or to the release active before the
    /// current one, and restarts every replica with it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoPreviousRelease`], [`SupervisorError::UnknownVersion`],
    /// [`SupervisorError::UnknownService`], [`SupervisorError::State`].
    pub fn rollback(&self, name: &str, to: Option<&str>) -> Result<ServiceStatus, SupervisorError> {
        self.inner.config(name)?;
        let now = self.inner.now_ms();
        self.activate(name, |state| {
            let release = state.rollback_target(to)?;
            state.activate(release, now)
        })
    }

    /// Changes the current release under the lock, persists, then restarts
    /// the replicas; on any error nothing changed.
    fn activate(
        &self,
        name: &str,
        change: impl FnOnce(&mut super::state::ServiceState) -> Result<(), SupervisorError>,
    ) -> Result<ServiceStatus, SupervisorError> {
        let svc = self.inner.config(name)?;
        let mut shared = self.inner.lock();
        if shared.stopping {
            return Err(SupervisorError::ShuttingDown);
        }
        let mut state = shared.state.clone();
        change(state.services.entry(name.to_owned()).or_default())?;
        self.inner.state_file.write(&state)?;
        shared.state = state;
        for slot in shared.replicas.get(name).into_iter().flatten() {
            let _ = slot.control.send(Control::Restart);
        }
        Ok(self.inner.service_status(&shared, svc))
    }

    /// Removes every replica from its HAProxy backend (if any), stops
    /// every replica (SIGKILL) and waits for their tasks.
    pub async fn shutdown(&self) {
        let by_service: Vec<(String, Vec<Slot>)> = {
            let mut shared = self.inner.lock();
            shared.stopping = true;
            std::mem::take(&mut shared.replicas).into_iter().collect()
        };
        let mut all = Vec::new();
        for (name, slots) in by_service {
            if let Some(svc) = self.inner.services.get(&name) {
                self.inner.deregister(svc, &slots).await;
            }
            all.extend(slots);
        }
        stop_slots(all).await;
    }

    /// The state file releases are recorded in.
    pub fn state_file(&self) -> &Path {
        self.inner.state_file.path()
    }
}

/// Tells each slot's task to stop and waits for it (the child is killed
/// and reaped before the task ends).
async fn stop_slots(slots: Vec<Slot>) {
    let mut tasks = Vec::new();
    for mut slot in slots {
        let _ = slot.control.send(Control::Stop);
        tasks.extend(slot.task.take());
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn spawn_replica(inner: &Arc<Inner>, svc: &Arc<ServiceConfig>, replica: u32) -> Slot {
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let port = svc.ports.and_then(|r| r.port(replica));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_replica(
        inner.clone(),
        svc.clone(),
        id,
        replica,
        port,
        rx,
    ));
    Slot {
        id,
        status: ReplicaStatus {
            replica,
            port,
            phase: Phase::WaitingForDependencies,
            pid: None,
            version: None,
            starts: 0,
            started_ms: None,
            healthy_ms: None,
            check_failures: 0,
            last_exit: None,
            last_exit_ms: None,
            last_error: None,
            next_start_ms: None,
            haproxy: None,
        },
        control: tx,
        task: Some(task),
    }
}

impl Inner {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind; keep
        // serving rather than poisoning every later request.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self, name: &str) -> Result<&Arc<ServiceConfig>, SupervisorError> {
        self.services
            .get(name)
            .ok_or_else(|| SupervisorError::UnknownService {
                name: name.to_owned(),
                known: self
                    .services
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn service_status(&self, shared: &Shared, svc: &ServiceConfig) -> ServiceStatus {
        let state = shared.state.services.get(&svc.name);
        let instances: Vec<ReplicaStatus> = shared
            .replicas
            .get(&svc.name)
            .into_iter()
            .flatten()
            .map(|s| s.status.clone())
            .collect();
        ServiceStatus {
            name: svc.name.clone(),
            release: state
                .and_then(|s| s.current_release())
                .cloned()
                .unwrap_or_else(|| svc.release.clone()),
            versions: state
                .map(|s| {
                    s.releases
                        .iter()
                        .map(|r| r.release.version.clone())
                        .collect()
                })
                .unwrap_or_default(),
            replicas: instances.len() as u32,
            ready: instances.iter().any(|r| r.phase == Phase::Healthy),
            depends_on: svc.depends_on.clone(),
            instances,
        }
    }

    /// Applies `f` to the status of replica `id` (if it still exists) and
    /// wakes dependency waiters.
    fn update(&self, service: &str, id: u64, f: impl FnOnce(&mut ReplicaStatus)) {
        {
            let mut shared = self.lock();
            if let Some(slot) = shared
                .replicas
                .get_mut(service)
                .and_then(|v| v.iter_mut().find(|s| s.id == id))
            {
                f(&mut slot.status);
            }
        }
        self.changed.notify_waiters();
    }

    fn current_release(&self, svc: &ServiceConfig) -> Release {
        self.lock()
            .state
            .services
            .get(&svc.name)
            .and_then(|s| s.current_release())
            .cloned()
            .unwrap_or_else(|| svc.release.clone())
    }

    /// Records a start of `version` in the durable state. A failed write is
    /// logged, not fatal: the child runs either way, and the next change
    /// rewrites the whole file.
    fn record_start(&self, service: &str, version: &str) {
        let mut shared = self.lock();
        if let Some(s) = shared.state.services.get_mut(service) {
            s.record_start(version, self.now_ms());
        }
        if let Err(e) = self.state_file.write(&shared.state) {
            tracing::error!(stage = "supervisor", %service, error = %e, "recording a start");
        }
    }

    /// Resolves once every dependency of `svc` has a replica that passes
    /// its check now.
    async fn dependencies_ready(&self, svc: &ServiceConfig) {
        if svc.depends_on.is_empty() {
            return;
        }
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.dependencies_pass(svc).await {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(DEPENDENCY_POLL) => {}
            }
        }
    }

    async fn dependencies_pass(&self, svc: &ServiceConfig) -> bool {
        for dep in &svc.depends_on {
            let Some(dep_cfg) = self.services.get(dep) else {
                return false;
            };
            // Healthy replicas per the status, then probed again right now:
            // after a power cut a dependency's status may not yet say that
            // its child died.
            let ports: Vec<Option<u16>> = {
                let shared = self.lock();
                shared
                    .replicas
                    .get(dep)
                    .into_iter()
                    .flatten()
                    .filter(|s| s.status.phase == Phase::Healthy)
                    .map(|s| s.status.port)
                    .collect()
            };
            let mut ok = false;
            for port in ports {
                if self.probe(dep_cfg, port).await.is_ok() {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return false;
            }
        }
        true
    }

    /// One check of a replica on `port`. A `pid` check has nothing to probe
    /// from outside (the replica's own task watches its child).
    async fn probe(&self, svc: &ServiceConfig, port: Option<u16>) -> Result<(), String> {
        let check = &svc.check;
        let timeout = Duration::from_millis(check.timeout.as_millis());
        let Some(port) = port else {
            return Ok(());
        };
        match check.kind {
            CheckKind::Pid => Ok(()),
            CheckKind::Tcp => {
                match tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect(("127.0.0.1", port)),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("tcp check of port {port}: {e}")),
                    Err(_) => Err(format!(
                        "tcp check of port {port}: timed out after {timeout:?}"
                    )),
                }
            }
            CheckKind::Http => {
                let path = check.path.as_deref().unwrap_or("/");
                let url = format!("http://127.0.0.1:{port}{path}");
                match self.http.get(&url).timeout(timeout).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!(
                        "http check GET {url}: status {}",
                        r.status().as_u16()
                    )),
                    Err(e) if e.is_timeout() => {
                        Err(format!("http check GET {url}: timed out after {timeout:?}"))
                    }
                    Err(e) => Err(format!("http check GET {url}: {}", error_chain(&e))),
                }
            }
        }
    }

    /// Registers replica `replica` in the service's HAProxy backend, if it
    /// has one and this was not done yet; `registered` remembers it across
    /// the replica's restarts (the server stays in the backend meanwhile;
    /// HAProxy's own checks, if configured, see it down).
    async fn register(
        &self,
        svc: &ServiceConfig,
        id: u64,
        replica: u32,
        port: Option<u16>,
        registered: &mut bool,
    ) {
        let (Some(h), Some(port), false) = (&svc.haproxy, port, *registered) else {
            return;
        };
        let r = haproxy::run(&HaproxyRequest {
            api: h.api.clone(),
            operation: haproxy::Operation::AddServer {
                backend: h.backend.clone(),
                server: server_name(&svc.name, replica),
                address: format!("127.0.0.1:{port}"),
            },
            timeout: HAPROXY_TIMEOUT,
            dry_run: false,
        })
        .await;
        if r.ok {
            *registered = true;
        } else {
            tracing::warn!(stage = "supervisor", service = %svc.name, replica, summary = %r.summary, "registering in HAProxy failed; retrying at the next passing check");
        }
        self.update(&svc.name, id, |s| s.haproxy = Some(r.summary));
    }

    /// Removes `slots` from the service's HAProxy backend (draining: HAProxy
    /// lets their connections finish, within the timeout) before they are
    /// stopped. Failures are logged and shown in the status; the replicas
    /// are stopped either way.
    async fn deregister(&self, svc: &ServiceConfig, slots: &[Slot]) {
        let Some(h) = &svc.haproxy else {
            return;
        };
        for slot in slots {
            let r = haproxy::run(&HaproxyRequest {
                api: h.api.clone(),
                operation: haproxy::Operation::RemoveServer {
                    backend: h.backend.clone(),
                    server: server_name(&svc.name, slot.status.replica),
                },
                timeout: HAPROXY_TIMEOUT,
                dry_run: false,
            })
            .await;
            if !r.ok {
                tracing::warn!(stage = "supervisor", service = %svc.name, replica = slot.status.replica, summary = %r.summary, "removing from HAProxy failed");
            }
        }
    }

    /// Checks a started replica until it counts as down; returns why. Never
    /// returns for a `pid` check (the child's exit is what ends it).
    async fn watch_health(
        &self,
        svc: &ServiceConfig,
        id: u64,
        replica: u32,
        port: Option<u16>,
        registered: &mut bool,
    ) -> String {
        let check = &svc.check;
        let interval = Duration::from_millis(check.interval.as_millis());
        if check.kind == CheckKind::Pid || port.is_none() {
            self.update(&svc.name, id, |s| {
                s.phase = Phase::Healthy;
                s.healthy_ms = Some(self.now_ms());
            });
            while svc.haproxy.is_some() && !*registered {
                self.register(svc, id, replica, port, registered).await;
                tokio::time::sleep(interval).await;
            }
            return std::future::pending().await;
        }
        let started = Instant::now();
        let start_timeout = Duration::from_millis(check.start_timeout.as_millis());
        let mut passed = false;
        let mut failures = 0u32;
        loop {
            match self.probe(svc, port).await {
                Ok(()) => {
                    if !passed || failures > 0 {
                        let first = !passed;
                        self.update(&svc.name, id, |s| {
                            s.phase = Phase::Healthy;
                            s.check_failures = 0;
                            if first {
                                s.healthy_ms = Some(self.now_ms());
                            }
                        });
                    }
                    passed = true;
                    failures = 0;
                    self.register(svc, id, replica, port, registered).await;
                }
                Err(e) if passed => {
                    failures += 1;
                    self.update(&svc.name, id, |s| s.check_failures = failures);
                    if failures >= check.failures {
                        return format!("{failures} failed checks in a row, last: {e}");
                    }
                }
                Err(e) => {
                    if started.elapsed() >= start_timeout {
                        return format!(
                            "no passing check within start_timeout {}, last: {e}",
                            check.start_timeout
                        );
                    }
                }
            }
            let wait = if passed {
                interval
            } else {
                interval.min(STARTUP_PROBE)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// A log file for one replica's output, appended to across starts.
    fn log_file(&self, service: &str, replica: u32, header: &str) -> Option<std::fs::File> {
        let path = self.log_dir.join(format!("{service}-{replica}.log"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                tracing::warn!(stage = "supervisor", path = %path.display(), error = %e, "opening log file");
            })
            .ok()?;
        let _ = writeln!(f, "--- heal supervise: {header}");
        Some(f)
    }
}

/// How a replica's watch ended.
enum Ended {
    /// The child exited on its own (or was killed by someone else).
    Exited(String),
    /// Its check failed; the child was killed.
    Unhealthy(String),
    /// A restart was asked for.
    Restart,
    /// A stop was asked for (or the supervisor is gone).
    Stop,
}

/// One replica's life. See the module docs.
async fn run_replica(
    inner: Arc<Inner>,
    svc: Arc<ServiceConfig>,
    id: u64,
    replica: u32,
    port: Option<u16>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let name = svc.name.as_str();
    let initial = Duration::from_millis(svc.restart.initial.as_millis());
    let max = Duration::from_millis(svc.restart.max.as_millis());
    let reset_after = Duration::from_millis(svc.restart.reset_after.as_millis());
    let stop_timeout = Duration::from_millis(svc.stop_timeout.as_millis());
    // The first restart waits `initial`, each next one twice as long up to
    // `max` (no jitter: one supervisor restarting its own children gains
    // nothing from randomness).
    let policy = Backoff::exponential(initial, max);
    let mut backoff = initial;
    let mut registered = false;
    loop {
        inner.update(name, id, |s| {
            s.phase = Phase::WaitingForDependencies;
            s.next_start_ms = None;
        });
        tokio::select! {
            _ = inner.dependencies_ready(&svc) => {}
            c = control.recv() => match c {
                Some(Control::Restart) => continue,
                Some(Control::Stop) | None => return stopped(&inner, name, id),
            },
        }
        let release = inner.current_release(&svc);
        let (argv, env) = release.render(replica, port);
        let log = inner.log_file(
            name,
            replica,
            &format!(
                "start of release {} at {} ms: {argv:?}",
                release.version,
                inner.now_ms()
            ),
        );
        let (stdout, stderr) = match log.and_then(|f| f.try_clone().ok().map(|g| (f, g))) {
            Some((a, b)) => (Stdio::from(a), Stdio::from(b)),
            None => (Stdio::null(), Stdio::null()),
        };
        // Never a shell: argv[0] is the program, the rest its arguments,
        // each passed as one opaque string.
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let error = format!("starting {}: {e}", argv[0]);
                tracing::warn!(stage = "supervisor", service = name, replica, %error, "start failed");
                let until = inner.now_ms() + backoff.as_millis() as i64;
                inner.update(name, id, |s| {
                    s.phase = Phase::Backoff;
                    s.last_error = Some(error);
                    s.next_start_ms = Some(until);
                });
                match wait_backoff(&mut control, backoff).await {
                    Some(Control::Stop) => return stopped(&inner, name, id),
                    Some(Control::Restart) => backoff = initial,
                    None => backoff = policy.next_after(backoff),
                }
                continue;
            }
        };
        let started = Instant::now();
        let pid = child.id();
        inner.record_start(name, &release.version);
        inner.update(name, id, |s| {
            s.phase = Phase::Starting;
            s.pid = pid;
            s.version = Some(release.version.clone());
            s.starts += 1;
            s.started_ms = Some(inner.now_ms());
            s.healthy_ms = None;
            s.check_failures = 0;
            s.last_error = None;
        });
        tracing::info!(stage = "supervisor", service = name, replica, pid, version = %release.version, "started");

        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(match status {
                Ok(s) => describe_exit(s),
                Err(e) => format!("waiting for the child: {e}"),
            }),
            why = inner.watch_health(&svc, id, replica, port, &mut registered) => Ended::Unhealthy(why),
            c = control.recv() => match c {
                Some(Control::Restart) => Ended::Restart,
                Some(Control::Stop) | None => Ended::Stop,
            },
        };
        let how = match ended {
            Ended::Exited(_) => String::new(),
            _ => stop_child(&mut child, stop_timeout).await,
        };
        let why = match ended {
            Ended::Stop => return stopped(&inner, name, id),
            Ended::Restart => {
                inner.update(name, id, |s| {
                    s.pid = None;
                    s.last_exit = Some(format!("restart requested; {how}"));
                    s.last_exit_ms = Some(inner.now_ms());
                });
                backoff = initial;
                // Restarts asked for while this one ran are served by it.
                if coalesce(&mut control) == Some(Control::Stop) {
                    return stopped(&inner, name, id);
                }
                continue;
            }
            Ended::Unhealthy(why) => format!("{why}; {how}"),
            Ended::Exited(why) => why,
        };
        if started.elapsed() >= reset_after {
            backoff = initial;
        }
        tracing::warn!(stage = "supervisor", service = name, replica, pid, %why, backoff_ms = backoff.as_millis() as u64, "replica down; restarting after backoff");
        let now = inner.now_ms();
        inner.update(name, id, |s| {
            s.phase = Phase::Backoff;
            s.pid = None;
            s.last_exit = Some(why);
            s.last_exit_ms = Some(now);
            s.next_start_ms = Some(now + backoff.as_millis() as i64);
        });
        match wait_backoff(&mut control, backoff).await {
            Some(Control::Stop) => return stopped(&inner, name, id),
            Some(Control::Restart) => backoff = initial,
            None => backoff = policy.next_after(backoff),
        }
    }
}

/// Stops a running child: SIGTERM, then SIGKILL if it is still running
/// `grace` later (at once for a zero grace); reaps it. Says how it ended.
///
/// Sending a signal by pid is safe here: the child is not reaped before
/// this returns, so its pid cannot have been reused.
async fn stop_child(child: &mut tokio::process::Child, grace: Duration) -> String {
    use rustix::process::{kill_process, Pid, Signal};
    let pid = child.id().and_then(|p| Pid::from_raw(p as i32));
    if let (false, Some(pid)) = (grace.is_zero(), pid) {
        if kill_process(pid, Signal::TERM).is_ok() {
            if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
                return describe_exit(status);
            }
        }
    }
    let _ = child.start_kill();
    match child.wait().await {
        Ok(status) if grace.is_zero() => describe_exit(status),
        Ok(status) => format!(
            "{} (still running {grace:?} after SIGTERM)",
            describe_exit(status)
        ),
        Err(e) => format!("waiting for the child: {e}"),
    }
}

/// Drains control messages already queued; a stop among them wins.
fn coalesce(control: &mut mpsc::UnboundedReceiver<Control>) -> Option<Control> {
    let mut last = None;
    while let Ok(c) = control.try_recv() {
        if c == Control::Stop {
            return Some(Control::Stop);
        }
        last = Some(c);
    }
    last
}

/// Waits out `backoff`; a control message cuts it short and is returned
/// (a closed channel counts as stop).
async fn wait_backoff(
    control: &mut mpsc::UnboundedReceiver<Control>,
    backoff: Duration,
) -> Option<Control> {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => None,
        c = control.recv() => match c {
            Some(Control::Restart) => Some(coalesce(control).unwrap_or(Control::Restart)),
            _ => Some(Control::Stop),
        },
    }
}

fn stopped(inner: &Inner, service: &str, id: u64) {
    inner.update(service, id, |s| {
        s.phase = Phase::Stopped;
        s.pid = None;
        s.next_start_ms = None;
    });
}

/// The HAProxy server name of a replica: `api-0`, `api-1`, ...
fn server_name(service: &str, replica: u32) -> String {
    format!("{service}-{replica}")
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended".to_owned(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
