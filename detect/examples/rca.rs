//! Root-cause ranking on an RCA case directory (the layout of
//! `shared/datasets/rca-dev`, see its README): the tuning harness of
//! `detect::diagnose` until `heal diagnose` / `heal bench rca` exist.
//!
//! ```text
//! cargo run --release -p detect --example rca -- CASES_DIR [--onset given|detected]
//!     [--results OUT] [--no-topology] [--grid] [--per-case] [field=value ...]
//! ```
//!
//! - `--onset given` ranks at the case's `fault_start_ms` (as the papers
//!   report); `detected` finds it with `diagnose::diagnose`'s
//!   `OnsetChoice::Detect` over the case's last ten minutes (an incident
//!   is diagnosed while it is young), at least two minutes before the
//!   window's end so that it has samples to score, and prints how far the
//!   onsets found lie from the fault starts.
//! - `--results OUT` writes `OUT/<case>.json` = `{"ranking": [...]}` for
//!   `shared/tools/rca_score.py`.
//! - `--grid` scores every setting of a small grid and reports, besides the
//!   in-sample best per system, the leave-one-system-out figure: the
//!   setting chosen (by Avg@5) on one system, scored on the other.
//! - `field=value` overrides a `DiagnoseConfig` field (`weights.host=0.5`,
//!   `window_secs=180`, `sides="harmful"`, `calibrate=false`); the
//!   environment variable `ONSET="level_samples=8 ..."` overrides
//!   `OnsetConfig` fields.
//!
//! Prints AC@1, AC@3, AC@5 and Avg@5 (BARO's Eq. 6, as `rca_score.py`) per
//! system and fault type, and the ranking time per case (I/O excluded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use detect::diagnose::{
    diagnose, find_onsets, DiagnoseConfig, OnsetChoice, OnsetConfig, Series, Topology,
};

type Samples = Vec<(i64, f64)>;

/// How far back from a case's end `--onset detected` searches: an incident
/// is diagnosed while it is young.
const LOOKBACK_MS: i64 = 10 * 60_000;

struct Case {
    name: String,
    system: String,
    fault: String,
    truth: String,
    fault_start: i64,
    window: (i64, i64),
    /// (service, metric) -> samples.
    metrics: Vec<(String, String, Samples)>,
    slo: Vec<(String, String, Samples)>,
    topology: Option<Topology>,
}

impl Case {
    fn series(&self) -> Vec<Series<'_>> {
        self.metrics
            .iter()
            .map(|(s, m, v)| Series::new(s, m, v))
            .collect()
    }
}

fn fail(msg: String) -> ! {
    eprintln!("rca: {msg}");
    std::process::exit(64);
}

/// Reads a long-form CSV (`timestamp,value,__name__,service`).
fn read_long(path: &Path) -> Vec<(String, String, Samples)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(format!("reading {}: {e}", path.display())));
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == "timestamp,value,__name__,service" => {}
        other => fail(format!(
            "{}:1: header must be timestamp,value,__name__,service, got {:?}",
            path.display(),
            other.map(|x| x.1)
        )),
    }
    let mut map: BTreeMap<(String, String), Samples> = BTreeMap::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 {
            fail(format!(
                "{}:{}: expected 4 fields, got {}",
                path.display(),
                i + 1,
                f.len()
            ));
        }
        let ts: i64 = f[0].parse().unwrap_or_else(|_| {
            fail(format!(
                "{}:{}: timestamp {:?}",
                path.display(),
                i + 1,
                f[0]
            ))
        });
        let v: f64 = f[1]
            .parse()
            .unwrap_or_else(|_| fail(format!("{}:{}: value {:?}", path.display(), i + 1, f[1])));
        map.entry((f[3].to_string(), f[2].to_string()))
            .or_default()
            .push((ts, v));
    }
    map.into_iter()
        .map(|((s, m), mut v)| {
            v.sort_by_key(|p| p.0);
            (s, m, v)
        })
        .collect()
}

