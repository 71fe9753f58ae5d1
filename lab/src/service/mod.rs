//! `heal-lab service`: a small HTTP service that misbehaves on command.
//!
//! Endpoints:
//!
//! - `GET /`: the work endpoint, a short body; it is what the request
//!   metrics count and what every fault acts on.
//! - `GET /healthz`: `200 ok`, unless hung (never answers) or erroring
//!   (answers 500 as often as `/` does: the check goes through the same
//!   failing path a real health check would).
//! - `GET /metrics`: Prometheus text format, see [`metrics`].
//! - `POST /fault/KIND?param=V` sets a fault (see [`Fault`]), `POST
//!   /fault/clear` clears it, `GET /fault` names the active one.
//!
//! **Hang semantics.** A hung application usually still accepts TCP
//! connections (the kernel does that) but its request handlers never
//! return. The lab models the handlers that touch the broken part: `/` and
//! `/healthz` block, while `/metrics` (served by an instrumentation library
//! on its own path in most stacks) and the fault API keep answering, so
//! Prometheus keeps seeing the service and the request rate falls to zero.
//! A blocked request is released when its client gives up (its thread
//! notices the closed connection) or when the fault is cleared.

mod fault;
#[cfg(feature = "kafka")]
mod kafka_log;
pub mod logfile;
pub mod metrics;

pub use fault::{Fault, KINDS};

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::{self, Peer, Request, Response};
use crate::procfs;
use metrics::{Metrics, Snapshot};

/// Concurrent connections a service serves; beyond that it answers 503. Hung
/// requests hold a connection each until their client gives up.
const MAX_CONNECTIONS: usize = 256;
/// How often the leak thread allocates; small steps make RSS grow smoothly.
const LEAK_TICK: Duration = Duration::from_millis(100);

/// How to run a service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The `service` label value; letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// Address to listen on.
    pub addr: IpAddr,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Resident memory at which the leak fault kills the process.
    pub mem_limit_mb: u64,
    /// Fault to start with.
    pub fault: Option<Fault>,
    /// Extra gauge series to export, `lab_extra{id="0".."K-1"}`, slowly
    /// varying: many series for a benchmark of the watcher, at no cost to
    /// the request path.
    pub extra_series: u32,
    /// Exit when standard input reaches its end: a supervisor that keeps the
    /// write end of a pipe open takes its children with it when it dies,
    /// whatever killed it.
    pub exit_on_stdin_eof: bool,
    /// Write `DIR/NAME.log`: a line per request to `/` (`INFO
    /// NAME.access`), and the dependency fault's `ERROR NAME.db` lines.
    pub log_dir: Option<std::path::PathBuf>,
    /// Also send each log line to a Kafka topic: (brokers, topic). Needs
    /// the `kafka` feature.
    pub kafka: Option<(String, String)>,
    /// Services called on every request to `/`, in order: (name, address).
    pub calls: Vec<(String, SocketAddr)>,
}

/// How long a call to a dependency may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `name` is usable as a service name (and so as a label value, a
/// file name and a URL path segment without escaping).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && name != "."
        && name != ".."
}

/// Binds, prints `listening on ADDR` on stdout, and serves until the process
/// exits (by a fault, a signal or the end of stdin).
pub fn run(config: ServiceConfig) -> Result<()> {
    if !valid_name(&config.name) {
        return Err(Error::usage(format!(
            "service name {:?}: use 1 to 64 letters, digits, '_', '-' or '.'",
            config.name
        )));
    }
    let start_time_seconds = procfs::unix_time_secs();
    let listener = TcpListener::bind(SocketAddr::new(config.addr, config.port)).map_err(|e| {
        Error::io(
            format_args!("listening on {}:{}", config.addr, config.port),
            e,
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let service = Arc::new(Service {
        name: config.name.clone(),
        mem_limit_bytes: config.mem_limit_mb.saturating_mul(1024 * 1024),
        start_time_seconds,
        fault: Mutex::new(None),
        generation: AtomicU64::new(0),
        metrics: Metrics::default(),
        leaked: Mutex::new(Vec::new()),
        leaked_bytes: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
        extra_series: config.extra_series,
        log: logfile::Log::new(
            config
                .log_dir
                .as_ref()
                .map(|dir| logfile::LogFile::new(dir.join(format!("{}.log", config.name)))),
            config.kafka.as_ref(),
        )?,
        attempts: AtomicU64::new(0),
        calls: config.calls.clone(),
    });
    if let Some(fault) = config.fault {
        service.set_fault(Some(fault));
    }
    if config.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let mut sink = String::new();
            let stdin = std::io::stdin();
            while stdin.lock().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
            std::process::exit(0);
        });
    }
    // The one line supervisors and tests wait for; everything else goes to stderr.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {local}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("writing to stdout", e))?;
    drop(stdout);
    let handler = {
        let service = Arc::clone(&service);
        move |req: &Request, peer: &Peer<'_>| service.handle(req, peer)
    };
    http::serve(listener, Arc::new(handler), MAX_CONNECTIONS);
    Ok(())
}

