//! `heal bench chaos`: heal watch against the real lab while a seeded fault
//! script breaks everything around it, and heal itself.
//!
//! Real parts: the lab (`heal-lab up`: services a restart really restarts),
//! a real Prometheus scraping them and a chaos exporter (a test HTTP server
//! in this process, scraped like any target) whose series churn and whose
//! label values are hostile (`;`, `$( )`, backticks, newlines, a URL's
//! authority, 10 kB) and whose `chaos_slow` fires an incident with a
//! twelve-second action every 20 s; and `heal watch --execute --db` (this
//! executable).
//!
//! The fault script (SplitMix64 from `--seed`) waits 3 to 9 s between
//! faults and picks one: SIGKILL heal and start it again 0.5 to 3 s later;
//! SIGKILL Prometheus and start it again (same port, same data) 1 to 5 s
//! later; or a fault in a random lab service (crash, hang, errors, stop
//! through the lab's control API). Lab services are never restarted by the
//! script: that is heal's job, so every restart the lab counts is one heal
//! asked for.
//!
//! At the end heal is stopped, the store is opened once more as a restart
//! would (what the last run left is settled and closed), and the figures
//! are read from the store, the lab and heal's logs:
//!
//! - incidents opened (rows), closed (resolved, and closed at a restart);
//! - actions begun (executions), finished, interrupted and settled;
//! - duplicate actions: restarts the lab performed beyond the restart
//!   actions heal began for that service (an action run twice), and
//!   executions with a label value outside the safe pattern; must be 0;
//! - lost incidents: incidents heal logged as opened that the store does
//!   not have, plus incidents left open beside a newer one of the same
//!   series and rule at any restart; must be 0;
//! - peak resident memory of heal (sampled every 250 ms) and panics in
//!   heal's logs (must be 0).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::http::client;
use lab::http::server::{self, Peer, Request, Response};
use lab::orchestrate::{self, ChildGuard, Lab, LabService, TempDir};
use lab::rng::SplitMix64;
use store::{ExecutionState, IncidentFilter, IncidentStatus, Store};

use crate::error::Context;
use crate::labrun;
use crate::{Error, Result};

/// What `heal bench chaos` runs.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// How long the fault script runs.
    pub duration: Duration,
    /// Seed of the fault script.
    pub seed: u64,
    /// The Prometheus executable.
    pub prometheus_bin: PathBuf,
    /// heal's `PATH` (read by the binary), to find `heal-lab`.
    pub path_env: Option<OsString>,
    /// Series the chaos exporter renames every 10 s.
    pub churn: u32,
}

/// Label values an attacker or a careless exporter would produce.
pub const HOSTILE: &[&str] = &[
    "web; rm -rf /tmp/x",
    "$(id)",
    "`id`",
    "line\nbreak",
    "127.0.0.1:18082/",
    "evil@127.0.0.1",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "\u{202e}txt.exe",
    "quote\"back\\slash",
];

/// The chaos exporter's `/metrics` at wall second `s`.
fn exposition(churn: u32, s: u64) -> String {
    let mut out = String::from("# TYPE chaos_churn gauge\n");
    let epoch = s / 10;
    for k in 0..churn {
        out.push_str(&format!(
            "chaos_churn{{series=\"e{epoch}-{k}\"}} {}\n",
            10 + k % 3
        ));
    }
    // Above its limit for 6 s of every 20: an incident whose action takes
    // 12 s (`sleep 12`): a SIGKILL of heal lands mid-action more often
    // than not.
    out.push_str("# TYPE chaos_slow gauge\n");
    // A new series each period: flap damping (per rule and series) never
    // holds it back, and it churns too.
    out.push_str(&format!(
        "chaos_slow{{period=\"{}\"}} {}\n",
        s / 20,
        if s % 20 < 6 { 5 } else { 0 }
    ));
    out.push_str("# TYPE chaos_hostile gauge\n");
    let long = "x".repeat(10_000);
    for v in HOSTILE.iter().copied().chain([long.as_str()]) {
        let escaped = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        out.push_str(&format!("chaos_hostile{{victim=\"{escaped}\"}} 5\n"));
    }
    out
}