/// `YYYY-MM-DD` (UTC) of epoch milliseconds (Howard Hinnant's civil_from_days).
fn date(ms: i64) -> String {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The call graph of `topology/<system>-<date>.csv`, if the directory has
/// one for the case's day (placement edges to node IPs are skipped).
fn read_topology(dir: &Path, system: &str, start: i64) -> Option<Topology> {
    let path = dir
        .join("topology")
        .join(format!("{system}-{}.csv", date(start)));
    let text = std::fs::read_to_string(&path).ok()?;
    let mut t = Topology::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 2 {
            fail(format!(
                "{}:{}: expected Source,Target[,Weight]",
                path.display(),
                i + 1
            ));
        }
        if f[1].starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        t.add_edge(f[0], f[1])
            .unwrap_or_else(|e| fail(format!("{}:{}: {e}", path.display(), i + 1)));
    }
    Some(t)
}

fn load(dir: &Path, topology: bool) -> Vec<Case> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| fail(format!("reading {}: {e}", dir.display())))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").is_file())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let tp = p.join("truth.json");
            let t: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&tp)
                    .unwrap_or_else(|e| fail(format!("reading {}: {e}", tp.display()))),
            )
            .unwrap_or_else(|e| fail(format!("{}: {e}", tp.display())));
            let s = |k: &str| {
                t[k].as_str()
                    .unwrap_or_else(|| fail(format!("{}: field {k} missing", tp.display())))
                    .to_string()
            };
            let i = |k: &str| {
                t[k].as_i64()
                    .unwrap_or_else(|| fail(format!("{}: field {k} missing", tp.display())))
            };
            let system = s("system");
            let start = i("fault_start_ms");
            Case {
                name: p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                fault: s("fault_type"),
                truth: s("root_cause_service"),
                fault_start: start,
                window: (i("window_start_ms"), i("window_end_ms")),
                metrics: read_long(&p.join("metrics.csv")),
                slo: read_long(&p.join("slo.csv")),
                topology: if topology {
                    read_topology(dir, &system, start)
                } else {
                    None
                },
                system,
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnsetMode {
    Given,
    Detected,
}

struct Outcome {
    ranking: Vec<String>,
    onset: i64,
    secs: f64,
}

fn run_case(c: &Case, cfg: &DiagnoseConfig, onset_cfg: &OnsetConfig, mode: OnsetMode) -> Outcome {
    let t0 = Instant::now();
    let series = c.series();
    let slis: Vec<Series<'_>> = c.slo.iter().map(|(s, m, v)| Series::new(s, m, v)).collect();
    let choice = match mode {
        OnsetMode::Given => OnsetChoice::Given(c.fault_start),
        // A case's incident is recent: search the last ten minutes.
        OnsetMode::Detected => OnsetChoice::Detect {
            from_ms: c.window.0.max(c.window.1 - LOOKBACK_MS),
            to_ms: c.window.1,
            min_after_ms: 120_000,
        },
    };
    let d = diagnose(&series, &slis, c.topology.as_ref(), choice, cfg, onset_cfg)
        .unwrap_or_else(|e| fail(format!("{}: {e}", c.name)));
    let onset = d.onset_ms;
    let secs = t0.elapsed().as_secs_f64();
    Outcome {
        ranking: d.ranking().iter().map(|s| s.to_string()).collect(),
        onset,
        secs,
    }
}

/// AC@1..5 of one case (one root cause).
fn hits(ranking: &[String], truth: &str) -> [f64; 5] {
    let pos = ranking.iter().position(|s| s == truth);
    std::array::from_fn(|k| f64::from(u8::from(pos.is_some_and(|p| p <= k))))
}

#[derive(Default, Clone)]
struct Tally {
    n: usize,
    ac: [f64; 5],
}

impl Tally {
    fn add(&mut self, h: [f64; 5]) {
        self.n += 1;
        for (a, x) in self.ac.iter_mut().zip(h) {
            *a += x;
        }
    }
    fn get(&self, k: usize) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.ac[k - 1] / self.n as f64
        }
    }
    fn avg5(&self) -> f64 {
        (1..=5).map(|k| self.get(k)).sum::<f64>() / 5.0
    }
    fn line(&self) -> String {
        format!(
            "{:4}  {:.3}  {:.3}  {:.3}  {:.3}",
            self.n,
            self.get(1),
            self.get(3),
            self.get(5),
            self.avg5()
        )
    }
}

