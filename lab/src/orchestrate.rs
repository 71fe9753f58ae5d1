//! Running a whole lab from a program: the lab manager with its services,
//! a Prometheus scraping them, steady load, and monit as a baseline to
//! compare heal with. `heal demo` and `heal bench lab` are built on it.
//!
//! Every process started here is held by a [`ChildGuard`] that stops it when
//! dropped (SIGTERM, then SIGKILL after a grace period), and every file goes
//! under a [`TempDir`] removed when dropped, so a run leaves nothing behind
//! whichever way it ends (short of SIGKILL of the driving process itself;
//! even then the lab's services follow their manager, see [`crate::manager`]).
//!
//! Std only, like the rest of the lab: the workspace forbids `unsafe`, so
//! signals are sent with `kill(1)` (argv, no shell).

use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::client;

/// How long a started server (manager, Prometheus) may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Between SIGTERM and SIGKILL when stopping a child.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A directory under the system's temporary directory, removed with
/// everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `TMPDIR/PREFIX-PID-N`, with a fresh `N`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..1000u32 {
            // The wall clock's milliseconds only vary the name between
            // runs; `n` makes it unique within this one.
            let ms = stdx::Clock::now_ms(&stdx::SystemClock).rem_euclid(1_000_000) as u32;
            let path = base.join(format!("{prefix}-{pid}-{}", ms.wrapping_add(n)));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::io(
                        format_args!("creating a directory in {}", base.display()),
                        e,
                    ))
                }
            }
        }
        Err(Error::failed(format!(
            "creating a directory in {}: every name was taken",
            base.display()
        )))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process stopped when the guard is dropped: SIGTERM, then SIGKILL
/// if it has not exited within the grace period.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Whether it has exited (and is reaped).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Stops the child now: SIGTERM, at most `grace` to exit, then SIGKILL.
    /// Returns whether it exited on SIGTERM.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        terminate(&mut child, grace)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// SIGTERM (by `kill(1)`: no `unsafe` here), wait up to `grace`, then SIGKILL
/// and reap. Returns whether the child exited on SIGTERM.
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    if child.try_wait().ok().flatten().is_some() {
        return true;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// A free TCP port on 127.0.0.1 (free when asked: another process may take
/// it before it is used, which is the usual race of this idiom).
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
}

