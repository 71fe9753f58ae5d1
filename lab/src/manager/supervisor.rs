//! The lab's children: starting a service, waiting for its `listening` line,
//! killing it, reaping it, and its pidfile.
//!
//! The supervisor never restarts a child on its own (that is what heal is
//! tested for); it only reaps exited children so they do not linger as
//! zombies, and records how they ended.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::ServiceSpec;
use crate::error::{Error, Result};
use crate::promconfig::write_atomically;

/// How long a service may take to print `listening on ...`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs and tracks the lab's services.
#[derive(Debug)]
pub struct Supervisor {
    exe: PathBuf,
    run_dir: PathBuf,
    addr: IpAddr,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    args: Vec<String>,
    /// Serialises start, stop and restart of this service; held across the
    /// slow part (waiting for the child), unlike `state`.
    op: Mutex<()>,
    /// What `/status` and the reaper read; only ever held briefly.
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The configured port, or the one the first start got for port 0.
    port: u16,
    /// The running child. Its stdin pipe stays open as long as the child is
    /// held: services run with `--exit-on-stdin-eof`, so they die with the
    /// manager however the manager ends.
    child: Option<Child>,
    /// Pid of the current or last child.
    pid: Option<u32>,
    /// Times the service was started.
    starts: u64,
    /// How the most recent child that ended ended (kept across a restart:
    /// it tells why the service was restarted).
    last_exit: Option<String>,
}

/// The outcome of a start or restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// The service.
    pub name: String,
    /// The child's pid.
    pub pid: u32,
    /// Its port.
    pub port: u16,
    /// From the request to the child's `listening` line.
    pub took: Duration,
    /// Starts after the first one.
    pub restarts: u64,
    /// The service was running already (start only); nothing was done.
    pub already_running: bool,
}

/// One row of `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The service.
    pub name: String,
    /// Pid of the current or last child.
    pub pid: Option<u32>,
    /// Its port.
    pub port: u16,
    /// Whether a child is running.
    pub alive: bool,
    /// Starts after the first one.
    pub restarts: u64,
    /// How the most recent child that ended ended (`exit status: 1`,
    /// `signal: 9 (SIGKILL)`, `stopped`), if one did; a running service
    /// keeps its predecessor's.
    pub last_exit: Option<String>,
}

impl Supervisor {
    /// A supervisor for `specs`, running `exe service ...` on `addr` and
    /// writing pidfiles to `run_dir` (created if missing). Starts nothing.
    pub fn new(
        exe: PathBuf,
        run_dir: PathBuf,
        addr: IpAddr,
        specs: &[ServiceSpec],
    ) -> Result<Supervisor> {
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            Error::io(
                format_args!("creating run directory {}", run_dir.display()),
                e,
            )
        })?;
        let slots = specs
            .iter()
            .map(|s| Slot {
                name: s.name.clone(),
                args: s.args.clone(),
                op: Mutex::new(()),
                state: Mutex::new(SlotState {
                    port: s.port,
                    ..SlotState::default()
                }),
            })
            .collect();
        Ok(Supervisor {
            exe,
            run_dir,
            addr,
            slots,
        })
    }

    /// The names of the services, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// The pidfile of service `name`.
    pub fn pidfile(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.pid"))
    }

    fn slot(&self, name: &str) -> Result<&Slot> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::usage(format!("unknown service {name:?}")))
    }

    /// Starts `name` unless it is running.
    pub fn start(&self, name: &str) -> Result<Started> {
        let slot = self.slot(name)?;
        let _op = lock(&slot.op);
        let began = Instant::now();
        {
            let mut state = lock(&slot.state);
            reap(&slot.name, &mut state);
            if let (Some(_), Some(pid)) = (&state.child, state.pid) {
                return Ok(Started {
                    name: slot.name.clone(),
                    pid,
                    port: state.port,
                    took: began.elapsed(),
                    restarts: state.starts.saturating_sub(1),
                    already_running: true,
                });
            }
        }
        self.spawn(slot, began)
    }

    /// Kills `name` (SIGKILL) if it runs, then starts it on the same port.
    pub fn restart(&self, name: &str) -> Result<Started> {
        let slot = self.slot(name)?;
        let _op = lock(&slot.op);
        let began = Instant::now();
        let old = lock(&slot.state).child.take();
        if let Some(child) = old {
            let how = kill(child);
            lock(&slot.state).last_exit = Some(how);
        }
        self.spawn(slot, began)
    }

    /// Kills `name` (SIGKILL) if it runs and removes its pidfile. Returns the
    /// pid it killed.
    pub fn stop(&self, name: &str) -> Result<Option<u32>> {
        let slot = self.slot(name)?;
        let _op = lock(&slot.op);
        let (old, pid) = {
            let mut state = lock(&slot.state);
            (state.child.take(), state.pid)
        };
        let killed = old.map(|child| {
            kill(child);
            lock(&slot.state).last_exit = Some("stopped".into());
            pid
        });
        let _ = std::fs::remove_file(self.pidfile(name));
        Ok(killed.flatten())
    }

    /// Stops every service.
    pub fn stop_all(&self) {
        for name in self.names() {
            let _ = self.stop(name);
        }
    }

    /// Every service's state, in file order.
    pub fn status(&self) -> Vec<Status> {
        self.slots
            .iter()
            .map(|slot| {
                let mut state = lock(&slot.state);
                reap(&slot.name, &mut state);
                Status {
                    name: slot.name.clone(),
                    pid: state.pid,
                    port: state.port,
                    alive: state.child.is_some(),
                    restarts: state.starts.saturating_sub(1),
                    last_exit: state.last_exit.clone(),
                }
            })
            .collect()
    }

    /// Collects exited children; the manager calls it a few times a second.
    pub fn reap_all(&self) {
        for slot in &self.slots {
            reap(&slot.name, &mut lock(&slot.state));
        }
    }

    /// Starts a child for `slot` and waits for its `listening` line. The
    /// caller holds `slot.op` and has made sure no child runs.
    fn spawn(&self, slot: &Slot, began: Instant) -> Result<Started> {
        let port = lock(&slot.state).port;
        let mut child = Command::new(&self.exe)
            .arg("service")
            .args([
                "--name",
                &slot.name,
                "--port",
                &port.to_string(),
                "--addr",
                &self.addr.to_string(),
                "--exit-on-stdin-eof",
            ])
            .args(&slot.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::io(
                    format_args!(
                        "starting service {}: running {}",
                        slot.name,
                        self.exe.display()
                    ),
                    e,
                )
            })?;
        let pid = child.id();
        let prefix = format!("[{} pid {pid}] ", slot.name);
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(first)) = lines.next() {
                    let _ = ready_tx.send(first);
                }
                // Keep draining so the child never blocks on a full pipe.
                for line in lines.map_while(std::result::Result::ok) {
                    say!("{prefix}{line}");
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    let _ = writeln!(std::io::stderr(), "{prefix}{line}");
                }
            });
        }
        let ready = ready_rx.recv_timeout(READY_TIMEOUT);
        let listening: Option<SocketAddr> = ready
            .as_ref()
            .ok()
            .and_then(|line| line.strip_prefix("listening on "))
            .and_then(|a| a.trim().parse().ok());
        let Some(addr) = listening else {
            let how = kill(child);
            lock(&slot.state).last_exit = Some(how.clone());
            let why = match ready {
                Ok(line) => format!("it printed {line:?} instead of \"listening on ADDR\""),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    format!("it did not listen within {}s", READY_TIMEOUT.as_secs())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    format!("it ended before listening ({how})")
                }
            };
            return Err(Error::failed(format!(
                "starting service {}: {why}",
                slot.name
            )));
        };
        let took = began.elapsed();
        write_atomically(&self.pidfile(&slot.name), &format!("{pid}\n"))?;
        let mut state = lock(&slot.state);
        state.port = addr.port();
        state.child = Some(child);
        state.pid = Some(pid);
        state.starts += 1;
        Ok(Started {
            name: slot.name.clone(),
            pid,
            port: addr.port(),
            took,
            restarts: state.starts - 1,
            already_running: false,
        })
    }
}

