//! `heal bench lab`: time to recovery on the real lab, heal against monit.
//!
//! One lab run: five services (`clean`, and one per fault kind: `crash`,
//! `hang`, `errors`, `leak`) under steady load, a real Prometheus scraping
//! them every second. In order:
//!
//! 1. warm-up (the detectors calibrate on about 100 samples of history);
//! 2. `heal watch --execute` on the lab runbook, then a clean run: every
//!    action it fires is a false alarm (expected: none), and its CPU time
//!    (`/proc/PID/stat`, utime + stime) per evaluated series, with the
//!    `clean` service exporting `--series` extra gauges that a signal of the
//!    bench's runbook watches, so the figure is taken at 1,000+ series;
//! 3. heal's round: each fault injected `--injections` times into its
//!    service, one at a time, the time from the fault to the service
//!    answering `/` with 200 from a fresh process (polled every 100 ms,
//!    500 ms timeout each);
//! 4. heal stopped; monit's round: the same faults in the same lab, handled
//!    by `monit -I` with its usual `if failed port ... then restart` check
//!    and a one-second cycle (its shortest). heal and monit never run at
//!    the same time.
//!
//! Every fault is injected at a uniformly random phase within the
//! wall-clock second (seeded, `--seed`; heal's and monit's rounds get the
//! same sequence of phases). Both heal's evaluation slots and Prometheus'
//! scrapes sit on the second, and monit's cycle on its own start, so the
//! time to recovery depends on that phase: drawing it uniformly makes the
//! median cover every phase instead of whatever phase the loop drifted to.
//!
//! This prints figures; nothing here is asserted (performance is measured,
//! never asserted in timed tests).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Context;
use lab::orchestrate::{self, Lab, LabService, Monit, Prometheus, TempDir};
use lab::rng::SplitMix64;

use crate::labrun::{
    check_prometheus, duration_arg, find_lab_bin, heal_quiet, interrupt_flag, lab_runbook, sleep,
    warm_up, write_runbook, FaultKind, HealWatch, Progress, POLL, POLL_TIMEOUT,
};
use crate::{Error, Result};

/// Requests per second over all five services (10 each), as in the
/// end-to-end test.
const LOAD_RPS: u32 = 50;

/// What to inject and measure (`heal bench lab`'s arguments).
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Injections of each fault kind, for heal and again for monit.
    pub injections: u32,
    /// Length of the clean run (no fault) during which heal's actions are
    /// counted and its CPU time measured.
    pub clean_minutes: f64,
    /// Extra gauge series the `clean` service exports and heal watches, so
    /// that the CPU figure is measured at this many series or more.
    pub series: u32,
    /// History the lab builds before heal starts.
    pub warmup: String,
    /// At least this long between two faults on the same service (the
    /// runbook's cooldown is 10 s and its verification waits up to 8 s).
    pub spacing: String,
    /// A fault not recovered from within this long counts as not recovered.
    pub limit: String,
    /// A runbook to use instead of the lab runbook built into heal
    /// (`lab/runbooks/lab.yaml`); its `127.0.0.1:19400` is replaced by the
    /// lab's control address.
    pub runbook: Option<PathBuf>,
    /// The Prometheus server executable.
    pub prometheus_bin: PathBuf,
    /// The monit executable; `monit` on PATH if not given.
    pub monit_bin: Option<PathBuf>,
    /// Write heal's whole log (`HEAL_LOG=info`) to this file after its round.
    pub heal_log: Option<PathBuf>,
    /// Leave out monit's round.
    pub no_monit: bool,
    /// Seed of the injection phases (each fault is injected at a uniformly
    /// random offset within the wall-clock second); the same seed gives
    /// heal and monit the same phases, run after run.
    pub seed: u64,
    /// heal's own `PATH` (read by the binary), after `heal-lab`'s
    /// directory on the `PATH` of the `heal watch` it starts.
    pub path_env: Option<std::ffi::OsString>,
}

