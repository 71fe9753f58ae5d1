//! `heal demo`: heal healing a real lab, in one command.
//!
//! It starts the lab (`heal-lab up`, two services under load), a real
//! Prometheus scraping them every second, and `heal watch --execute` (this
//! very executable, as a child process: the demo then watches heal from the
//! outside exactly as an operator would, through its log and `/metrics`)
//! on the lab runbook; lets the lab build history; breaks one service; and
//! prints the incident heal opened, what it did, how it verified it, and the
//! time from the fault to the service answering `/` with 200 again. Then it
//! stops everything and removes its temporary directory.
//!
//! The pieces shared with `heal bench lab` (finding the executables, running
//! `heal watch`, reading its log) are in `labrun`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::orchestrate::{self, Lab, LabService, Prometheus, TempDir};

use crate::labrun::{
    check_prometheus, duration_arg, find_lab_bin, incident_for, interrupt_flag, lab_runbook, sleep,
    warm_up, write_runbook, FaultKind, HealWatch, POLL, POLL_TIMEOUT,
};
use crate::{Error, Result};

/// What to break and how long to wait (`heal demo`'s arguments).
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The fault to inject into the `web` service.
    pub fault: FaultKind,
    /// How long the lab builds history before heal starts. `auto`: 20s for
    /// crash and errors (caught by the runbook's hard limits, which need no
    /// history), 120s for hang and leak (caught by the statistical
    /// detectors, which calibrate on about 100 one-second samples).
    pub warmup: String,
    /// The Prometheus server executable.
    pub prometheus_bin: PathBuf,
    /// Also print heal's log from the fault on.
    pub verbose: bool,
    /// Give up on recovery after this long.
    pub timeout: String,
    /// heal's own `PATH` (read by the binary), after `heal-lab`'s
    /// directory on the `PATH` of the `heal watch` it starts.
    pub path_env: Option<std::ffi::OsString>,
}

/// Runs the demo, printing what heal did.
///
/// # Errors
///
/// A missing program (`Unavailable`), a lab that did not come up, a service
/// that did not recover in time, an interrupt.
pub fn run(args: DemoConfig) -> Result<()> {
    let timeout = duration_arg("timeout", &args.timeout)?;
    let warmup = match args.warmup.as_str() {
        "auto" if args.fault.caught_by_hard_limit() => Duration::from_secs(20),
        "auto" => Duration::from_secs(120),
        v => duration_arg("warmup", v)?,
    };
    let lab_bin = find_lab_bin(args.path_env.as_ref())?;
    check_prometheus(&args.prometheus_bin)?;
    let stop = interrupt_flag();
    let dir = TempDir::new("heal-demo")?;
    let result = demo(&args, warmup, timeout, &lab_bin, dir.path(), &stop);
    // Every child is stopped by now (their guards dropped inside `demo`).
    drop(dir);
    eprintln!("heal demo: everything stopped, temporary files removed");
    result
}

fn demo(
    args: &DemoConfig,
    warmup: Duration,
    timeout: Duration,
    lab_bin: &Path,
    dir: &Path,
    stop: &AtomicBool,
) -> Result<()> {
    let scrape = Duration::from_secs(1);
    let services: Vec<LabService> = ["web", "api"]
        .iter()
        .map(|n| LabService {
            name: (*n).into(),
            args: vec!["--mem-limit-mb".into(), "256".into()],
        })
        .collect();
    let lab = Lab::start(lab_bin, dir, &services)?;
    println!(
        "lab: services web and api on {} (supervisor's control API on {})",
        lab.services()
            .iter()
            .map(|(n, p)| format!("{n}=127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", "),
        lab.control()
    );
    let prometheus = Prometheus::start(&args.prometheus_bin, dir, lab.services(), "1s")?;
    println!(
        "prometheus: {} scraping both every second",
        prometheus.url()
    );
    let ports: Vec<u16> = lab.services().iter().map(|&(_, p)| p).collect();
    let _load = orchestrate::start_load(lab_bin, &ports, 20, Duration::from_secs(3600))?;
    println!("load: 20 requests/s over both");
    if args.fault.caught_by_hard_limit() {
        println!(
            "warm-up {}s: a {} is caught by a hard limit of the runbook, which needs no history",
            warmup.as_secs(),
            args.fault.name()
        );
    }
    warm_up(warmup, scrape, stop)?;

    let runbooks = write_runbook(dir, &lab_runbook(lab.control()))?;
    let path = args.path_env.as_ref();
    let heal = HealWatch::start(&prometheus.url(), &runbooks, lab_bin, path)?;
    println!(
        "heal: watching {} with lab.yaml (evaluations every second, actions performed)",
        prometheus.url()
    );
    // A few live evaluations after the back-fill before the fault.
    sleep(Duration::from_secs(3), stop)?;

    let from = heal.log_len();
    let fault_at = Instant::now();
    let fault_wall = stdx::Clock::now_ms(&stdx::SystemClock);
    lab.inject("web", args.fault.spec())?;
    println!("fault: {} injected into web", args.fault.name());
    let mut took = None;
    while took.is_none() && fault_at.elapsed() < timeout {
        if stop.load(Ordering::SeqCst) {
            return Err(Error::msg("interrupted"));
        }
        took = lab.time_to_serving(
            "web",
            fault_at,
            POLL,
            POLL_TIMEOUT,
            fault_at.elapsed() + POLL,
        );
    }
    let Some(took) = took else {
        return Err(Error::msg(format!(
            "web did not serve again within {timeout:?} of the fault; heal's log:\n{}",
            heal.log_since(from).join("\n")
        )));
    };
    // The verification comes after the rule's wait (5 to 8 s).
    let _ = orchestrate::wait_until(Duration::from_secs(20), POLL, || {
        stop.load(Ordering::SeqCst)
            || incident_for(&heal.log_since(from), "web-0").is_some_and(|r| r.verified)
    });
    match incident_for(&heal.log_since(from), "web-0") {
        Some(r) => {
            let after = r
                .opened_at
                .map(|t| {
                    format!(
                        ", {:.1} s after the fault",
                        (t - fault_wall) as f64 / 1000.0
                    )
                })
                .unwrap_or_default();
            println!(
                "incident {}: rule {} ({}) on {}{after}",
                r.id, r.rule, r.severity, r.series
            );
            for step in &r.steps {
                println!("  {step}");
            }
            if !r.verified {
                println!("  (no verification logged within 20 s)");
            }
        }
        None => println!("incident: none found in heal's log (did something else restart web?)"),
    }
    println!(
        "recovered: web answered / with 200 again {:.1} s after the {} (time to recovery)",
        took.as_secs_f64(),
        args.fault.name()
    );
    if args.verbose {
        println!("heal's log since the fault:");
        for l in heal.log_since(from) {
            println!("  {l}");
        }
    }
    eprintln!("heal demo: shutting down heal, load, Prometheus and the lab");
    heal.stop();
    prometheus.stop();
    lab.shutdown();
    Ok(())
}