fn start_exporter(churn: u32) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the chaos exporter")?;
    let addr = listener
        .local_addr()
        .context("binding the chaos exporter")?;
    let t0 = Instant::now();
    let handler = move |req: &Request, _: &Peer<'_>| -> Response {
        if req.path == "/metrics" {
            Response::text(200, exposition(churn, t0.elapsed().as_secs()))
        } else {
            Response::text(404, "not found")
        }
    };
    std::thread::Builder::new()
        .name("chaos-exporter".into())
        .spawn(move || server::serve(listener, Arc::new(handler), 16))
        .context("starting the chaos exporter")?;
    Ok(addr)
}

const CHAOS_RUNBOOK: &str = "signals:
  - name: chaos_churn
    query: chaos_churn
  - name: chaos_hostile
    query: max by (victim) (chaos_hostile)
    detector: { direction: up, limit_above: 1 }
  - name: chaos_slow
    query: max by (period) (chaos_slow)
    detector: { direction: up, limit_above: 1 }
rules:
  # A slow action: heal is often killed while it runs, and the restart
  # must settle it (its process group killed, recorded), never re-run it.
  - name: slow-action
    when: { signal: chaos_slow, direction: up, for: 0s }
    then:
      - action: exec
        argv: [sleep, \"12\"]
        timeout: 20s
    guards: { cooldown: 1s, max_attempts: 10000, window: 1h }
    verify: { wait: 5s }
  # Every hostile value fires at once: each must be refused
  # (invalid_label_value), never passed to the program.
  - name: hostile-label
    when: { signal: chaos_hostile, direction: up, for: 0s }
    then:
      - action: exec
        argv: [heal-lab, restart, --control, \"127.0.0.1:19400\", \"{{label.victim}}\"]
        timeout: 15s
";

/// A Prometheus the script can kill and start again on the same port.
struct Prom {
    bin: PathBuf,
    config: PathBuf,
    tsdb: PathBuf,
    addr: SocketAddr,
    child: Option<ChildGuard>,
}

impl Prom {
    fn start(&mut self) -> Result<()> {
        let child = Command::new(&self.bin)
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.tsdb.display()))
            .arg(format!("--web.listen-address={}", self.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus")?;
        self.child = Some(ChildGuard::new(child));
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(child) = c.child_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// heal watch runs, one after the other, each with its own log file.
struct Heal {
    exe: PathBuf,
    runbooks: PathBuf,
    db: PathBuf,
    prometheus: SocketAddr,
    listen: SocketAddr,
    path: OsString,
    dir: PathBuf,
    runs: u32,
    child: Option<ChildGuard>,
}

impl Heal {
    fn log(&self, run: u32) -> PathBuf {
        self.dir.join(format!("heal-{run}.log"))
    }

    fn start(&mut self) -> Result<()> {
        self.runs += 1;
        let log = std::fs::File::create(self.log(self.runs)).context("creating heal's log")?;
        let child = Command::new(&self.exe)
            .args([
                "watch",
                "--prometheus",
                &format!("http://{}", self.prometheus),
            ])
            .arg("--runbooks")
            .arg(&self.runbooks)
            .args([
                "--interval",
                "1s",
                "--backfill",
                "0s",
                "--query-timeout",
                "800ms",
            ])
            .args(["--execute", "--listen", &self.listen.to_string()])
            .args(["--series-stale", "30s"])
            .arg("--db")
            .arg(&self.db)
            .env("PATH", &self.path)
            .env("HEAL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting heal watch")?;
        self.child = Some(ChildGuard::new(child));
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(child) = c.child_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop(Duration::from_secs(15));
        }
    }
}

/// What the fault script did.
#[derive(Debug, Default)]
struct Faults {
    heal_kills: u32,
    prometheus_kills: u32,
    service_faults: BTreeMap<&'static str, u32>,
}

/// Runs the bench and prints its figures.
///
/// # Errors
///
/// Something could not be started (Prometheus, the lab, heal); a figure
/// that must be 0 is not (after printing them all).
pub fn run(cfg: ChaosConfig) -> Result<()> {
    labrun::check_prometheus(&cfg.prometheus_bin)?;
    let lab_bin = labrun::find_lab_bin(cfg.path_env.as_ref())?;
    let dir = TempDir::new("heal-bench-chaos")?;
    let services: Vec<LabService> = ["web", "api", "batch"]
        .iter()
        .map(|n| LabService {
            name: (*n).into(),
            args: Vec::new(),
        })
        .collect();
    let lab = Lab::start(&lab_bin, dir.path(), &services)?;
    let _load = orchestrate::start_load(
        &lab_bin,
        &lab.services().iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        30,
        cfg.duration + Duration::from_secs(120),
    )
    .ok();
    let exporter = start_exporter(cfg.churn)?;

    // Prometheus: the lab's services and the chaos exporter, every second.
    let targets = lab
        .services()
        .iter()
        .map(|(n, p)| lab::promconfig::ScrapeTarget::parse(&format!("{n}=127.0.0.1:{p}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut yml = lab::promconfig::render(&targets, "1s", "1s")?;
    yml.push_str(&format!(
        "  - job_name: chaos\n    static_configs:\n      - targets: [\"{exporter}\"]\n"
    ));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, yml).context("writing prometheus.yml")?;
    let mut prom = Prom {
        bin: cfg.prometheus_bin.clone(),
        config,
        tsdb: dir.path().join("tsdb"),
        addr: orchestrate::loopback(orchestrate::free_port()?),
        child: None,
    };
    prom.start()?;
    let ready =
        orchestrate::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            client::get(prom.addr, "/-/ready", Duration::from_secs(1))
                .is_ok_and(|r| r.status == 200)
        });
    if ready.is_none() {
        return Err(Error::msg("prometheus did not become ready"));
    }

    let control = lab.control().to_string();
    let runbooks = labrun::write_runbook(dir.path(), &labrun::lab_runbook(lab.control()))?;
    std::fs::write(
        runbooks.join("chaos.yaml"),
        CHAOS_RUNBOOK.replace(labrun::RUNBOOK_CONTROL, &control),
    )
    .context("writing the chaos runbook")?;
    let lab_dir = lab_bin.parent().unwrap_or(Path::new(".")).to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(lab_dir).chain(
            cfg.path_env
                .as_ref()
                .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .context("building PATH for heal watch")?;
    let db = dir.path().join("chaos.db");
    let mut heal = Heal {
        exe: std::env::current_exe().context("finding the heal executable")?,
        runbooks,
        db: db.clone(),
        prometheus: prom.addr,
        listen: orchestrate::loopback(orchestrate::free_port()?),
        path,
        dir: dir.path().to_path_buf(),
        runs: 0,
        child: None,
    };
    heal.start()?;
    println!(
        "heal bench chaos: {:?}, seed {}, lab services web/api/batch, {} churning series, {} hostile label values",
        cfg.duration,
        cfg.seed,
        cfg.churn,
        HOSTILE.len() + 1
    );

    let mut rng = SplitMix64::new(cfg.seed);
    let mut faults = Faults::default();
    let peak_rss = AtomicU64::new(0);
    let mut left_beside_new = 0usize;
    let t0 = Instant::now();
    let mut next_fault = t0 + Duration::from_secs_f64(rng.uniform(3.0, 9.0));
    // (when, what) to bring back: heal or Prometheus.
    let mut pending: Vec<(Instant, &'static str)> = Vec::new();
    while t0.elapsed() < cfg.duration {
        std::thread::sleep(Duration::from_millis(250));
        if heal.child.as_mut().is_some_and(ChildGuard::exited) {
            let log = std::fs::read_to_string(heal.log(heal.runs)).unwrap_or_default();
            return Err(Error::msg(format!(
                "heal watch exited on its own (run {}); its log:\n{log}",
                heal.runs
            )));
        }
        if let Some(pid) = heal.pid() {
            let rss = lab::procfs::resident_memory_bytes_of(pid).unwrap_or(0);
            peak_rss.fetch_max(rss, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            if pending[i].0 <= now {
                let (_, what) = pending.swap_remove(i);
                match what {
                    "heal" => {
                        left_beside_new += open_beside_new(&db);
                        heal.start()?;
                    }
                    _ => prom.start()?,
                }
            } else {
                i += 1;
            }
        }
        if now < next_fault {
            continue;
        }
        next_fault = now + Duration::from_secs_f64(rng.uniform(3.0, 9.0));
        let pick = rng.unit();
        if pick < 0.3 {
            if heal.child.is_some() {
                heal.sigkill();
                faults.heal_kills += 1;
                pending.push((now + Duration::from_secs_f64(rng.uniform(0.5, 3.0)), "heal"));
            }
        } else if pick < 0.5 {
            if prom.child.is_some() {
                prom.kill();
                faults.prometheus_kills += 1;
                pending.push((now + Duration::from_secs_f64(rng.uniform(1.0, 5.0)), "prom"));
            }
        } else {
            let (name, _) = &lab.services()[(rng.next_u64() % 3) as usize];
            let kind = ["crash", "hang", "errors?rate=0.6", "stop"][(rng.next_u64() % 4) as usize];
            let done = if kind == "stop" {
                lab::manager::api::call(lab.control(), "stop", Some(name)).is_ok()
            } else {
                lab.inject(name, kind).is_ok()
            };
            if done {
                let short: &'static str = match kind {
                    "crash" => "crash",
                    "hang" => "hang",
                    "stop" => "stop",
                    _ => "errors",
                };
                *faults.service_faults.entry(short).or_default() += 1;
            }
        }
    }
    // Bring back what is down, give heal a few evaluations, stop it.
    for (_, what) in pending.drain(..) {
        match what {
            "heal" => {
                left_beside_new += open_beside_new(&db);
                heal.start()?;
            }
            _ => prom.start()?,
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    heal.stop();
    // The next start's reconciliation, as heal watch does it.
    left_beside_new += open_beside_new(&db);
    let reopened = crate::tuning::open_store(&db)?;
    drop(reopened);
    let lab_status = lab.status_json().unwrap_or_default();
    prom.kill();
    lab.shutdown();

    let figures = figures(&db, &heal, heal.runs, &lab_status)?;
    if figures.opened == 0 {
        // Nothing happened: say why, from heal's first log.
        let first = std::fs::read_to_string(heal.log(1)).unwrap_or_default();
        let head: Vec<&str> = first.lines().take(20).collect();
        println!(
            "heal opened no incident; its first log begins:\n{}",
            head.join("\n")
        );
    }
    let lost = figures.lost + left_beside_new;
    println!(
        "faults: heal SIGKILLed {} times ({} runs), Prometheus SIGKILLed {} times, lab service faults {:?}",
        faults.heal_kills, heal.runs, faults.prometheus_kills, faults.service_faults
    );
    println!(
        "incidents opened {}, resolved {}, closed at a restart {}",
        figures.opened, figures.resolved, figures.closed_at_restart
    );
    println!(
        "actions begun {}, finished {}, interrupted {} (settled {}, no process recorded {}), abandoned {}; suppressed invalid_label_value {}",
        figures.begun,
        figures.finished,
        figures.interrupted,
        figures.settled,
        figures.unrecorded,
        figures.abandoned,
        figures.hostile_refused
    );
    println!(
        "duplicate actions {} (lab restarts {} vs restart actions begun {}; hostile values executed {})",
        figures.duplicates, figures.lab_restarts, figures.restarts_begun, figures.hostile_executed
    );
    println!(
        "lost incidents {lost} (logged but not stored {}, left open beside a new one {left_beside_new})",
        figures.lost
    );
    println!(
        "peak RSS {:.1} MB; panics {}",
        peak_rss.load(Ordering::Relaxed) as f64 / 1e6,
        figures.panics
    );
    if figures.duplicates > 0 || lost > 0 || figures.panics > 0 {
        return Err(Error::msg(format!(
            "chaos: duplicates {}, lost incidents {lost}, panics {}: all must be 0",
            figures.duplicates, figures.panics
        )));
    }
    Ok(())
}

/// Incidents the store holds open beside a newer open one of the same
/// series and rule (read while heal is down, before its next start).
fn open_beside_new(db: &Path) -> usize {
    let Ok(store) = Store::open_read_only(db) else {
        return 0;
    };
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in all_incidents(&store) {
        if s.status == IncidentStatus::Open {
            *per.entry((s.rule, s.selector)).or_default() += 1;
        }
    }
    per.values().map(|n| n.saturating_sub(1)).sum()
}

fn all_incidents(store: &Store) -> Vec<store::IncidentSummary> {
    let mut out = Vec::new();
    let mut filter = IncidentFilter {
        limit: 500,
        ..IncidentFilter::default()
    };
    while let Ok(page) = store.list(&filter) {
        out.extend(page.incidents);
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => break,
        }
    }
    out
}

#[derive(Debug, Default)]
struct Figures {
    opened: usize,
    resolved: usize,
    closed_at_restart: usize,
    begun: usize,
    finished: usize,
    interrupted: usize,
    settled: usize,
    abandoned: usize,
    /// Interrupted before a child's pid was recorded (not an exec, or
    /// killed between the begin and the spawn).
    unrecorded: usize,
    hostile_refused: usize,
    hostile_executed: usize,
    lab_restarts: u64,
    restarts_begun: u64,
    duplicates: u64,
    lost: usize,
    panics: usize,
}

fn figures(db: &Path, heal: &Heal, runs: u32, lab_status: &str) -> Result<Figures> {
    let store = Store::open_read_only(db)?;
    let mut f = Figures::default();
    let incidents = all_incidents(&store);
    let stored: BTreeSet<String> = incidents.iter().map(|s| s.id.clone()).collect();
    let mut begun_by_service: BTreeMap<String, u64> = BTreeMap::new();
    f.opened = incidents.len();
    for s in &incidents {
        match s.status {
            IncidentStatus::Resolved => f.resolved += 1,
            IncidentStatus::Closed => f.closed_at_restart += 1,
            IncidentStatus::Open => {}
        }
        let Some(record) = store.incident(&s.id)? else {
            continue;
        };
        f.hostile_refused += record
            .incident
            .actions
            .iter()
            .filter(|a| a.decision.label() == "invalid_label_value")
            .count();
        for e in &record.executions {
            match e.state {
                ExecutionState::Abandoned => {
                    f.abandoned += 1;
                    continue;
                }
                ExecutionState::Finished => f.finished += 1,
                ExecutionState::Interrupted => {
                    f.interrupted += 1;
                    f.settled += usize::from(e.settled.is_some());
                    f.unrecorded += usize::from(e.process.is_none());
                }
                ExecutionState::Started => {}
            }
            f.begun += 1;
            // A value outside the safe pattern must never reach a program
            // (`127.0.0.1:18082/` and `evil@127.0.0.1` are safe as one
            // argv element; the others are not).
            let victim = record.incident.series.get("victim");
            if s.rule == "hostile-label"
                && victim.is_some_and(|v| !remediate::is_safe_label_value(v))
            {
                f.hostile_executed += 1;
            }
            if let Some(service) = e.summary.strip_prefix("exec heal-lab restart --control ") {
                let service = service.rsplit(' ').next().unwrap_or_default().to_owned();
                *begun_by_service.entry(service).or_default() += 1;
            }
        }
    }
    // Restarts the lab performed per service, against those heal began.
    let status: serde_json::Value = serde_json::from_str(lab_status).unwrap_or_default();
    for s in status["services"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        let restarts = s["restarts"].as_u64().unwrap_or(0);
        let begun = begun_by_service.get(name).copied().unwrap_or(0);
        f.lab_restarts += restarts;
        f.restarts_begun += begun;
        f.duplicates += restarts.saturating_sub(begun);
    }
    f.duplicates += f.hostile_executed as u64;
    // Incidents each run logged as opened must all be in the store.
    for run in 1..=runs {
        let text = std::fs::read_to_string(heal.log(run)).unwrap_or_default();
        for line in text.lines() {
            if line.contains("panicked") {
                f.panics += 1;
            }
            if line.contains("incident opened") {
                if let Some(id) = labrun::log_field(line, "incident") {
                    if !stored.contains(&id) {
                        f.lost += 1;
                    }
                }
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_renames_its_series_every_ten_seconds_and_escapes_hostile_values() {
        let a = exposition(2, 9);
        let b = exposition(2, 10);
        assert!(a.contains("chaos_churn{series=\"e0-1\"} 11\n"), "{a}");
        assert!(exposition(1, 45).contains("chaos_slow{period=\"2\"} 5\n"));
        assert!(exposition(1, 46).contains("chaos_slow{period=\"2\"} 0\n"));
        assert!(b.contains("chaos_churn{series=\"e1-1\"} 11\n"), "{b}");
        assert!(a.contains("chaos_hostile{victim=\"line\\nbreak\"} 5\n"));
        assert!(a.contains("chaos_hostile{victim=\"quote\\\"back\\\\slash\"} 5\n"));
        // One sample per line: no raw newline inside a value.
        assert_eq!(
            a.lines().filter(|l| l.starts_with("chaos_hostile")).count(),
            HOSTILE.len() + 1
        );
    }
}