/// One injection's outcome.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Fault to serving again; `None` if not within the limit.
    pub(crate) took: Option<Duration>,
    /// Who or what ended the faulty process, as far as can be told.
    pub(crate) how: String,
}

/// A round's outcomes per fault kind, in [`FaultKind::ALL`] order.
type Round = Vec<Vec<Outcome>>;

/// What the clean run measured.
#[derive(Debug)]
struct CleanRun {
    minutes: f64,
    actions: f64,
    incidents: f64,
    anomalies: f64,
    cpu_seconds: f64,
    evaluations: f64,
    samples: f64,
    series: f64,
    signals: usize,
}

/// Runs the bench and prints its report.
///
/// # Errors
///
/// A missing program (`Unavailable`), a lab that did not come up, an
/// interrupt.
pub fn run(args: LabConfig) -> Result<()> {
    let warmup = duration_arg("warmup", &args.warmup)?;
    let spacing = duration_arg("spacing", &args.spacing)?;
    let limit = duration_arg("limit", &args.limit)?;
    if args.injections == 0 {
        return Err(Error::Usage("--injections must be at least 1".into()));
    }
    if !(args.clean_minutes.is_finite() && args.clean_minutes >= 0.0) {
        return Err(Error::Usage("--clean-minutes must be 0 or more".into()));
    }
    let lab_bin = find_lab_bin(args.path_env.as_ref())?;
    check_prometheus(&args.prometheus_bin)?;
    let monit_bin = if args.no_monit {
        None
    } else {
        let found = match &args.monit_bin {
            Some(p) => p.is_file().then(|| p.clone()),
            None => orchestrate::find_executable("monit", None, args.path_env.as_deref()),
        };
        Some(found.ok_or_else(|| {
            Error::Unavailable(
                "monit not found: install it with `apt-get install -y monit` (the bench runs its own \
                 instance, `monit -I`, not the system service), or pass --no-monit"
                    .into(),
            )
        })?)
    };
    let stop = interrupt_flag();
    let dir = TempDir::new("heal-bench-lab")?;
    let result = bench(
        &args,
        warmup,
        spacing,
        limit,
        &lab_bin,
        monit_bin.as_deref(),
        dir.path(),
        &stop,
    );
    drop(dir);
    result
}

