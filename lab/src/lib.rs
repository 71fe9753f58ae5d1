//! heal's test lab: real services to watch, break and restart.
//!
//! The `heal-lab` binary gathers these pieces; heal's end-to-end tests run
//! it to have something real behind a real Prometheus. Everything here is
//! std only, loopback only by default, and bounded in time and memory.
//!
//! # Layout
//!
//! - [`service`]: `heal-lab service`, an HTTP service with Prometheus
//!   metrics and faults on command (crash, hang, leak, latency, errors, cpu,
//!   and dependency: refused connections written to its log).
//! - [`load`]: `heal-lab load`, an open-loop load generator for loopback
//!   targets.
//! - [`manager`]: `heal-lab up`, a tiny supervisor with pidfiles and a control
//!   API, and the client behind `heal-lab restart|start|stop`.
//! - [`promconfig`]: `heal-lab prometheus-config`, a `prometheus.yml` for the lab.
//! - [`http`]: the hand-written HTTP/1.1 server and client under all of them.
//! - [`orchestrate`]: a whole lab from a program (manager, Prometheus, load,
//!   monit), for `heal demo` and `heal bench lab`.
//! - [`postgres`]: a real PostgreSQL cluster of its own (Debian's package) for
//!   the shared store's tests.
//! - [`procfs`]: resident memory, CPU time, process liveness from `/proc`.

/// Writes a line to stderr and ignores failure: a lab process must not die
/// (as `eprintln!` would, by panicking) because its stderr reader went away.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes a line to stdout and flushes it, ignoring failure, like `note!`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*).and_then(|()| out.flush());
    }};
}

mod error;
pub mod http;
pub mod image;
pub mod load;
pub mod manager;
pub mod orchestrate;
pub mod postgres;
pub mod procfs;
pub mod promconfig;
pub mod rng;
pub mod service;
pub mod tansu;

pub use error::{Error, ErrorKind, Result};