/// 127.0.0.1:`port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An executable `name` in `beside` (the directory of the calling
/// executable, typically) or else on `path` (the value of a `PATH`: the
/// caller reads the environment, this crate does not).
pub fn find_executable(
    name: &str,
    beside: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let here = beside.map(|d| d.join(name));
    let on_path: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    here.into_iter()
        .chain(on_path)
        .find(|p| p.is_file() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Calls `f` every `poll` until it is true or `limit` has passed; returns
/// the time it took, or `None`.
pub fn wait_until(
    limit: Duration,
    poll: Duration,
    mut f: impl FnMut() -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if f() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// Whether the lab service at `addr` is serving again after a fault: `/`
/// answers 200 within `timeout` and the process has no fault (a fresh
/// process: a service that still errs sometimes answers 200 too).
pub fn serving_clean(addr: SocketAddr, timeout: Duration) -> bool {
    client::get(addr, "/", timeout).is_ok_and(|r| r.status == 200)
        && client::get(addr, "/fault", timeout).is_ok_and(|r| r.body_text().trim() == "none")
}

/// Polls the lab service at `addr` from `since` (the fault) until it is
/// [serving cleanly](serving_clean): a poll every `poll` with `timeout`
/// each, at most `limit`. Returns the time from `since` to the answer, or
/// `None`.
pub fn time_to_serving(
    addr: SocketAddr,
    since: Instant,
    poll: Duration,
    timeout: Duration,
    limit: Duration,
) -> Option<Duration> {
    let mut next = Instant::now();
    while since.elapsed() < limit {
        if serving_clean(addr, timeout) {
            return Some(since.elapsed());
        }
        // A fixed cadence; polls that took longer than `poll` (a hung
        // service) are followed at once by the next one.
        next += poll;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    None
}

/// The sum of every sample in a Prometheus text exposition whose line starts
/// with `prefix` (a metric name, optionally with the start of its labels).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(prefix).is_some_and(|rest| {
                if prefix.contains('{') {
                    rest.starts_with([',', '}'])
                } else {
                    rest.starts_with([' ', '{'])
                }
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        // An empty sum of floats is -0.0; printed, that reads oddly.
        + 0.0
}

/// One service of a lab to start: its name and further `heal-lab service`
/// arguments.
#[derive(Debug, Clone)]
pub struct LabService {
    /// The service name (also its `service` label).
    pub name: String,
    /// Further arguments, such as `--mem-limit-mb 256`.
    pub args: Vec<String>,
}

/// A running lab manager (`heal-lab up`) and its services, each on a port of
/// its own; shut down (services killed, pidfiles removed) when dropped.
#[derive(Debug)]
pub struct Lab {
    manager: ChildGuard,
    control: SocketAddr,
    run_dir: PathBuf,
    services: Vec<(String, u16)>,
}

impl Lab {
    /// Starts `heal-lab up` with `services` on free ports, the lab file and
    /// the pidfiles in `dir`, and waits for its control API.
    pub fn start(lab_bin: &Path, dir: &Path, services: &[LabService]) -> Result<Lab> {
        let mut conf = String::from("# name port args (written by heal)\n");
        let mut ports = Vec::new();
        for s in services {
            let port = free_port()?;
            conf.push_str(&format!("{} {} {}\n", s.name, port, s.args.join(" ")));
            ports.push((s.name.clone(), port));
        }
        let lab_conf = dir.join("lab.conf");
        std::fs::write(&lab_conf, conf)
            .map_err(|e| Error::io(format_args!("writing {}", lab_conf.display()), e))?;
        let run_dir = dir.join("run");
        let control = loopback(free_port()?);
        let child = Command::new(lab_bin)
            .arg("up")
            .arg("--config")
            .arg(&lab_conf)
            .arg("--run-dir")
            .arg(&run_dir)
            .args(["--control", &control.to_string(), "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format_args!("starting {} up", lab_bin.display()), e))?;
        let mut manager = ChildGuard::new(child);
        let out = manager
            .child_mut()
            .and_then(|c| c.stdout.take())
            .ok_or_else(|| Error::failed("starting the lab: no stdout"))?;
        let ready = BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
            .any(|l| l.starts_with("control listening"));
        if !ready {
            return Err(Error::failed(
                "starting the lab: `heal-lab up` exited before its control API listened",
            ));
        }
        Ok(Lab {
            manager,
            control,
            run_dir,
            services: ports,
        })
    }

    /// The control API's address.
    pub fn control(&self) -> SocketAddr {
        self.control
    }

    /// Where the pidfiles are.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The manager's pid.
    pub fn pid(&self) -> u32 {
        self.manager.pid()
    }

    /// Every service and its port, in start order.
    pub fn services(&self) -> &[(String, u16)] {
        &self.services
    }

    /// The address of service `name`.
    ///
    /// # Panics
    ///
    /// If `name` is not one of the lab's services: a bug in the caller.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let port = self
            .services
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, p)| p)
            .unwrap_or_else(|| panic!("no lab service {name:?}"));
        loopback(port)
    }

    /// `POST /fault/SPEC` on service `name`, such as `hang` or `errors?rate=0.6`.
    pub fn inject(&self, name: &str, spec: &str) -> Result<()> {
        let r = client::post(
            self.addr(name),
            &format!("/fault/{spec}"),
            Duration::from_secs(2),
        )
        .map_err(|e| Error::io(format_args!("injecting {spec} into {name}"), e))?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(Error::failed(format!(
                "injecting {spec} into {name}: HTTP {}: {}",
                r.status,
                r.body_text().trim()
            )))
        }
    }

    /// Whether service `name` is serving again after a fault (see
    /// [`serving_clean`]).
    pub fn serving_clean(&self, name: &str, timeout: Duration) -> bool {
        serving_clean(self.addr(name), timeout)
    }

    /// Polls service `name` from `since` (the fault) until it is serving
    /// cleanly (see [`time_to_serving`]).
    pub fn time_to_serving(
        &self,
        name: &str,
        since: Instant,
        poll: Duration,
        timeout: Duration,
        limit: Duration,
    ) -> Option<Duration> {
        time_to_serving(self.addr(name), since, poll, timeout, limit)
    }

    /// The control API's `/status` JSON.
    pub fn status_json(&self) -> Result<String> {
        crate::manager::api::call(self.control, "status", None)
    }

    /// `POST /start/NAME` through the control API (nothing if it runs).
    pub fn start_service(&self, name: &str) -> Result<()> {
        crate::manager::api::call(self.control, "start", Some(name)).map(|_| ())
    }

    /// Shuts the lab down through its control API and waits for the
    /// manager; kills it if it does not exit.
    pub fn shutdown(mut self) {
        let _ = crate::manager::api::call(self.control, "shutdown", None);
        let exited = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            self.manager.exited()
        });
        if exited.is_none() {
            self.manager.stop(Duration::from_secs(2));
        }
    }
}

