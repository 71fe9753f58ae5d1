//! `heal bench docker`: time to recovery of containers on the real Docker
//! Engine, heal against Docker's own answer, as `heal bench lab` does
//! against monit.
//!
//! Four lab services in containers, one per fault kind (`crash`, `hang`,
//! `errors`, `leak`), each published on a loopback port, from an image the
//! bench makes itself (`docker import` of `heal-lab` and the libraries it
//! links; no registry). The image has a `HEALTHCHECK` (`heal-lab probe` of
//! `/healthz` every second, 1 s timeout, unhealthy after 2 failures), and
//! every container runs with `--init` so that a stop is a SIGTERM that
//! ends the service at once: the settings a careful user would choose, the
//! same for every side. Three rounds, one at a time:
//!
//! 1. **heal**: containers without a restart policy; `heal watch --execute
//!    --docker` with a runbook of `docker:` signals (`up` from the `die`
//!    event, `healthy` from `health_status`, `memory` from the engine's
//!    stats above 96 MiB) whose steps restart the container. First a clean
//!    run: every action then is a false alarm (expected: none).
//! 2. **docker**: the same containers with `--restart on-failure`: the
//!    engine restarts what exits; an unhealthy container is only marked.
//! 3. **swarm** (unless `--no-swarm`): one Swarm service per fault kind,
//!    `--restart-condition any --restart-delay 1s --stop-grace-period 1s`,
//!    the port published in host mode: Swarm replaces a task that exits or
//!    turns unhealthy. A single-node swarm is initialised if there is none,
//!    and left again at the end.
//!
//! Each fault is injected `--injections` times per round at a seeded
//! uniform phase within the wall-clock second (the same phases for every
//! round), and the time from the fault to the service answering `/` with
//! 200 from a process without the fault (`GET /fault` says `none`) is
//! measured, polled every 100 ms. A fault not recovered within `--limit`
//! counts as not recovered, and the bench then restarts the service itself.
//!
//! This prints figures; nothing here is asserted.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::http::client;
use lab::orchestrate::{self, TempDir};

use super::lab::{cells, hows, Outcome, Phases};
use crate::labrun::{
    find_lab_bin, heal_quiet, interrupt_flag, log_field, sleep, write_runbook, FaultKind,
    HealWatch, Progress, POLL, POLL_TIMEOUT,
};
use crate::{Context, Error, Result};

/// What to run (`heal bench docker`'s arguments).
#[derive(Debug, Clone)]
pub struct DockerBenchConfig {
    /// Injections of each fault kind per round.
    pub injections: u32,
    /// Seed of the injection phases (the same for every round).
    pub seed: u64,
    /// A fault not recovered from within this long counts as not recovered.
    pub limit: Duration,
    /// Length of heal's clean run (no fault): its actions are false alarms.
    pub clean: Duration,
    /// Leave out the Swarm round.
    pub no_swarm: bool,
    /// The engine's socket.
    pub socket: String,
    /// Write heal's whole log (`HEAL_LOG=info`) to this file after its round.
    pub heal_log: Option<std::path::PathBuf>,
    /// heal's own `PATH`, to find `heal-lab`.
    pub path_env: Option<OsString>,
}

/// Memory above which heal's runbook restarts a container (96 MiB: the
/// service idles at a few MiB; the leak fault grows 16 MiB/s up to the
/// service's own 256 MiB limit, where it kills itself).
const MEMORY_LIMIT: u64 = 96 << 20;

/// A round's outcomes per fault kind, in [`FaultKind::ALL`] order.
type Round = Vec<Vec<Outcome>>;

/// Runs `docker ARGS`, returning its standard output.
fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `docker ARGS`, its failure ignored (clean-up).
fn docker_quiet(args: &[&str]) {
    let _ = Command::new("docker").args(args).output();
}

