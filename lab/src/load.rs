//! `heal-lab load`: a bounded, open-loop load generator for the lab.
//!
//! Requests are scheduled at a fixed rate, round-robin over the targets,
//! whatever the services answer (open loop: a slow service does not slow the
//! offered load down, as with real users). A pool of worker threads sends
//! them, each with one deadline for the whole exchange. A request that could
//! not even start within its timeout because every worker was busy is
//! `dropped`, not sent, which bounds the run to about duration + timeout.
//!
//! Only loopback targets are accepted: the lab must never be pointed at
//! somebody else's service by mistake.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::client;

/// Highest rate accepted, to keep a typo from saturating a shared machine.
pub const MAX_RPS: u32 = 5_000;
/// Longest run accepted.
pub const MAX_DURATION_S: u64 = 3_600;
/// Most worker threads.
const MAX_WORKERS: usize = 256;

/// One load target: a loopback address and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Path and query to request.
    pub path: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/PATH]`, where HOST is `localhost`, an IPv4
    /// address in 127.0.0.0/8 or `[::1]`. Names are not resolved: DNS could
    /// send the lab's load anywhere.
    pub fn parse(url: &str) -> Result<Target> {
        let refuse = |why: &str| Error::usage(format!("load target {url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| refuse("only plain http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| refuse("unterminated [IPv6] address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port: u16 = match port {
            Some(p) => p.parse().map_err(|_| refuse("bad port"))?,
            None => 80,
        };
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .map_err(|_| refuse("the host must be localhost or a loopback IP address"))?
        };
        if !ip.is_loopback() {
            return Err(refuse(
                "only loopback targets (127.0.0.0/8, ::1) are allowed",
            ));
        }
        Ok(Target {
            url: url.to_string(),
            addr: SocketAddr::new(ip, port),
            path: path.to_string(),
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Targets, used round-robin.
    pub targets: Vec<Target>,
    /// Requests per second over all targets.
    pub rps: u32,
    /// How long to send.
    pub duration: Duration,
    /// Deadline of each request.
    pub timeout: Duration,
}

/// Counts and latencies of one target or of the whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Requests started.
    pub sent: u64,
    /// Answered with a 2xx status.
    pub ok: u64,
    /// Answered with another status, or failed (refused, reset).
    pub errors: u64,
    /// No complete answer before the deadline.
    pub timeouts: u64,
    /// Never started: no worker was free within the timeout.
    pub dropped: u64,
    /// Latencies of the answered requests (ok or not), in seconds.
    pub latencies: Vec<f64>,
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.dropped += other.dropped;
        self.latencies.extend_from_slice(&other.latencies);
    }

    /// The `q` quantile (0..=1) of the answered requests' latencies in
    /// seconds, nearest rank; `None` with no answer.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return None;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |q| {
            self.quantile(q)
                .map_or_else(|| "-".to_string(), |s| format!("{:.3}", s * 1000.0))
        };
        write!(
            f,
            "sent={} ok={} errors={} timeouts={} dropped={} p50_ms={} p99_ms={}",
            self.sent,
            self.ok,
            self.errors,
            self.timeouts,
            self.dropped,
            ms(0.5),
            ms(0.99)
        )
    }
}

/// The result of a run: one [`Stats`] per target and the total.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Per target, in the order given.
    pub targets: Vec<(String, Stats)>,
    /// All targets together.
    pub total: Stats,
}

impl fmt::Display for Summary {
    /// One line per target (`target URL k=v ...`), then `total k=v ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (url, stats) in &self.targets {
            writeln!(f, "target {url} {stats}")?;
        }
        write!(f, "total {}", self.total)
    }
}

/// Validates the configuration against the lab's bounds.
pub fn validate(config: &LoadConfig) -> Result<()> {
    if config.targets.is_empty() {
        return Err(Error::usage("load: give at least one --target"));
    }
    if config.rps == 0 || config.rps > MAX_RPS {
        return Err(Error::usage(format!(
            "load: --rps must be in 1..={MAX_RPS}"
        )));
    }
    if config.duration.is_zero() || config.duration > Duration::from_secs(MAX_DURATION_S) {
        return Err(Error::usage(format!(
            "load: --duration-s must be in (0, {MAX_DURATION_S}]"
        )));
    }
    if config.timeout.is_zero() || config.timeout > Duration::from_secs(60) {
        return Err(Error::usage("load: --timeout-ms must be in 1..=60000"));
    }
    Ok(())
}