/// A Prometheus server on a free loopback port scraping lab services, its
/// data in a directory of the caller's.
#[derive(Debug)]
pub struct Prometheus {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Prometheus {
    /// Writes `DIR/prometheus.yml` for `targets` (`(service, port)`) scraped
    /// every `scrape_interval` (a Prometheus duration such as `1s`), starts
    /// `bin` on a free port with its storage in `DIR/tsdb`, and waits until
    /// it is ready.
    pub fn start(
        bin: &Path,
        dir: &Path,
        targets: &[(String, u16)],
        scrape_interval: &str,
    ) -> Result<Prometheus> {
        let targets = targets
            .iter()
            .map(|(n, p)| crate::promconfig::ScrapeTarget::parse(&format!("{n}=127.0.0.1:{p}")))
            .collect::<Result<Vec<_>>>()?;
        let yml = crate::promconfig::render(&targets, scrape_interval, scrape_interval)?;
        let config = dir.join("prometheus.yml");
        crate::promconfig::write_atomically(&config, &yml)?;
        Prometheus::launch(bin, &config, dir, &[])
    }

    /// Starts `bin` with `config` (written by the caller), its storage in
    /// `DIR/tsdb`, on a free port, with `extra` arguments (such as
    /// `--web.enable-remote-write-receiver`), and waits until it is ready.
    pub fn launch(bin: &Path, config: &Path, dir: &Path, extra: &[&str]) -> Result<Prometheus> {
        let addr = loopback(free_port()?);
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format_args!("starting {}", bin.display()), e))?;
        let mut child = ChildGuard::new(child);
        let ready = wait_until(READY_TIMEOUT, Duration::from_millis(100), || {
            child.exited()
                || client::get(addr, "/-/ready", Duration::from_secs(1))
                    .is_ok_and(|r| r.status == 200)
        });
        if ready.is_none() || child.exited() {
            return Err(Error::failed(format!(
                "starting {}: not ready on {addr} within {READY_TIMEOUT:?}",
                bin.display()
            )));
        }
        Ok(Prometheus { child, addr })
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it (SIGTERM: it flushes and exits in about a second).
    pub fn stop(mut self) {
        self.child.stop(STOP_GRACE);
    }
}

/// Starts `heal-lab load` at `rps` requests per second round-robin over
/// `ports` on 127.0.0.1, for at most `duration`.
pub fn start_load(
    lab_bin: &Path,
    ports: &[u16],
    rps: u32,
    duration: Duration,
) -> Result<ChildGuard> {
    let mut cmd = Command::new(lab_bin);
    cmd.arg("load");
    for p in ports {
        cmd.args(["--target", &format!("http://127.0.0.1:{p}/")]);
    }
    let duration_s = duration.as_secs().clamp(1, crate::load::MAX_DURATION_S);
    cmd.args([
        "--rps",
        &rps.to_string(),
        "--duration-s",
        &duration_s.to_string(),
        "--timeout-ms",
        "1000",
    ]);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io(format_args!("starting {} load", lab_bin.display()), e))?;
    Ok(ChildGuard::new(child))
}