fn score_all(
    cases: &[Case],
    cfg: &DiagnoseConfig,
    onset_cfg: &OnsetConfig,
    mode: OnsetMode,
) -> (BTreeMap<String, Tally>, Vec<Outcome>) {
    let mut t: BTreeMap<String, Tally> = BTreeMap::new();
    let mut outs = Vec::new();
    for c in cases {
        let o = run_case(c, cfg, onset_cfg, mode);
        let h = hits(&o.ranking, &c.truth);
        t.entry(c.system.clone()).or_default().add(h);
        t.entry(format!("{}/{}", c.system, c.fault))
            .or_default()
            .add(h);
        t.entry("all".into()).or_default().add(h);
        outs.push(o);
    }
    (t, outs)
}

fn set(cfg: &DiagnoseConfig, kv: &str) -> DiagnoseConfig {
    let (k, v) = kv
        .split_once('=')
        .unwrap_or_else(|| fail(format!("expected field=value, got {kv:?}")));
    let mut json = serde_json::to_value(cfg).unwrap_or_else(|e| fail(e.to_string()));
    let val: serde_json::Value =
        serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    let mut at = &mut json;
    let parts: Vec<&str> = k.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        at = &mut at[*p];
    }
    at[parts[parts.len() - 1]] = val;
    serde_json::from_value(json).unwrap_or_else(|e| fail(format!("{kv}: {e}")))
}

/// The grid of `--grid`: the settings whose values the development set
/// could plausibly prefer (how the level is taken, which sides count,
/// calibration, the two topology terms), so that the leave-one-system-out
/// figure says how much choosing among them on one system costs on the
/// other.
fn grid(base: &DiagnoseConfig) -> Vec<(String, DiagnoseConfig)> {
    let mut out = Vec::new();
    for level in ["3", "5", "8"] {
        for sides in ["\"harmful\"", "\"both\""] {
            for calibrate in ["true", "false"] {
                for callee in ["0", "0.5"] {
                    for explain in ["false", "true"] {
                        let kvs = [
                            format!("level_samples={level}"),
                            format!("sides={sides}"),
                            format!("calibrate={calibrate}"),
                            format!("callee_traffic={callee}"),
                            format!("explain_latency={explain}"),
                        ];
                        let cfg = kvs.iter().fold(base.clone(), |c, kv| set(&c, kv));
                        out.push((kvs.join(" "), cfg));
                    }
                }
            }
        }
    }
    out
}

