//! Running heal against the real lab, for `heal demo` and `heal bench
//! lab`: finding the executables, the fault kinds, waiting with a progress
//! line, running `heal watch` as a child and reading its log.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::http::client;
use lab::orchestrate::{self, ChildGuard};

use crate::{Context, Error, Result};

/// The lab runbook, embedded so an installed `heal` needs no checkout.
pub const LAB_RUNBOOK: &str = include_str!("../lab/runbooks/lab.yaml");
/// The control address written in [`LAB_RUNBOOK`], replaced by the real one.
pub(crate) const RUNBOOK_CONTROL: &str = "127.0.0.1:19400";
/// Samples of history the statistical detectors calibrate on before they
/// judge (the tail fits' minimum; see `detect`'s adaptive detector).
pub const HISTORY_SAMPLES: u64 = 100;
/// Poll cadence and timeout of "does it serve again?".
pub const POLL: Duration = Duration::from_millis(100);
pub const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// The faults the demo and the bench inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The process exits with status 1.
    Crash,
    /// The process lives, `/` never answers.
    Hang,
    /// 60 % of `/` answers are 500.
    Errors,
    /// Resident memory grows by 16 MiB/s until the 256 MiB limit kills it.
    Leak,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Crash,
        FaultKind::Hang,
        FaultKind::Errors,
        FaultKind::Leak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Hang => "hang",
            FaultKind::Errors => "errors",
            FaultKind::Leak => "leak",
        }
    }

    /// The lab service's fault request (`POST /fault/SPEC`); the same
    /// faults as the end-to-end test.
    pub fn spec(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Hang => "hang",
            FaultKind::Errors => "errors?rate=0.6",
            FaultKind::Leak => "leak?mb_per_s=16",
        }
    }

    /// Whether a hard limit of the lab runbook catches it (no history needed).
    pub fn caught_by_hard_limit(self) -> bool {
        matches!(self, FaultKind::Crash | FaultKind::Errors)
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    /// The name as the command line spells it.
    fn from_str(s: &str) -> std::result::Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|v| v.name()).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub fn duration_arg(name: &str, v: &str) -> Result<Duration> {
    remediate::Duration::from_str(v)
        .map(|d| Duration::from_millis(d.as_millis_i64().max(0) as u64))
        .map_err(|e| Error::Usage(format!("--{name} {v:?}: {e}")))
}

/// `heal-lab`, beside this executable or on `path_env` (heal's `PATH`,
/// read by the binary).
pub fn find_lab_bin(path_env: Option<&OsString>) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the heal executable")?;
    let dir = exe.parent().map(Path::to_path_buf);
    let path = path_env.map(OsString::as_os_str);
    orchestrate::find_executable("heal-lab", dir.as_deref(), path).ok_or_else(|| {
        Error::Unavailable(format!(
            "heal-lab not found beside {} nor on PATH: build it with `cargo build --release -p heal -p lab` \
             (it lands beside heal in target/release)",
            exe.display()
        ))
    })
}

/// The Prometheus executable, or the way to get it.
pub fn check_prometheus(bin: &Path) -> Result<()> {
    if bin.is_file() {
        Ok(())
    } else {
        Err(Error::Unavailable(format!(
            "Prometheus not found at {}: install it with `apt-get install prometheus` \
             (Debian, Ubuntu), or pass --prometheus-bin PATH",
            bin.display()
        )))
    }
}

/// Set by SIGINT or SIGTERM: the long waits check it and return an error,
/// so that the guards stop every child and the temporary directory goes.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        set.store(true, Ordering::SeqCst);
    });
    flag
}

/// Sleeps `d` unless interrupted.
pub fn sleep(d: Duration, stop: &AtomicBool) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(Error::msg("interrupted"));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// A progress line on stderr: rewritten in place on a terminal, one line
/// per `every` otherwise (logs).
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    last: Option<Instant>,
    every: Duration,
}

impl Progress {
    pub fn new(every: Duration) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: None,
            every,
        }
    }

    pub fn show(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if self.last.is_none_or(|t| t.elapsed() >= self.every) {
            let _ = writeln!(err, "{line}");
            self.last = Some(Instant::now());
        }
    }

    pub fn done(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = writeln!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Lets the lab build `warmup` of history, with a progress line.
pub fn warm_up(warmup: Duration, scrape: Duration, stop: &AtomicBool) -> Result<()> {
    let mut progress = Progress::new(Duration::from_secs(15));
    let t0 = Instant::now();
    let total = (warmup.as_secs_f64() / scrape.as_secs_f64()).round() as u64;
    while t0.elapsed() < warmup {
        let samples = (t0.elapsed().as_secs_f64() / scrape.as_secs_f64()) as u64;
        progress.show(&format!(
            "warming up: {samples}/{total} samples of history, {}s left \
             (heal's statistical detectors calibrate on about {HISTORY_SAMPLES} samples before they judge)",
            warmup.saturating_sub(t0.elapsed()).as_secs()
        ));
        sleep(
            Duration::from_millis(500).min(warmup.saturating_sub(t0.elapsed())),
            stop,
        )?;
    }
    progress.done(&format!("warmed up: {total} samples of history"));
    Ok(())
}

/// The lab runbook for a lab whose control API is at `control`.
pub fn lab_runbook(control: SocketAddr) -> String {
    LAB_RUNBOOK.replace(RUNBOOK_CONTROL, &control.to_string())
}

/// Writes `text` as `DIR/runbooks/lab.yaml`; returns the runbook directory.
pub fn write_runbook(dir: &Path, text: &str) -> Result<PathBuf> {
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).context("creating the runbook directory")?;
    std::fs::write(runbooks.join("lab.yaml"), text).context("writing the lab runbook")?;
    Ok(runbooks)
}