/// The monitrc for a lab: a one-second cycle, no HTTP interface, and per
/// service monit's usual check: the process by its pidfile, started and
/// stopped through the lab's control API, restarted when `/` does not
/// answer over HTTP within a second.
pub fn monitrc(lab_bin: &Path, lab: &Lab, dir: &Path) -> String {
    let control = lab.control();
    let bin = lab_bin.display();
    let mut rc = format!(
        "# Written by heal for its lab; run with `monit -I -c THIS_FILE`.\n\
         # One-second cycle: monit's shortest.\n\
         set daemon 1\n\
         set log {log}\n\
         set pidfile {dir}/monit.pid\n\
         set idfile {dir}/monit.id\n\
         set statefile {dir}/monit.state\n\
         # No `set httpd`: monit -I needs no HTTP interface to run its checks.\n\n",
        log = dir.join("monit.log").display(),
        dir = dir.display(),
    );
    for (name, port) in lab.services() {
        rc.push_str(&format!(
            "check process {name} with pidfile {pidfile}\n  \
             start program = \"{bin} start --control {control} {name}\" with timeout 15 seconds\n  \
             stop program = \"{bin} stop --control {control} {name}\"\n  \
             if failed host 127.0.0.1 port {port} protocol http request \"/\" with timeout 1 seconds then restart\n\n",
            pidfile = lab.run_dir().join(format!("{name}.pid")).display(),
        ));
    }
    rc
}

/// monit run in the foreground (`monit -I`) on a generated monitrc.
#[derive(Debug)]
pub struct Monit {
    child: ChildGuard,
    log: PathBuf,
}

impl Monit {
    /// Writes `DIR/monitrc` (mode 0600, which monit insists on) for `lab`
    /// and starts `monit_bin -I -c DIR/monitrc`; returns once monit has
    /// logged that it started.
    pub fn start(monit_bin: &Path, lab_bin: &Path, lab: &Lab, dir: &Path) -> Result<Monit> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = dir.join("monitrc");
        let rc = monitrc(lab_bin, lab, dir);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format_args!("writing {}", path.display()), e))?;
        f.write_all(rc.as_bytes())
            .map_err(|e| Error::io(format_args!("writing {}", path.display()), e))?;
        drop(f);
        let log = dir.join("monit.log");
        let child = Command::new(monit_bin)
            .arg("-I")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format_args!("starting {}", monit_bin.display()), e))?;
        let mut child = ChildGuard::new(child);
        let started = wait_until(READY_TIMEOUT, Duration::from_millis(100), || {
            child.exited() || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("started"))
        });
        if started.is_none() || child.exited() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::failed(format!(
                "starting {} -I -c {}: it did not start:\n{text}",
                monit_bin.display(),
                path.display()
            )));
        }
        Ok(Monit { child, log })
    }

    /// monit's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops monit (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        self.child.stop(STOP_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_matches_whole_names() {
        let text = "# HELP x\nheal_actions_total{kind=\"exec\"} 2\nheal_actions_total 1\n\
                    heal_actions_suppressed_total{reason=\"x\"} 5\nheal_actions_total_bogus 9\n";
        assert_eq!(metric_sum(text, "heal_actions_total"), 3.0);
        assert_eq!(metric_sum(text, "heal_actions_total{kind=\"exec\""), 2.0);
        assert_eq!(metric_sum(text, "heal_nothing"), 0.0);
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("heal-lab-test").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn finds_executables_beside_or_on_path() {
        let path = std::env::var_os("PATH");
        assert!(find_executable("sh", None, path.as_deref()).is_some());
        assert!(find_executable("surely-no-such-program-here", None, path.as_deref()).is_none());
    }
}