#[allow(clippy::too_many_arguments)]
fn bench(
    args: &LabConfig,
    warmup: Duration,
    spacing: Duration,
    limit: Duration,
    lab_bin: &Path,
    monit_bin: Option<&Path>,
    dir: &Path,
    stop: &AtomicBool,
) -> Result<()> {
    let mut services = vec![LabService {
        name: "clean".into(),
        args: vec![
            "--mem-limit-mb".into(),
            "256".into(),
            "--extra-series".into(),
            args.series.to_string(),
        ],
    }];
    for kind in FaultKind::ALL {
        services.push(LabService {
            name: kind.name().into(),
            args: vec!["--mem-limit-mb".into(), "256".into()],
        });
    }
    let lab = Lab::start(lab_bin, dir, &services)?;
    let prometheus = Prometheus::start(&args.prometheus_bin, dir, lab.services(), "1s")?;
    let ports: Vec<u16> = lab.services().iter().map(|&(_, p)| p).collect();
    let start_load =
        || orchestrate::start_load(lab_bin, &ports, LOAD_RPS, Duration::from_secs(3600));
    let mut load = start_load()?;
    eprintln!(
        "bench lab: services {} under {LOAD_RPS} requests/s; Prometheus {} scraping every second; \
         {} extra series on clean",
        lab.services()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        prometheus.url(),
        args.series
    );
    warm_up(warmup, Duration::from_secs(1), stop)?;

    // heal, on the lab runbook with three changes for a benchmark: a signal
    // over the extra series (no rule: it is there to be evaluated), and
    // max_attempts raised from 5 to 1000 per 10 minutes, since the bench
    // breaks each service `--injections` times within a few minutes on
    // purpose and a crash-loop guard would (rightly) stop heal otherwise.
    let book = match &args.runbook {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .replace("127.0.0.1:19400", &lab.control().to_string()),
        None => lab_runbook(lab.control()),
    };
    let mut book = book
        .replace("max_attempts: 5", "max_attempts: 1000")
        .replace(
            "\nrules:\n",
            "\n  # heal bench lab: many series, to measure heal's cost per series.\n  \
             - name: lab_extra\n    query: lab_extra{job=\"services\"}\n    detector:\n      direction: both\n\nrules:\n",
        );
    // Likewise flap damping: ten injections per service within minutes
    // are flapping by design here.
    if !book.contains("\nguardrails:") {
        book.push_str("\nguardrails:\n  flap_max_opens: 1000\n");
    }
    let runbooks = write_runbook(dir, &book)?;
    let path = args.path_env.as_ref();
    let heal = HealWatch::start(&prometheus.url(), &runbooks, lab_bin, path)?;
    sleep(Duration::from_secs(5), stop)?;
    let clean = clean_run(&heal, args.clean_minutes, stop)?;
    if load.exited() {
        load = start_load()?;
    }

    eprintln!("heal's round: {} injections of each fault", args.injections);
    let quiet = |name: &str| heal_quiet(&heal, &format!("{name}-0"));
    let heal_round = round(
        &lab,
        args.injections,
        spacing,
        limit,
        stop,
        &quiet,
        &mut || {
            let m = heal.metrics();
            let by_rule = |rule: &str| {
                orchestrate::metric_sum(&m, &format!("heal_incidents_total{{rule=\"{rule}\""))
            };
            RULES.map(by_rule)
        },
        &mut Phases::new(args.seed),
    )?;
    let heal_log_tail = heal.log_since(heal.log_len().saturating_sub(40));
    if let Some(path) = &args.heal_log {
        std::fs::write(path, heal.log_since(0).join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !heal.stop() {
        eprintln!("heal did not stop on SIGTERM within 35 s; killed");
    }

    let monit_round = match monit_bin {
        Some(monit_bin) => {
            // Every service up and fault-free before monit takes over.
            for (name, _) in lab.services() {
                lab.start_service(name)?;
            }
            if load.exited() {
                load = start_load()?;
            }
            sleep(Duration::from_secs(3), stop)?;
            let monit = Monit::start(monit_bin, lab_bin, &lab, dir)?;
            // monit's first cycle records every process as it finds it.
            sleep(Duration::from_secs(3), stop)?;
            eprintln!(
                "monit's round: {} injections of each fault",
                args.injections
            );
            let r = round(
                &lab,
                args.injections,
                spacing,
                limit,
                stop,
                &|_| true,
                &mut || [0.0; RULES.len()],
                &mut Phases::new(args.seed),
            );
            let log = monit.log();
            monit.stop();
            match r {
                Ok(r) => Some((r, log)),
                Err(e) => return Err(e.context(format!("monit's round; monit's log:\n{log}"))),
            }
        }
        None => None,
    };
    drop(load);
    let figures = report(
        args,
        &clean,
        &heal_round,
        monit_round.as_ref().map(|(r, _)| r),
    );
    println!("{figures}");
    if heal_round.iter().flatten().any(|o| o.took.is_none()) {
        eprintln!("heal's log, last lines:\n{}", heal_log_tail.join("\n"));
    }
    prometheus.stop();
    lab.shutdown();
    Ok(())
}

/// Watches heal on the clean lab for `minutes`: actions, incidents, CPU time.
fn clean_run(heal: &HealWatch, minutes: f64, stop: &AtomicBool) -> Result<CleanRun> {
    let ticks = lab::procfs::clock_ticks_per_second() as f64;
    let pid = heal.pid();
    let cpu = || lab::procfs::cpu_ticks_of(pid).map_or(0.0, |t| t as f64 / ticks);
    let m0 = heal.metrics();
    let c0 = cpu();
    let t0 = Instant::now();
    let length = Duration::from_secs_f64(minutes * 60.0);
    let mut progress = Progress::new(Duration::from_secs(60));
    while t0.elapsed() < length {
        let m = heal.metrics();
        progress.show(&format!(
            "clean run: {:.1}/{minutes} min, {} actions, {} series watched",
            t0.elapsed().as_secs_f64() / 60.0,
            orchestrate::metric_sum(&m, "heal_actions_total"),
            orchestrate::metric_sum(&m, "heal_series"),
        ));
        sleep(
            Duration::from_secs(1).min(length.saturating_sub(t0.elapsed())),
            stop,
        )?;
    }
    let c1 = cpu();
    let m1 = heal.metrics();
    progress.done(&format!("clean run: {minutes} min done"));
    let delta =
        |name: &str| orchestrate::metric_sum(&m1, name) - orchestrate::metric_sum(&m0, name);
    let signals = m1
        .lines()
        .filter(|l| l.starts_with("heal_series{"))
        .count()
        .max(1);
    Ok(CleanRun {
        minutes,
        actions: delta("heal_actions_total"),
        incidents: delta("heal_incidents_total"),
        anomalies: delta("heal_anomalies_total"),
        cpu_seconds: c1 - c0,
        evaluations: delta("heal_evaluations_total"),
        samples: delta("heal_samples_total"),
        series: orchestrate::metric_sum(&m1, "heal_series"),
        signals,
    })
}

/// The lab runbook's rules whose incidents `round` counts, to tell which
/// one handled a fault.
const RULES: [&str; 5] = [
    "service-down",
    "service-unresponsive",
    "service-hung",
    "error-ratio-high",
    "memory-leak",
];

/// Seeded injection phases: uniform offsets within the wall-clock second,
/// drawn from the lab's SplitMix64 stream.
pub(crate) struct Phases(SplitMix64);

impl Phases {
    pub(crate) fn new(seed: u64) -> Self {
        Phases(SplitMix64::new(seed))
    }

    /// The next uniform draw in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.0.unit()
    }

    /// How long to wait so that the injection lands at the next draw's
    /// phase: to the start of the next wall-clock second, plus the draw.
    pub(crate) fn until_next(&mut self) -> Duration {
        let sub_ms = stdx::Clock::now_ms(&stdx::SystemClock).rem_euclid(1000) as u32;
        Self::wait(sub_ms, self.next_unit())
    }

    /// The wait from `sub_ms` into a second to `phase` (in [0, 1)) of the
    /// next one.
    fn wait(sub_ms: u32, phase: f64) -> Duration {
        Duration::from_millis(u64::from(1000 - sub_ms.min(999))) + Duration::from_secs_f64(phase)
    }
}

/// Injects each fault kind `n` times into its own service, one fault at a
/// time, at least `spacing` apart on one service and only once `ready`
/// says so (at most two minutes); `counters` reads heal's incident counters
/// by rule (zeros for monit) before and after each fault; `phases` sets
/// where in the second each fault lands.
#[allow(clippy::too_many_arguments)]
fn round(
    lab: &Lab,
    n: u32,
    spacing: Duration,
    limit: Duration,
    stop: &AtomicBool,
    ready: &dyn Fn(&str) -> bool,
    counters: &mut dyn FnMut() -> [f64; RULES.len()],
    phases: &mut Phases,
) -> Result<Round> {
    let mut out: Round = vec![Vec::new(); FaultKind::ALL.len()];
    let mut last: Vec<Option<Instant>> = vec![None; FaultKind::ALL.len()];
    for i in 0..n {
        for (k, kind) in FaultKind::ALL.iter().enumerate() {
            let name = kind.name();
            if let Some(t) = last[k] {
                sleep(spacing.saturating_sub(t.elapsed()), stop)?;
            }
            let waited = Instant::now();
            while !ready(name) && waited.elapsed() < Duration::from_secs(120) {
                sleep(Duration::from_millis(500), stop)?;
            }
            sleep(phases.until_next(), stop)?;
            last[k] = Some(Instant::now());
            let before = counters();
            let pid_before = service_field(lab, name, "pid");
            let at = Instant::now();
            lab.inject(name, kind.spec())
                .with_context(|| format!("injection {} of {name}", i + 1))?;
            let took = lab.time_to_serving(name, at, POLL, POLL_TIMEOUT, limit);
            if stop.load(Ordering::SeqCst) {
                return Err(Error::msg("interrupted"));
            }
            let after = counters();
            let last_exit = service_field(lab, name, "last_exit");
            let pid_after = service_field(lab, name, "pid");
            let fired: Vec<&str> = RULES
                .iter()
                .zip(before.iter().zip(after))
                .filter(|(_, (b, a))| a > *b)
                .map(|(r, _)| *r)
                .collect();
            let how = if !fired.is_empty() {
                format!("heal: {}", fired.join("+"))
            } else if pid_before == pid_after {
                "not restarted".into()
            } else {
                format!("last exit {last_exit}")
            };
            match took {
                Some(t) => eprintln!(
                    "  {name} #{}: serving again after {:.2} s ({how})",
                    i + 1,
                    t.as_secs_f64()
                ),
                None => {
                    eprintln!(
                        "  {name} #{}: not serving after {limit:?} ({how}); restarting it by hand",
                        i + 1
                    );
                    let _ = lab.inject(name, "clear");
                    let _ = lab::manager::api::call(lab.control(), "restart", Some(name));
                }
            }
            out[k].push(Outcome { took, how });
            sleep(Duration::from_secs(1), stop)?;
        }
    }
    Ok(out)
}

/// A field of service `name` in the lab's `/status`, as text.
fn service_field(lab: &Lab, name: &str, field: &str) -> String {
    lab.status_json()
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| {
            v["services"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name)
                .map(|s| match &s[field] {
                    serde_json::Value::String(t) => t.clone(),
                    other => other.to_string(),
                })
        })
        .unwrap_or_default()
}