#[derive(Debug)]
struct Service {
    name: String,
    mem_limit_bytes: u64,
    start_time_seconds: f64,
    fault: Mutex<Option<Fault>>,
    /// Bumped at every fault change; the leak, CPU and delayed-crash threads
    /// stop when it no longer matches the one they were started for.
    generation: AtomicU64,
    metrics: Metrics,
    /// What the leak fault holds on to. Clearing the fault stops the growth
    /// but keeps the memory, like a real leak: only a restart gives it back.
    leaked: Mutex<Vec<Vec<u8>>>,
    leaked_bytes: AtomicU64,
    /// Request sequence number, the input of the error fault's draws.
    sequence: AtomicU64,
    /// How many `lab_extra` series to export.
    extra_series: u32,
    /// The log: its file (`--log-dir`) and its Kafka topic (`--kafka`).
    log: logfile::Log,
    /// Connection attempts to the failing dependency (its log lines count
    /// them).
    attempts: AtomicU64,
    /// Services called on every request to `/`.
    calls: Vec<(String, SocketAddr)>,
}

impl Service {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(self: &Arc<Self>, req: &Request, peer: &Peer<'_>) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => self
                .work(peer)
                .unwrap_or_else(|| Response::text(503, "client gone")),
            ("GET", "/healthz") => self
                .healthz(peer)
                .unwrap_or_else(|| Response::text(503, "client gone")),
            ("GET", "/metrics") => {
                let mut r = Response::text(200, self.render_metrics());
                r.content_type = metrics::CONTENT_TYPE;
                r
            }
            ("GET", "/fault") => Response::text(
                200,
                self.fault()
                    .map_or_else(|| "none".to_string(), |f| f.to_string()),
            ),
            ("POST", "/fault/clear") => {
                self.set_fault(None);
                Response::text(200, "fault cleared")
            }
            ("POST", path) if path.starts_with("/fault/") => {
                let kind = &path["/fault/".len()..];
                match Fault::from_query(kind, &req.query) {
                    Ok(Fault::Crash { after_ms: 0 }) => {
                        self.set_fault(Some(Fault::Crash { after_ms: 0 }));
                        let name = self.name.clone();
                        Response::text(200, "fault crash: exiting").then(move || crash(&name))
                    }
                    Ok(fault) => {
                        self.set_fault(Some(fault));
                        Response::text(200, format!("fault {fault}"))
                    }
                    Err(e) => Response::text(400, e.to_string()),
                }
            }
            (_, "/" | "/healthz" | "/metrics" | "/fault") => {
                Response::text(405, "method not allowed")
            }
            (_, path) if path.starts_with("/fault/") => {
                Response::text(405, "method not allowed: use POST")
            }
            _ => Response::text(404, "not found"),
        }
    }

    /// `GET /`. `None` when the client left while the request was hung.
    fn work(&self, peer: &Peer<'_>) -> Option<Response> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let code = match self.fault() {
            Some(Fault::Hang) => {
                self.wait_while_hung(peer)?;
                200
            }
            Some(Fault::Latency { ms }) => {
                std::thread::sleep(Duration::from_millis(ms));
                200
            }
            Some(Fault::Errors { rate }) if self.draw() < rate => 500,
            Some(Fault::Dependency { rate }) => {
                if self.draw() < rate {
                    // Refused, and served from the cache: 200 all the same,
                    // and only the log tells.
                    let n = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
                    self.log.line(
                        "ERROR",
                        &format!("{}.db", self.name),
                        &format!(
                            "connection to 10.0.0.7:5432 refused (attempt {n}); served from cache"
                        ),
                    );
                }
                200
            }
            _ => 200,
        };
        // The dependencies, in order: their latency adds to this request's,
        // and a failed call fails it (502).
        let mut code = code;
        for (callee, addr) in &self.calls {
            let status = match http::client::get(*addr, "/", CALL_TIMEOUT) {
                Ok(r) => r.status,
                Err(_) => 0,
            };
            self.metrics.call(callee, status);
            if status != 200 && code == 200 {
                code = 502;
            }
        }
        self.metrics.observe(code, started.elapsed());
        self.log.line(
            "INFO",
            &format!("{}.access", self.name),
            &format!("GET / {code} in {} ms", started.elapsed().as_millis()),
        );
        Some(match code {
            200 => Response::text(200, format!("hello from {}", self.name)),
            502 => Response::text(502, "a dependency failed"),
            _ => Response::text(code, "internal error (fault errors)"),
        })
    }

    /// `GET /healthz`. `None` when the client left while the request was hung.
    fn healthz(&self, peer: &Peer<'_>) -> Option<Response> {
        Some(match self.fault() {
            Some(Fault::Hang) => {
                self.wait_while_hung(peer)?;
                Response::text(200, "ok")
            }
            Some(Fault::Errors { rate }) if self.draw() < rate => {
                Response::text(500, "unhealthy (fault errors)")
            }
            _ => Response::text(200, "ok"),
        })
    }

    /// Blocks while the hang fault is active; `None` once the client gave up.
    fn wait_while_hung(&self, peer: &Peer<'_>) -> Option<()> {
        while self.fault() == Some(Fault::Hang) {
            if peer.gone(Duration::from_millis(100)) {
                return None;
            }
        }
        Some(())
    }

    /// A uniform draw in [0, 1) for the error fault: SplitMix64 of the
    /// request sequence number, so a run is reproducible and, unlike a
    /// round-robin pattern, has realistic streaks.
    fn draw(&self) -> f64 {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        crate::rng::nth_unit(n)
    }

    fn render_metrics(&self) -> String {
        let mut text = self.metrics.render(&Snapshot {
            service: &self.name,
            resident_memory_bytes: procfs::resident_memory_bytes(),
            start_time_seconds: self.start_time_seconds,
            cpu_seconds: procfs::cpu_seconds(),
            fault: self.fault().map(|f| f.kind()),
            leaked_bytes: self.leaked_bytes.load(Ordering::Relaxed),
        });
        if self.extra_series > 0 {
            metrics::render_extra(&mut text, self.extra_series, procfs::unix_time_secs());
        }
        text
    }

    /// Replaces the active fault and starts the threads it needs.
    fn set_fault(self: &Arc<Self>, fault: Option<Fault>) {
        let generation = {
            let mut current = self.fault.lock().unwrap_or_else(|e| e.into_inner());
            *current = fault;
            // Under the lock, so that a thread that sees the new fault also
            // sees the new generation.
            self.generation.fetch_add(1, Ordering::SeqCst) + 1
        };
        if let Some(f) = fault {
            note!("{}: fault {f}", self.name);
        } else {
            note!("{}: fault cleared", self.name);
        }
        match fault {
            Some(Fault::Crash { after_ms }) if after_ms > 0 => {
                let this = Arc::clone(self);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(after_ms));
                    if this.generation.load(Ordering::SeqCst) == generation {
                        crash(&this.name);
                    }
                });
            }
            Some(Fault::Leak { mb_per_s }) => {
                let this = Arc::clone(self);
                std::thread::spawn(move || this.leak(generation, mb_per_s));
            }
            Some(Fault::Cpu { threads }) => {
                for _ in 0..threads {
                    let this = Arc::clone(self);
                    std::thread::spawn(move || this.spin(generation));
                }
            }
            _ => {}
        }
    }

    /// The leak fault's thread: allocates and writes memory (so it is
    /// resident, not just reserved) at the set rate until the fault changes
    /// or the resident size reaches the limit.
    fn leak(&self, generation: u64, mb_per_s: f64) {
        let per_tick = (mb_per_s * 1024.0 * 1024.0 * LEAK_TICK.as_secs_f64()).max(1.0) as usize;
        let mut next = Instant::now();
        while self.generation.load(Ordering::SeqCst) == generation {
            // A non-zero fill: zeroed allocations can be lazily mapped pages
            // that never become resident.
            let chunk = vec![0xA5u8; per_tick];
            self.leaked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(chunk);
            self.leaked_bytes
                .fetch_add(per_tick as u64, Ordering::Relaxed);
            let rss = procfs::resident_memory_bytes();
            if rss >= self.mem_limit_bytes {
                oom_kill(&self.name, rss, self.mem_limit_bytes);
            }
            next += LEAK_TICK;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }

    /// One CPU fault thread: spins until the fault changes.
    fn spin(&self, generation: u64) {
        let mut x = 0u64;
        while self.generation.load(Ordering::Relaxed) == generation {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
    }
}

/// The crash fault: exit status 1, as an unhandled error would.
fn crash(name: &str) -> ! {
    note!("{name}: fault crash: exiting with status 1");
    std::process::exit(1)
}

/// Dies the way the kernel's OOM killer kills: by SIGKILL, so a supervisor
/// sees "killed by signal 9", not an exit status. Without `libc` (and with
/// `unsafe` forbidden) the signal is sent by `kill(1)`, argv only; should
/// that fail, exit status 137 is what a shell reports for SIGKILL.
fn oom_kill(name: &str, rss: u64, limit: u64) -> ! {
    note!("{name}: fault leak: resident memory {rss} bytes reached the limit of {limit} bytes; killed like the OOM killer (SIGKILL)");
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    std::thread::sleep(Duration::from_secs(1));
    std::process::exit(137)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_as_labels_files_and_paths() {
        for ok in ["web", "api-1", "db_2", "a.b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\"y", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn draws_are_uniform_enough() {
        let below = (0..10_000u64)
            .filter(|&n| crate::rng::nth_unit(n) < 0.3)
            .count();
        assert!((2_800..3_200).contains(&below), "{below}");
    }
}