/// Runs the load and returns what happened.
pub fn run(config: &LoadConfig) -> Result<Summary> {
    validate(config)?;
    let total_requests =
        (u64::from(config.rps) as f64 * config.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rps));
    // Enough workers for every request that can be in flight at the full
    // rate when each one runs into its timeout.
    let workers = ((f64::from(config.rps) * config.timeout.as_secs_f64()).ceil() as usize + 2)
        .clamp(2, MAX_WORKERS);
    let (tx, rx) = mpsc::channel::<(usize, Instant)>();
    let rx = Arc::new(Mutex::new(rx));
    let targets = Arc::new(config.targets.clone());
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let rx = Arc::clone(&rx);
            let targets = Arc::clone(&targets);
            let timeout = config.timeout;
            std::thread::spawn(move || worker(&rx, &targets, timeout))
        })
        .collect();
    let start = Instant::now();
    for i in 0..total_requests {
        let due = start + interval.mul_f64(i as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if tx.send(((i as usize) % targets.len(), due)).is_err() {
            break;
        }
    }
    drop(tx);
    let mut per_target: Vec<Stats> = vec![Stats::default(); targets.len()];
    for handle in handles {
        let stats = handle
            .join()
            .map_err(|_| Error::failed("load: a worker thread panicked"))?;
        for (mine, theirs) in per_target.iter_mut().zip(&stats) {
            mine.merge(theirs);
        }
    }
    let mut total = Stats::default();
    for stats in &per_target {
        total.merge(stats);
    }
    Ok(Summary {
        targets: targets
            .iter()
            .map(|t| t.url.clone())
            .zip(per_target)
            .collect(),
        total,
    })
}

fn worker(
    rx: &Mutex<mpsc::Receiver<(usize, Instant)>>,
    targets: &[Target],
    timeout: Duration,
) -> Vec<Stats> {
    let mut stats = vec![Stats::default(); targets.len()];
    loop {
        // The guard is a temporary of this statement: released before sending.
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((index, due)) = job else { break };
        let s = &mut stats[index];
        if due.elapsed() > timeout {
            s.dropped += 1;
            continue;
        }
        let target = &targets[index];
        s.sent += 1;
        let started = Instant::now();
        match client::get(target.addr, &target.path, timeout) {
            Ok(response) => {
                s.latencies.push(started.elapsed().as_secs_f64());
                if (200..300).contains(&response.status) {
                    s.ok += 1;
                } else {
                    s.errors += 1;
                }
            }
            Err(e) if client::is_timeout(&e) => s.timeouts += 1,
            Err(_) => s.errors += 1,
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_parse() {
        let t = Target::parse("http://127.0.0.1:8080/x?y=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/x?y=1");
        assert_eq!(
            Target::parse("http://localhost:81").unwrap().addr,
            "127.0.0.1:81".parse().unwrap()
        );
        assert_eq!(
            Target::parse("http://127.3.4.5").unwrap().addr,
            "127.3.4.5:80".parse().unwrap()
        );
        assert_eq!(
            Target::parse("http://[::1]:9/").unwrap().addr,
            "[::1]:9".parse().unwrap()
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let msg = |u: &str| Target::parse(u).unwrap_err().to_string();
        assert_eq!(msg("http://10.0.0.1:80/"), "load target \"http://10.0.0.1:80/\": only loopback targets (127.0.0.0/8, ::1) are allowed");
        assert_eq!(msg("http://example.com/"), "load target \"http://example.com/\": the host must be localhost or a loopback IP address");
        assert_eq!(
            msg("https://127.0.0.1/"),
            "load target \"https://127.0.0.1/\": only plain http:// URLs are supported"
        );
        assert_eq!(msg("http://[2001:db8::1]:80/"), "load target \"http://[2001:db8::1]:80/\": only loopback targets (127.0.0.0/8, ::1) are allowed");
        assert_eq!(
            msg("http://127.0.0.1:99999/"),
            "load target \"http://127.0.0.1:99999/\": bad port"
        );
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let s = Stats {
            latencies: (1..=100).map(f64::from).collect(),
            ..Stats::default()
        };
        assert_eq!(s.quantile(0.5), Some(50.0));
        assert_eq!(s.quantile(0.99), Some(99.0));
        assert_eq!(s.quantile(1.0), Some(100.0));
        assert_eq!(Stats::default().quantile(0.5), None);
        assert_eq!(
            Stats::default().to_string(),
            "sent=0 ok=0 errors=0 timeouts=0 dropped=0 p50_ms=- p99_ms=-"
        );
    }

    #[test]
    fn bounds_are_checked() {
        let config = |rps, secs| LoadConfig {
            targets: vec![Target::parse("http://127.0.0.1:1/").unwrap()],
            rps,
            duration: Duration::from_secs(secs),
            timeout: Duration::from_secs(1),
        };
        assert!(validate(&config(10, 1)).is_ok());
        assert_eq!(
            validate(&config(0, 1)).unwrap_err().to_string(),
            "load: --rps must be in 1..=5000"
        );
        assert_eq!(
            validate(&config(10, 0)).unwrap_err().to_string(),
            "load: --duration-s must be in (0, 3600]"
        );
    }
}