/// Reaps the slot's child if it exited; the pidfile stays, stale, as a
/// crashed daemon's would (monit sees no such process and acts).
fn reap(name: &str, state: &mut SlotState) {
    let Some(child) = state.child.as_mut() else {
        return;
    };
    if let Ok(Some(status)) = child.try_wait() {
        let how = describe(status);
        note!(
            "heal-lab up: service {name} (pid {}) ended: {how}",
            child.id()
        );
        state.last_exit = Some(how);
        state.child = None;
    }
}

/// SIGKILLs and reaps `child`, returning how it ended.
fn kill(mut child: Child) -> String {
    let _ = child.kill();
    child
        .wait()
        .map_or_else(|e| format!("unknown ({e})"), describe)
}

/// `exit status: N` or `signal: N (SIGNAME)`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status: {code}"),
        (None, Some(sig)) => format!(
            "signal: {sig}{}",
            signal_name(sig).map_or_else(String::new, |n| format!(" ({n})"))
        ),
        _ => status.to_string(),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Locks, going on after a panic elsewhere: the state stays meaningful.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `path` names a pidfile holding `pid`.
pub fn pidfile_holds(path: &Path, pid: u32) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.trim() == pid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_like_a_shell_would_say() {
        assert_eq!(describe(ExitStatus::from_raw(1 << 8)), "exit status: 1");
        assert_eq!(describe(ExitStatus::from_raw(9)), "signal: 9 (SIGKILL)");
        assert_eq!(describe(ExitStatus::from_raw(10)), "signal: 10");
    }

    #[test]
    fn unknown_services_are_refused() {
        let dir = std::env::temp_dir().join(format!("heal-lab-sup-{}", std::process::id()));
        let sup = Supervisor::new(
            "/bin/false".into(),
            dir.clone(),
            "127.0.0.1".parse().unwrap(),
            &[],
        )
        .unwrap();
        assert_eq!(
            sup.restart("nope").unwrap_err().to_string(),
            "unknown service \"nope\""
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_child_that_never_listens_is_reported() {
        let dir = std::env::temp_dir().join(format!("heal-lab-sup-false-{}", std::process::id()));
        let spec = ServiceSpec {
            name: "f".into(),
            port: 0,
            args: vec![],
        };
        let sup = Supervisor::new(
            "/bin/false".into(),
            dir.clone(),
            "127.0.0.1".parse().unwrap(),
            &[spec],
        )
        .unwrap();
        let err = sup.start("f").unwrap_err().to_string();
        assert_eq!(
            err,
            "starting service f: it ended before listening (exit status: 1)"
        );
        assert!(!sup.status()[0].alive);
        let _ = std::fs::remove_dir_all(dir);
    }
}