/// Imports `heal-lab` and the libraries `ldd` lists as image `tag`
/// (`lab::image`), with the health check every side shares.
fn import_lab_image(lab_bin: &Path, tag: &str) -> Result<()> {
    lab::image::import(
        lab_bin,
        tag,
        &[r#"HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/heal-lab", "probe", "--addr", "127.0.0.1:8080", "--timeout-ms", "800"]"#],
    )
    .map_err(|e| Error::msg(e.to_string()))
}

/// The service command of a lab container for fault kind `kind`.
fn service_args(kind: FaultKind) -> [&'static str; 7] {
    [
        "service",
        "--name",
        kind.name(),
        "--port",
        "8080",
        "--addr",
        "0.0.0.0",
    ]
}

/// What the bench made, removed when dropped.
struct Cleanup {
    image: String,
    containers: Vec<String>,
    services: Vec<String>,
    left_swarm: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            docker_quiet(&["rm", "-f", c]);
        }
        for s in &self.services {
            docker_quiet(&["service", "rm", s]);
        }
        if self.left_swarm {
            docker_quiet(&["swarm", "leave", "--force"]);
        }
        // The service's tasks go asynchronously; the image is removed once
        // nothing uses it (a failure here leaves only an image behind).
        for _ in 0..20 {
            if Command::new("docker")
                .args(["rmi", &self.image])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn serving_clean(addr: SocketAddr) -> bool {
    orchestrate::serving_clean(addr, POLL_TIMEOUT)
}

/// One side of the bench: how its services are made, told apart and put
/// right by hand.
trait Side {
    fn name(&self) -> &'static str;
    /// The address of kind `k`'s service.
    fn addr(&self, k: usize) -> SocketAddr;
    /// Something that changes when the service's process is replaced.
    fn generation(&self, k: usize) -> String;
    /// Who put it right, as far as can be told (`before` is the
    /// generation at the fault, `mark` heal's log length then).
    fn how(&self, k: usize, before: &str, mark: usize) -> String;
    /// heal's watch, on heal's side.
    fn heal(&self) -> Option<&HealWatch> {
        None
    }
    /// Whether the next fault may be injected.
    fn ready(&self, k: usize) -> bool {
        serving_clean(self.addr(k))
    }
    /// Restarts the service by hand after a fault not recovered from.
    fn reset(&self, k: usize);
}

/// Standalone containers (heal's round and Docker's restart policy).
struct Containers {
    side: &'static str,
    names: Vec<String>,
    ports: Vec<u16>,
    heal: Option<HealWatch>,
}

impl Containers {
    /// Starts one container per fault kind.
    fn start(
        side: &'static str,
        prefix: &str,
        image: &str,
        label: &str,
        restart: &str,
        cleanup: &mut Cleanup,
    ) -> Result<Containers> {
        let mut names = Vec::new();
        let mut ports = Vec::new();
        for kind in FaultKind::ALL {
            let name = format!("{prefix}-{side}-{}", kind.name());
            let port = orchestrate::free_port()?;
            let publish = format!("127.0.0.1:{port}:8080");
            let mut args = vec![
                "run",
                "-d",
                "--init",
                "--name",
                &name,
                "--label",
                label,
                "--restart",
                restart,
                "-p",
                &publish,
                image,
            ];
            args.extend(service_args(kind));
            docker(&args)?;
            cleanup.containers.push(name.clone());
            names.push(name);
            ports.push(port);
        }
        Ok(Containers {
            side,
            names,
            ports,
            heal: None,
        })
    }

    fn remove(&self, cleanup: &mut Cleanup) {
        for n in &self.names {
            docker_quiet(&["rm", "-f", n]);
            cleanup.containers.retain(|c| c != n);
        }
    }
}

impl Side for Containers {
    fn name(&self) -> &'static str {
        self.side
    }
    fn addr(&self, k: usize) -> SocketAddr {
        orchestrate::loopback(self.ports[k])
    }
    fn generation(&self, k: usize) -> String {
        docker(&[
            "inspect",
            "-f",
            "{{.State.StartedAt}} {{.RestartCount}}",
            &self.names[k],
        ])
        .unwrap_or_default()
    }
    fn heal(&self) -> Option<&HealWatch> {
        self.heal.as_ref()
    }
    fn how(&self, k: usize, before: &str, mark: usize) -> String {
        let after = self.generation(k);
        if let Some(heal) = &self.heal {
            let rules = heal_rules(heal, &self.names[k], mark);
            if !rules.is_empty() {
                return format!("heal: {rules}");
            }
        }
        let restarts = |g: &str| g.split_whitespace().nth(1).unwrap_or("").to_owned();
        if after == before {
            "not restarted".into()
        } else if restarts(&after) != restarts(before) {
            "restart policy".into()
        } else {
            "restarted".into()
        }
    }
    fn ready(&self, k: usize) -> bool {
        serving_clean(self.addr(k))
            && self
                .heal
                .as_ref()
                .is_none_or(|h| heal_quiet(h, &self.names[k]))
    }
    fn reset(&self, k: usize) {
        docker_quiet(&["restart", "-t", "0", &self.names[k]]);
    }
}

/// Swarm services (the swarm round).
struct Services {
    names: Vec<String>,
    ports: Vec<u16>,
}

impl Services {
    fn start(prefix: &str, image: &str, cleanup: &mut Cleanup) -> Result<Services> {
        let mut names = Vec::new();
        let mut ports = Vec::new();
        for kind in FaultKind::ALL {
            let name = format!("{prefix}-swarm-{}", kind.name());
            let port = orchestrate::free_port()?;
            let publish = format!("mode=host,published={port},target=8080");
            let mut args = vec![
                "service",
                "create",
                "--detach",
                "--name",
                &name,
                "--init",
                "--restart-condition",
                "any",
                "--restart-delay",
                "1s",
                "--stop-grace-period",
                "1s",
                "--publish",
                &publish,
                image,
            ];
            args.extend(service_args(kind));
            docker(&args)?;
            cleanup.services.push(name.clone());
            names.push(name);
            ports.push(port);
        }
        Ok(Services { names, ports })
    }

    /// The service's running container ids.
    fn running(&self, k: usize) -> String {
        let filter = format!("label=com.docker.swarm.service.name={}", self.names[k]);
        docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &filter,
            "--filter",
            "status=running",
        ])
        .unwrap_or_default()
    }
}