/// Nearest-rank quantile of sorted `xs`.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// `n rec median p90 max` of one kind's outcomes.
pub(crate) fn cells(outcomes: &[Outcome]) -> String {
    let mut t: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.took.map(|d| d.as_secs_f64()))
        .collect();
    t.sort_by(f64::total_cmp);
    if t.is_empty() {
        return format!(
            "{:>3} {:>4} {:>7} {:>7} {:>7}",
            outcomes.len(),
            0,
            "-",
            "-",
            "-"
        );
    }
    format!(
        "{:>3} {:>4} {:>7.2} {:>7.2} {:>7.2}",
        outcomes.len(),
        t.len(),
        quantile(&t, 0.5),
        quantile(&t, 0.9),
        t[t.len() - 1]
    )
}

/// How often each `how` occurred.
pub(crate) fn hows(outcomes: &[Outcome]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        match counts.iter_mut().find(|(h, _)| *h == o.how) {
            Some((_, c)) => *c += 1,
            None => counts.push((o.how.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(h, c)| format!("{c}x {h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(args: &LabConfig, clean: &CleanRun, heal: &Round, monit: Option<&Round>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\ntime from fault to serving again (s; GET / polled every 100 ms, 500 ms timeout; \
         {} injections per fault kind)\n",
        args.injections
    );
    let _ = writeln!(
        s,
        "{:<8} | {:^35} | {:^35}",
        "fault", "heal watch --execute", "monit -I (set daemon 1)"
    );
    let head = format!(
        "{:>3} {:>4} {:>7} {:>7} {:>7}",
        "n", "rec", "median", "p90", "max"
    );
    let _ = writeln!(s, "{:<8} | {head:<35} | {head:<35}", "");
    for (k, kind) in FaultKind::ALL.iter().enumerate() {
        let m = monit.map_or_else(|| "(not run)".to_string(), |r| cells(&r[k]));
        let _ = writeln!(s, "{:<8} | {:<35} | {m:<35}", kind.name(), cells(&heal[k]));
    }
    let _ = writeln!(s, "\nwho acted:");
    for (k, kind) in FaultKind::ALL.iter().enumerate() {
        let _ = writeln!(s, "  {:<7} heal:  {}", kind.name(), hows(&heal[k]));
        if let Some(r) = monit {
            let _ = writeln!(s, "  {:<7} monit: {}", "", hows(&r[k]));
        }
    }
    if let Some(r) = monit {
        // monit restarting a live process goes through its stop program,
        // which the lab records as `stopped`; any other last exit means the
        // process died on its own and monit only started it again.
        let _ = writeln!(s, "\nwhat monit saw:");
        for (k, kind) in FaultKind::ALL.iter().enumerate() {
            let seen = r[k].iter().filter(|o| o.how == "last exit stopped").count();
            let died = r[k]
                .iter()
                .filter(|o| o.how.starts_with("last exit") && o.how != "last exit stopped")
                .count();
            let verdict = match kind {
                FaultKind::Crash => {
                    "a dead process: monit starts it again (process check)".to_string()
                }
                _ if seen == 0 && died > 0 => format!(
                    "never saw it: it acted only after the process died on its own ({died}/{})",
                    r[k].len()
                ),
                _ if seen == 0 => "never saw it".to_string(),
                _ => format!(
                    "saw it in {seen}/{} (its HTTP check failed on the live process)",
                    r[k].len()
                ),
            };
            let _ = writeln!(s, "  {:<7} {verdict}", kind.name());
        }
        let _ = writeln!(
            s,
            "  monit checks one GET / per cycle: a leak answers 200 until the memory limit kills the \
             process; an error rate answers 200 sometimes, so a check passes with probability 1 - rate"
        );
    }
    let per_sample_ms = clean.cpu_seconds * 1000.0 / clean.samples.max(1.0);
    let cycles = clean.evaluations / clean.signals as f64;
    let _ = writeln!(
        s,
        "\nclean run ({:.1} min, no fault): {} actions, {} incidents, {} anomalies fired",
        clean.minutes, clean.actions, clean.incidents, clean.anomalies
    );
    let _ = writeln!(
        s,
        "heal's CPU (utime+stime of the heal process): {:.2} s over {:.0} evaluation cycles of {} signals, \
         {:.0} series watched ({:.0} series samples)\n  = {:.2} ms per evaluation cycle = {:.3} ms per \
         evaluation per 1,000 series",
        clean.cpu_seconds,
        cycles,
        clean.signals,
        clean.series,
        clean.samples,
        clean.cpu_seconds * 1000.0 / cycles.max(1.0),
        per_sample_ms * 1000.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_seeded_uniform_offsets_within_the_second() {
        let draw = |seed| {
            let mut p = Phases::new(seed);
            (0..1000).map(|_| p.next_unit()).collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1), "same seed, same phases");
        assert_ne!(a, draw(2));
        assert!(a.iter().all(|u| (0.0..1.0).contains(u)));
        // Every tenth of the second gets its share (1000 draws, 100 expected
        // per bin; 60 is more than six standard deviations below).
        for bin in 0..10 {
            let n = a.iter().filter(|u| (**u * 10.0) as usize == bin).count();
            assert!(n > 60, "bin {bin}: {n}");
        }
        assert_eq!(Phases::wait(250, 0.5), Duration::from_millis(1250));
        assert_eq!(Phases::wait(0, 0.0), Duration::from_millis(1000));
    }

    #[test]
    fn nearest_rank_quantiles() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 5.0);
        assert_eq!(quantile(&xs, 0.9), 9.0);
        assert_eq!(quantile(&[3.0], 0.9), 3.0);
    }
}