fn print_table(t: &BTreeMap<String, Tally>) {
    println!(
        "{:<40}  {:>4}  {:>5}  {:>5}  {:>5}  {:>5}",
        "group", "n", "AC@1", "AC@3", "AC@5", "Avg@5"
    );
    for (g, v) in t {
        println!("{g:<40}  {}", v.line());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let mut mode = OnsetMode::Given;
    let mut results = None;
    let mut topology = true;
    let mut do_grid = false;
    let mut per_case = false;
    let mut surprise_of: Option<String> = None;
    let mut cfg = DiagnoseConfig::default();
    let mut onset_cfg = OnsetConfig::default();
    if let Ok(v) = std::env::var("ONSET") {
        for kv in v.split_whitespace() {
            let (k, x) = kv
                .split_once('=')
                .unwrap_or_else(|| fail(format!("ONSET: {kv}")));
            let mut j = serde_json::to_value(&onset_cfg).unwrap_or_else(|e| fail(e.to_string()));
            j[k] = serde_json::from_str(x).unwrap_or_else(|e| fail(format!("ONSET {kv}: {e}")));
            onset_cfg =
                serde_json::from_value(j).unwrap_or_else(|e| fail(format!("ONSET {kv}: {e}")));
        }
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--onset" => {
                mode = match it.next().map(String::as_str) {
                    Some("given") => OnsetMode::Given,
                    Some("detected") => OnsetMode::Detected,
                    other => fail(format!("--onset given|detected, got {other:?}")),
                }
            }
            "--results" => results = it.next().map(PathBuf::from),
            "--no-topology" => topology = false,
            "--grid" => do_grid = true,
            "--per-case" => per_case = true,
            "--surprise" => surprise_of = it.next().cloned(),
            kv if kv.contains('=') => cfg = set(&cfg, kv),
            d if dir.is_none() => dir = Some(PathBuf::from(d)),
            other => fail(format!("unexpected argument {other:?}")),
        }
    }
    let dir = dir.unwrap_or_else(|| fail("usage: rca CASES_DIR [options]".into()));
    let cases = load(&dir, topology);
    eprintln!("{} cases loaded", cases.len());

    if let Some(name) = surprise_of {
        // The onset finder's surprise curve of one case, minutes from the
        // fault start (diagnostics for tuning).
        let c = cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| fail(format!("no case {name}")));
        let mut all = c.series();
        all.extend(c.slo.iter().map(|(s, m, v)| Series::new(s, m, v)));
        let s = detect::diagnose::surprise(&all, c.window.0, c.window.1, &cfg, &onset_cfg)
            .unwrap_or_else(|e| fail(e.to_string()));
        for (t, v) in &s {
            println!("{:+6.1} {v:10.2}", (t - c.fault_start) as f64 / 60_000.0);
        }
        let found = find_onsets(&all, c.window.0, c.window.1, &cfg, &onset_cfg)
            .unwrap_or_else(|e| fail(e.to_string()));
        for o in found {
            println!(
                "onset {:+.1} peak {:.1}",
                (o.onset_ms - c.fault_start) as f64 / 60_000.0,
                o.peak
            );
        }
        return;
    }

    if do_grid {
        let systems: Vec<String> = {
            let mut s: Vec<String> = cases.iter().map(|c| c.system.clone()).collect();
            s.sort();
            s.dedup();
            s
        };
        let mut rows = Vec::new();
        for (name, g) in grid(&cfg) {
            let (t, _) = score_all(&cases, &g, &onset_cfg, mode);
            rows.push((name, t));
        }
        for sys in &systems {
            let best = rows
                .iter()
                .max_by(|a, b| a.1[sys].avg5().total_cmp(&b.1[sys].avg5()))
                .expect("grid not empty");
            println!(
                "in-sample best on {sys}: {}  [{}]",
                best.1[sys].line(),
                best.0
            );
            for other in systems.iter().filter(|o| *o != sys) {
                println!(
                    "  chosen on {sys}, scored on {other} (held out): {}",
                    best.1[other].line()
                );
            }
        }
        return;
    }

    let (t, outs) = score_all(&cases, &cfg, &onset_cfg, mode);
    print_table(&t);
    let secs: Vec<f64> = outs.iter().map(|o| o.secs).collect();
    let mean = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
    let max = secs.iter().copied().fold(0.0, f64::max);
    println!(
        "time per case: mean {:.1} ms, max {:.1} ms",
        mean * 1e3,
        max * 1e3
    );
    if mode == OnsetMode::Detected {
        let mut err: Vec<f64> = cases
            .iter()
            .zip(&outs)
            .map(|(c, o)| (o.onset - c.fault_start) as f64 / 60_000.0)
            .collect();
        // One step either side (scrapes land a little off the minute).
        let within = err.iter().filter(|e| e.abs() <= 1.1).count();
        err.sort_by(f64::total_cmp);
        println!(
            "detected onset minus fault start (min): median {:.2}, within ±1 min {}/{}",
            err[err.len() / 2],
            within,
            err.len()
        );
    }
    if per_case {
        for (c, o) in cases.iter().zip(&outs) {
            let pos = o
                .ranking
                .iter()
                .position(|s| *s == c.truth)
                .map_or(0, |p| p + 1);
            println!(
                "{} {:<16} {:<30} rank {:>2}  onset {:+.1} min  top {:?}",
                c.name,
                c.fault,
                c.truth,
                pos,
                (o.onset - c.fault_start) as f64 / 60_000.0,
                &o.ranking[..o.ranking.len().min(3)]
            );
        }
    }
    if let Some(out) = results {
        std::fs::create_dir_all(&out)
            .unwrap_or_else(|e| fail(format!("creating {}: {e}", out.display())));
        for (c, o) in cases.iter().zip(&outs) {
            let p = out.join(format!("{}.json", c.name));
            let body = serde_json::json!({ "ranking": o.ranking, "onset_ms": o.onset });
            std::fs::write(&p, body.to_string())
                .unwrap_or_else(|e| fail(format!("writing {}: {e}", p.display())));
        }
    }
}