impl Side for Services {
    fn name(&self) -> &'static str {
        "swarm"
    }
    fn addr(&self, k: usize) -> SocketAddr {
        orchestrate::loopback(self.ports[k])
    }
    fn generation(&self, k: usize) -> String {
        self.running(k)
    }
    fn how(&self, k: usize, before: &str, _mark: usize) -> String {
        if self.running(k) == before {
            "not replaced".into()
        } else {
            "task replaced".into()
        }
    }
    fn ready(&self, k: usize) -> bool {
        // One running task, serving.
        self.running(k).lines().count() == 1 && serving_clean(self.addr(k))
    }
    fn reset(&self, k: usize) {
        docker_quiet(&["service", "update", "--force", "--detach", &self.names[k]]);
    }
}

/// The rules of heal's incidents on `container` opened in heal's log from
/// line `mark` on (the fault's).
fn heal_rules(heal: &HealWatch, container: &str, mark: usize) -> String {
    let instance = format!("instance=\"{container}\"");
    let mut rules: Vec<String> = Vec::new();
    for line in heal.log_since(mark) {
        if line.contains("incident opened") && line.contains(&instance) {
            if let Some(rule) = log_field(&line, "rule") {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    rules.join("+")
}

/// Injects each fault kind `n` times into its own service, one at a time,
/// each once the side says it is ready (at most two minutes).
fn round(
    side: &dyn Side,
    n: u32,
    limit: Duration,
    phases: &mut Phases,
    stop: &AtomicBool,
) -> Result<Round> {
    let mut out: Round = vec![Vec::new(); FaultKind::ALL.len()];
    eprintln!("{} round:", side.name());
    for i in 0..n {
        for (k, kind) in FaultKind::ALL.iter().enumerate() {
            let waited = Instant::now();
            while !side.ready(k) {
                if waited.elapsed() > Duration::from_secs(120) {
                    eprintln!(
                        "  {} #{}: not ready after 120 s (not serving, or heal's incident on it still open); injecting anyway",
                        kind.name(),
                        i + 1
                    );
                    break;
                }
                sleep(Duration::from_millis(500), stop)?;
            }
            sleep(phases.until_next(), stop)?;
            let before = side.generation(k);
            let mark = side.heal().map_or(0, HealWatch::log_len);
            let at = Instant::now();
            client::post(
                side.addr(k),
                &format!("/fault/{}", kind.spec()),
                Duration::from_secs(2),
            )
            .with_context(|| format!("injecting {} into {}", kind.name(), side.name()))?;
            let took = orchestrate::time_to_serving(side.addr(k), at, POLL, POLL_TIMEOUT, limit);
            if stop.load(Ordering::SeqCst) {
                return Err(Error::msg("interrupted"));
            }
            let how = side.how(k, &before, mark);
            match took {
                Some(t) => eprintln!(
                    "  {} #{}: serving again after {:.2} s ({how})",
                    kind.name(),
                    i + 1,
                    t.as_secs_f64()
                ),
                None => {
                    eprintln!(
                        "  {} #{}: not serving after {limit:?} ({how}); restarting it by hand",
                        kind.name(),
                        i + 1
                    );
                    side.reset(k);
                }
            }
            out[k].push(Outcome { took, how });
            sleep(Duration::from_secs(1), stop)?;
        }
    }
    Ok(out)
}

/// heal's runbook for the heal round: the engine's own signals, a restart
/// for each; guards that let it act on every injection.
fn heal_runbook(label: &str) -> String {
    format!(
        "signals:
  - name: container_up
    docker: {{metric: up, label: {label}}}
    detector: {{direction: down, limit_below: 0.5}}
  - name: container_healthy
    docker: {{metric: healthy, label: {label}}}
    detector: {{direction: down, limit_below: 0.5}}
  - name: container_memory_bytes
    docker: {{metric: memory, label: {label}}}
    detector: {{direction: up, limit_above: {MEMORY_LIMIT}}}
rules:
  - name: container-died
    when: {{signal: container_up, direction: down, for: 0s}}
    then:
      - {{action: docker, op: restart, target: \"container/{{{{instance}}}}\", timeout: 5s}}
    verify: {{wait: 3s, recovered_when: {{value_above: 0.5}}}}
    guards: {{cooldown: 0s, max_attempts: 1000, window: 1h}}
  - name: container-unhealthy
    when: {{signal: container_healthy, direction: down, for: 0s}}
    then:
      - {{action: docker, op: restart, target: \"container/{{{{instance}}}}\", timeout: 5s}}
    verify: {{wait: 5s, recovered_when: {{value_above: 0.5}}}}
    guards: {{cooldown: 0s, max_attempts: 1000, window: 1h}}
  - name: container-leaking
    when: {{signal: container_memory_bytes, direction: up, for: 0s}}
    then:
      - {{action: docker, op: restart, target: \"container/{{{{instance}}}}\", timeout: 5s}}
    verify: {{wait: 3s, recovered_when: {{value_below: {MEMORY_LIMIT}}}}}
    guards: {{cooldown: 0s, max_attempts: 1000, window: 1h}}
"
    )
}

/// Runs the bench and prints its report.
///
/// # Errors
///
/// No engine (`Unavailable`), `heal-lab` missing, a container that did not
/// come up, an interrupt.
pub fn run(cfg: DockerBenchConfig) -> Result<()> {
    if cfg.injections == 0 {
        return Err(Error::Usage("--injections must be at least 1".into()));
    }
    let info = Command::new("docker")
        .args([
            "info",
            "--format",
            "{{.ServerVersion}} {{.Swarm.LocalNodeState}}",
        ])
        .output();
    let info = match info {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => return Err(Error::Unavailable(
            "Docker Engine not reachable (`docker info` failed): the bench runs on the real engine"
                .into(),
        )),
    };
    let lab_bin = find_lab_bin(cfg.path_env.as_ref())?;
    let stop = interrupt_flag();
    let pid = std::process::id();
    let prefix = format!("heal-bench-{pid}");
    let image = format!("heal-bench-lab:{pid}");
    let label = format!("heal.bench={pid}");
    let mut cleanup = Cleanup {
        image: image.clone(),
        containers: Vec::new(),
        services: Vec::new(),
        left_swarm: false,
    };
    eprintln!("docker engine {info}; importing the lab image {image}");
    import_lab_image(&lab_bin, &image)?;

    // heal's round, after its clean run.
    let dir = TempDir::new("heal-bench-docker")?;
    let runbooks = write_runbook(dir.path(), &heal_runbook(&label))?;
    let mut heal_side = Containers::start("heal", &prefix, &image, &label, "no", &mut cleanup)?;
    let heal = HealWatch::launch(
        &[
            "--prometheus",
            "http://127.0.0.1:9",
            "--backfill",
            "0s",
            "--docker",
            &cfg.socket,
        ],
        &runbooks,
        &lab_bin,
        cfg.path_env.as_ref(),
    )?;
    let up = orchestrate::wait_until(Duration::from_secs(60), POLL, || {
        (0..FaultKind::ALL.len()).all(|k| heal_side.ready(k))
    });
    if up.is_none() {
        return Err(Error::msg("the lab containers did not come up within 60 s"));
    }
    let m0 = heal.metrics();
    let t0 = Instant::now();
    let mut progress = Progress::new(Duration::from_secs(30));
    while t0.elapsed() < cfg.clean {
        progress.show(&format!(
            "clean run: {:.0}/{:.0} s",
            t0.elapsed().as_secs_f64(),
            cfg.clean.as_secs_f64()
        ));
        sleep(
            Duration::from_secs(1).min(cfg.clean.saturating_sub(t0.elapsed())),
            &stop,
        )?;
    }
    let m1 = heal.metrics();
    progress.done("clean run done");
    let delta =
        |name: &str| orchestrate::metric_sum(&m1, name) - orchestrate::metric_sum(&m0, name);
    let clean_actions = delta("heal_actions_total");
    let clean_incidents = delta("heal_incidents_total");
    heal_side.heal = Some(heal);
    let mut phases = Phases::new(cfg.seed);
    let heal_round = round(&heal_side, cfg.injections, cfg.limit, &mut phases, &stop)?;
    if let Some(heal) = heal_side.heal.take() {
        if let Some(path) = &cfg.heal_log {
            std::fs::write(path, heal.log_since(0).join("\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        heal.stop();
    }
    heal_side.remove(&mut cleanup);

    // Docker's restart policy, the same faults at the same phases.
    let docker_side = Containers::start(
        "docker",
        &prefix,
        &image,
        &label,
        "on-failure",
        &mut cleanup,
    )?;
    if orchestrate::wait_until(Duration::from_secs(60), POLL, || {
        (0..FaultKind::ALL.len()).all(|k| docker_side.ready(k))
    })
    .is_none()
    {
        return Err(Error::msg("the lab containers did not come up within 60 s"));
    }
    let mut phases = Phases::new(cfg.seed);
    let docker_round = round(&docker_side, cfg.injections, cfg.limit, &mut phases, &stop)?;
    docker_side.remove(&mut cleanup);

    // Swarm.
    let swarm_round = if cfg.no_swarm {
        None
    } else {
        if info.ends_with("inactive") {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
            cleanup.left_swarm = true;
        }
        let services = Services::start(&prefix, &image, &mut cleanup)?;
        if orchestrate::wait_until(Duration::from_secs(120), POLL, || {
            (0..FaultKind::ALL.len()).all(|k| services.ready(k))
        })
        .is_none()
        {
            return Err(Error::msg(
                "the Swarm services did not come up within 120 s",
            ));
        }
        let mut phases = Phases::new(cfg.seed);
        Some(round(
            &services,
            cfg.injections,
            cfg.limit,
            &mut phases,
            &stop,
        )?)
    };
    drop(cleanup);
    println!(
        "{}",
        report(
            &cfg,
            clean_actions,
            clean_incidents,
            &[("heal", &heal_round), ("docker", &docker_round)]
                .into_iter()
                .chain(swarm_round.as_ref().map(|r| ("swarm", r)))
                .collect::<Vec<_>>()
        )
    );
    Ok(())
}

/// The report: one table per fault kind, a row per side.
fn report(
    cfg: &DockerBenchConfig,
    clean_actions: f64,
    clean_incidents: f64,
    rounds: &[(&str, &Round)],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heal bench docker: {} injections per fault and side, seed {}, limit {:.0} s; seconds from the fault to serving `/` from a process without it",
        cfg.injections,
        cfg.seed,
        cfg.limit.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "heal: no restart policy, heal watch --docker (up, healthy, memory > 96 MiB: restart); docker: --restart on-failure; swarm: --restart-condition any --restart-delay 1s; all with the image's HEALTHCHECK (1 s, 2 retries) and --init"
    );
    let _ = writeln!(
        out,
        "{:<7} {:<7} {:>3} {:>4} {:>7} {:>7} {:>7}  who",
        "fault", "side", "n", "rec", "median", "p90", "max"
    );
    for (k, kind) in FaultKind::ALL.iter().enumerate() {
        for (side, round) in rounds {
            let _ = writeln!(
                out,
                "{:<7} {:<7} {}  {}",
                kind.name(),
                side,
                cells(&round[k]),
                hows(&round[k])
            );
        }
    }
    let _ = write!(
        out,
        "clean run (heal, {:.0} s, no fault): {clean_actions} actions, {clean_incidents} incidents",
        cfg.clean.as_secs_f64()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heal_runbook_loads() {
        let dir = tempfile::tempdir().unwrap();
        let runbooks = write_runbook(dir.path(), &heal_runbook("heal.bench=1")).unwrap();
        let set = remediate::RunbookSet::load_dir(runbooks).unwrap();
        assert_eq!(set.signals().len(), 3);
    }
}
