//! `heal-lab up`: a tiny supervisor for the lab, and only for the lab.
//!
//! It starts every service of a lab file (see [`config`]) as a child
//! `heal-lab service`, writes `RUN_DIR/NAME.pid` for each (monit's `check
//! process ... with pidfile`), and serves the control API (see [`api`]). It
//! reaps children that exit but never restarts them by itself: noticing and
//! acting is heal's job, and the lab must not hide a crash from it.
//!
//! **Stopping.** The workspace forbids `unsafe`, so there is no signal
//! handler. The ways to stop the manager, and what happens to the services:
//!
//! - `POST /shutdown` (`heal-lab shutdown --control ADDR`): children killed,
//!   pidfiles removed, exit 0. The clean way.
//! - End of the manager's stdin, with `--exit-on-stdin-eof`: the same. Meant
//!   for a test harness that holds the manager's stdin.
//! - SIGTERM, SIGINT, SIGKILL of the manager: it dies at once; every child
//!   runs with `--exit-on-stdin-eof` on a pipe whose write end only the
//!   manager holds, so the children exit within milliseconds too. Pidfiles
//!   are left behind, stale. (Ctrl-C in a terminal reaches the children
//!   directly as well: they share the manager's process group.)

pub mod api;
pub mod config;
pub mod supervisor;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::{self, Peer, Request};
pub use config::ServiceSpec;
pub use supervisor::Supervisor;

/// Concurrent control connections; the API is for a handful of callers.
const MAX_CONTROL_CONNECTIONS: usize = 32;

/// How to run the manager.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The lab file.
    pub config: PathBuf,
    /// Where the pidfiles go.
    pub run_dir: PathBuf,
    /// Control API address; loopback only.
    pub control: SocketAddr,
    /// Address the services listen on.
    pub addr: IpAddr,
    /// Shut down when stdin reaches its end.
    pub exit_on_stdin_eof: bool,
}

/// Runs the manager until it is shut down. Prints one line per service,
/// `NAME pid PID listening on ADDR`, then `control listening on ADDR`.
pub fn run(up: &UpConfig) -> Result<()> {
    if !up.control.ip().is_loopback() {
        return Err(Error::usage(format!(
            "--control {}: the control API kills processes, so it listens on loopback only",
            up.control
        )));
    }
    let file = up.config.display().to_string();
    let text = std::fs::read_to_string(&up.config)
        .map_err(|e| Error::io(format_args!("reading lab file {file}"), e))?;
    let specs = config::parse(&file, &text)?;
    // Bind the control port first: a clash then fails before any child runs.
    let listener = TcpListener::bind(up.control)
        .map_err(|e| Error::io(format_args!("listening on {}", up.control), e))?;
    let control = listener
        .local_addr()
        .map_err(|e| Error::io("reading the control address", e))?;
    let exe =
        std::env::current_exe().map_err(|e| Error::io("finding the heal-lab executable", e))?;
    let sup = Arc::new(Supervisor::new(exe, up.run_dir.clone(), up.addr, &specs)?);
    for name in sup.names() {
        match sup.start(name) {
            Ok(s) => say!(
                "{} pid {} listening on {}",
                s.name,
                s.pid,
                SocketAddr::new(up.addr, s.port)
            ),
            Err(e) => {
                sup.stop_all();
                return Err(e);
            }
        }
    }
    {
        let sup = Arc::clone(&sup);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            sup.reap_all();
        });
    }
    if up.exit_on_stdin_eof {
        let sup = Arc::clone(&sup);
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while stdin.read(&mut sink).is_ok_and(|n| n > 0) {}
            sup.stop_all();
            note!("heal-lab up: stdin closed, shut down");
            std::process::exit(0);
        });
    }
    say!("control listening on {control}");
    let handler = move |req: &Request, peer: &Peer<'_>| api::handle(&sup, req, peer);
    http::serve(listener, Arc::new(handler), MAX_CONTROL_CONNECTIONS);
    Ok(())
}