/// `heal watch --execute` as a child process of this executable, its log
/// (`HEAL_LOG=info`) collected line by line.
#[derive(Debug)]
pub struct HealWatch {
    child: ChildGuard,
    listen: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl HealWatch {
    /// Starts `heal watch` on `prometheus` with the runbooks in `runbooks`,
    /// one-second evaluations, `heal-lab`'s directory first on its `PATH`
    /// (the runbook's exec actions run `heal-lab`), then `path_env` (heal's
    /// own `PATH`, read by the binary).
    pub fn start(
        prometheus: &str,
        runbooks: &Path,
        lab_bin: &Path,
        path_env: Option<&OsString>,
    ) -> Result<HealWatch> {
        Self::launch(
            &[
                "--prometheus",
                prometheus,
                "--backfill",
                "10m",
                "--query-timeout",
                "800ms",
            ],
            runbooks,
            lab_bin,
            path_env,
        )
    }

    /// Starts `heal watch --execute` as [`HealWatch::start`] does, with
    /// `args` (source options) before the common ones.
    pub fn launch(
        args: &[&str],
        runbooks: &Path,
        lab_bin: &Path,
        path_env: Option<&OsString>,
    ) -> Result<HealWatch> {
        let exe = std::env::current_exe().context("finding the heal executable")?;
        let listen = orchestrate::loopback(orchestrate::free_port()?);
        let lab_dir = lab_bin.parent().unwrap_or(Path::new("."));
        let path = std::env::join_paths(
            std::iter::once(lab_dir.to_path_buf()).chain(
                path_env
                    .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )
        .context("building PATH for heal watch")?;
        let mut child = Command::new(exe)
            .arg("watch")
            .args(args)
            .arg("--runbooks")
            .arg(runbooks)
            .args([
                "--interval",
                "1s",
                "--execute",
                "--listen",
                &listen.to_string(),
            ])
            .env("PATH", path)
            .env("HEAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting heal watch")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let mut heal = HealWatch {
            child: ChildGuard::new(child),
            listen,
            log,
        };
        let healthy = orchestrate::wait_until(Duration::from_secs(60), POLL, || {
            heal.child.exited()
                || client::get(listen, "/healthz", Duration::from_secs(1))
                    .is_ok_and(|r| r.status == 200)
        });
        if healthy.is_none() || heal.child.exited() {
            return Err(Error::msg(format!(
                "heal watch did not become healthy:\n{}",
                heal.log_since(0).join("\n")
            )));
        }
        Ok(heal)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its `/metrics` text (empty if it does not answer).
    pub fn metrics(&self) -> String {
        client::get(self.listen, "/metrics", Duration::from_secs(2))
            .map(|r| r.body_text())
            .unwrap_or_default()
    }

    /// Lines logged so far.
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Lines logged from line `from` on.
    pub fn log_since(&self, from: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// Stops it (SIGTERM: it finishes the action in flight and exits).
    pub fn stop(mut self) -> bool {
        self.child.stop(Duration::from_secs(35))
    }
}

/// Whether every incident heal opened on the series whose `instance` label
/// is `instance` has resolved.
///
/// heal opens one incident per excursion of a series, and an excursion ends
/// only after 30 quiet samples (the detector's hysteresis): a fault injected
/// before that lands in the incident of the previous one, whose chain has
/// already stopped at "recovered", and heal does not act again. A real
/// crash loop faster than that would meet the same limit; the benches wait
/// it out so that each injection measures one incident.
pub fn heal_quiet(heal: &HealWatch, instance: &str) -> bool {
    let lines = heal.log_since(0);
    let instance = format!("instance=\"{instance}\"");
    let opened: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("heal::live: incident opened") && l.contains(&instance))
        .filter_map(|l| log_field(l, "incident"))
        .collect();
    opened.iter().all(|id| {
        lines.iter().any(|l| {
            l.contains(": incident resolved") && log_field(l, "incident").as_deref() == Some(id)
        })
    })
}

/// The value of field `key` in a `tracing` log line (`key=value`,
/// `key="quoted"` or `key={braced ...}`), in the event's fields or its
/// spans'.
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = line[from..].find(&format!("{key}=")) {
        let at = from + i;
        from = at + key.len() + 1;
        if at > 0 && !line[..at].ends_with([' ', '{', ',']) {
            continue;
        }
        let rest = &line[from..];
        return Some(match rest.chars().next() {
            Some('"') => {
                let mut out = String::new();
                let mut esc = false;
                for c in rest[1..].chars() {
                    match (esc, c) {
                        (false, '\\') => esc = true,
                        (false, '"') => break,
                        _ => {
                            out.push(c);
                            esc = false;
                        }
                    }
                }
                out
            }
            Some('{') => {
                let (mut depth, mut quoted) = (0, false);
                let mut end = rest.len();
                for (j, c) in rest.char_indices() {
                    match c {
                        '"' => quoted = !quoted,
                        '{' if !quoted => depth += 1,
                        '}' if !quoted => {
                            depth -= 1;
                            if depth == 0 {
                                end = j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest[..end].to_string()
            }
            _ => rest[..unquoted_end(rest)].to_string(),
        });
    }
    None
}

/// Where an unquoted value ends: at the next ` key=` (a space, an
/// identifier, `=`) outside braces and quotes, or at the `}:` that closes a
/// span's fields, or at the end of the line.
fn unquoted_end(rest: &str) -> usize {
    let b = rest.as_bytes();
    let (mut depth, mut quoted) = (0i32, false);
    for i in 0..b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b'{' if !quoted => depth += 1,
            b'}' if !quoted && depth > 0 => depth -= 1,
            b'}' if !quoted => return i,
            b' ' if !quoted && depth == 0 => {
                let key = rest[i + 1..]
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                    .count();
                if key > 0 && b.get(i + 1 + key) == Some(&b'=') {
                    return i;
                }
            }
            _ => {}
        }
    }
    b.len()
}

/// What heal did about a fault, read from its log.
#[derive(Debug, Default)]
pub(crate) struct IncidentReport {
    pub(crate) id: String,
    pub(crate) rule: String,
    pub(crate) series: String,
    pub(crate) severity: String,
    /// When heal opened it (the log line's time, ms since the epoch).
    pub(crate) opened_at: Option<i64>,
    /// One line per step planned, performed, not performed or verified.
    pub(crate) steps: Vec<String>,
    pub(crate) verified: bool,
}

/// The first incident opened on `instance` in `lines`, and what followed.
pub(crate) fn incident_for(lines: &[String], instance: &str) -> Option<IncidentReport> {
    let opened = lines.iter().find(|l| {
        l.contains("heal::live: incident opened") && l.contains(&format!("\"{instance}\""))
    })?;
    let id = log_field(opened, "incident")?;
    let mut report = IncidentReport {
        rule: log_field(opened, "rule").unwrap_or_default(),
        series: log_field(opened, "series").unwrap_or_default(),
        severity: log_field(opened, "severity").unwrap_or_default(),
        opened_at: opened
            .split_whitespace()
            .next()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis()),
        id: id.clone(),
        ..IncidentReport::default()
    };
    for l in lines {
        if log_field(l, "incident").as_deref() != Some(id.as_str()) {
            continue;
        }
        let step = log_field(l, "step").unwrap_or_default();
        let f = |k: &str| log_field(l, k).unwrap_or_default();
        if l.contains(": step planned ") {
            report.steps.push(format!(
                "step {step} planned: {} ({})",
                f("action"),
                f("decision")
            ));
        } else if l.contains("heal::live: action performed") {
            report.steps.push(format!(
                "step {step} performed: {} {} in {} ms ({})",
                f("kind"),
                f("outcome"),
                f("duration_ms"),
                f("summary")
            ));
        } else if l.contains("heal::live: action not performed") {
            report.steps.push(format!(
                "step {step} not performed: {} {}",
                f("reason"),
                f("detail")
            ));
        } else if l.contains("heal::live: verified") {
            report
                .steps
                .push(format!("step {step} verified: {}", f("outcome")));
            report.verified = true;
        }
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_tracing_lines() {
        let line = r#"2026-11-21T22:00:00Z  WARN evaluation{signal=lab_up ts_ms=17}: heal::live: incident opened stage="remediate" incident=inc-1 rule=service-down series={__name__="lab_up", instance="web-0", service="web"} severity=critical"#;
        assert_eq!(log_field(line, "incident").as_deref(), Some("inc-1"));
        assert_eq!(log_field(line, "rule").as_deref(), Some("service-down"));
        assert_eq!(
            log_field(line, "series").as_deref(),
            Some(r#"{__name__="lab_up", instance="web-0", service="web"}"#)
        );
        assert_eq!(log_field(line, "signal").as_deref(), Some("lab_up"));
        assert_eq!(log_field(line, "stage").as_deref(), Some("remediate"));
        assert_eq!(log_field(line, "nope"), None);
        let action = r#"WARN action{incident=inc-1 step=0}: heal::live: action performed kind="exec" summary="exit 0: {\"a\":1}" duration_ms=12"#;
        assert_eq!(log_field(action, "step").as_deref(), Some("0"));
        assert_eq!(
            log_field(action, "summary").as_deref(),
            Some(r#"exit 0: {"a":1}"#)
        );
    }

    #[test]
    fn the_embedded_runbook_has_the_address_to_replace() {
        assert!(LAB_RUNBOOK.contains(RUNBOOK_CONTROL));
    }
}
