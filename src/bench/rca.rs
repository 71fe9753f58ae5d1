//! `heal diagnose CASE_DIR` and `heal bench rca DIR`: root-cause ranking
//! ([`detect::diagnose`]) on fault-injection cases laid out as
//! `shared/datasets/rca-dev` (its README): per case `metrics.csv` (long
//! form, `timestamp,value,__name__,service`, epoch ms), `slo.csv` (the
//! entry point's SLIs, never evidence against a service) and `truth.json`
//! (`root_cause_service`, `fault_type`, `fault_start_ms`, `system`,
//! `window_start_ms`, `window_end_ms`); call graphs in
//! `DIR/topology/<system>-<YYYY-MM-DD>.csv` (`Source,Target[,Weight]`;
//! placement edges to node IPs are skipped).
//!
//! Scores are BARO's (FSE 2024, Eq. 6) as `shared/tools/rca_score.py`
//! computes them: AC@k, the share of cases whose root cause is among the
//! first k of the ranking, and Avg@5, the mean of AC@1..AC@5.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use detect::diagnose::{
    diagnose, DiagnoseConfig, Diagnosis, OnsetChoice, OnsetConfig, Series, Topology,
};

use crate::{Context, Error, Result};

/// How far back from a case's end a detected onset is searched: an
/// incident is diagnosed while it is young.
pub const LOOKBACK_MS: i64 = 10 * 60_000;
/// Data a detected onset needs after it to be ranked.
pub const MIN_AFTER_MS: i64 = 2 * 60_000;

type Samples = Vec<(i64, f64)>;

/// One case, loaded.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its directory's name.
    pub name: String,
    /// `truth.json`'s `system`.
    pub system: String,
    /// `truth.json`'s `fault_type`.
    pub fault: String,
    /// The root-cause service.
    pub truth: String,
    /// When the fault began (ms).
    pub fault_start: i64,
    /// The case's data window (ms, end excluded).
    pub window: (i64, i64),
    /// (service, metric, samples in time order).
    pub metrics: Vec<(String, String, Samples)>,
    /// The entry point's SLIs, same form.
    pub slo: Vec<(String, String, Samples)>,
    /// The call graph of the case's day, when the directory has one.
    pub topology: Option<Topology>,
}

/// Where the onset a case is ranked at comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnsetMode {
    /// The case's fault start (as the papers report).
    Given,
    /// Found by heal in the case's last ten minutes (as in production).
    Detected,
}

impl OnsetMode {
    /// `given` or `detected`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnsetMode::Given => "given",
            OnsetMode::Detected => "detected",
        }
    }
}

impl std::str::FromStr for OnsetMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "given" => Ok(OnsetMode::Given),
            "detected" => Ok(OnsetMode::Detected),
            other => Err(format!("{other:?}: given or detected")),
        }
    }
}

/// Settings of a run: the ranking's and the onset finder's.
#[derive(Debug, Clone, Default)]
pub struct RcaSettings {
    /// The ranking.
    pub diagnose: DiagnoseConfig,
    /// The onset finder (`--onset detected`).
    pub onset: OnsetConfig,
    /// Use the directory's call graphs.
    pub topology: bool,
}

impl RcaSettings {
    /// The defaults, with the call graphs.
    pub fn new() -> Self {
        RcaSettings {
            topology: true,
            ..RcaSettings::default()
        }
    }

    /// Overrides one setting, `field=value` (`weights.host=0.5`,
    /// `sides=harmful`, `onset.level_samples=8`): a value that reads as
    /// JSON is taken as such, otherwise as a string.
    ///
    /// # Errors
    ///
    /// Not `field=value`, no such field, a value of the wrong type.
    pub fn set(&mut self, kv: &str) -> Result<()> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--set {kv:?}: expected field=value")))?;
        let bad = |e: String| Error::Usage(format!("--set {kv:?}: {e}"));
        let val: serde_json::Value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        fn put(
            json: &mut serde_json::Value,
            path: &[&str],
            val: serde_json::Value,
        ) -> std::result::Result<(), String> {
            let mut at = json;
            for p in &path[..path.len() - 1] {
                at = at.get_mut(*p).ok_or_else(|| format!("no setting {p:?}"))?;
            }
            let last = path[path.len() - 1];
            let slot = at
                .get_mut(last)
                .ok_or_else(|| format!("no setting {last:?}"))?;
            *slot = val;
            Ok(())
        }
        let parts: Vec<&str> = k.split('.').collect();
        if parts[0] == "onset" && parts.len() > 1 {
            let mut json = serde_json::to_value(&self.onset).map_err(|e| bad(e.to_string()))?;
            put(&mut json, &parts[1..], val).map_err(bad)?;
            self.onset = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
        } else {
            let mut json = serde_json::to_value(&self.diagnose).map_err(|e| bad(e.to_string()))?;
            put(&mut json, &parts, val).map_err(bad)?;
            self.diagnose = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
        }
        Ok(())
    }
}

/// Reads a long-form CSV of a case into (service, metric, samples).
fn read_long(path: &Path) -> Result<Vec<(String, String, Samples)>> {
    let dataset = ingest::import_long_csv(path).map_err(|e| Error::Usage(e.to_string()))?;
    let mut out = Vec::with_capacity(dataset.series.len());
    for s in dataset.series {
        let (Some(metric), Some(service)) = (s.labels.name(), s.labels.get("service")) else {
            return Err(Error::Usage(format!(
                "{}: series {} has no `service` or no `__name__`",
                path.display(),
                s.labels
            )));
        };
        out.push((
            service.to_owned(),
            metric.to_owned(),
            s.samples.iter().map(|x| (x.ts_ms, x.value)).collect(),
        ));
    }
    Ok(out)
}

/// `YYYY-MM-DD` (UTC) of epoch milliseconds.
fn date(ms: i64) -> String {
    remediate::time::rfc3339(ms)[..10].to_owned()
}

/// The call graph of `DIR/topology/<system>-<date>.csv`, if there is one.
fn read_topology(dir: &Path, system: &str, start: i64) -> Result<Option<Topology>> {
    let path = dir
        .join("topology")
        .join(format!("{system}-{}.csv", date(start)));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Usage(format!("reading {}: {e}", path.display()))),
    };
    let mut t = Topology::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 2 {
            return Err(Error::Usage(format!(
                "{}:{}: expected Source,Target[,Weight]",
                path.display(),
                i + 1
            )));
        }
        // Placement edges: service -> node IP.
        if f[1].starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        t.add_edge(f[0], f[1])
            .map_err(|e| Error::Usage(format!("{}:{}: {e}", path.display(), i + 1)))?;
    }
    Ok(Some(t))
}

/// Loads one case directory; `root` is where `topology/` is looked for
/// (the case's parent).
///
/// # Errors
///
/// A missing or malformed file, named with its path (and line).
pub fn load_case(case: &Path, topology: bool) -> Result<Case> {
    let tp = case.join("truth.json");
    let text = std::fs::read_to_string(&tp).with_context(|| format!("reading {}", tp.display()))?;
    let t: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", tp.display())))?;
    // Every problem of the file at once.
    let mut problems = BTreeMap::new();
    let mut s = |k: &'static str| match t.get(k).map(|v| v.as_str()) {
        Some(Some(v)) => v.to_owned(),
        found => {
            problems.insert(
                k,
                if found.is_some() {
                    "not a string"
                } else {
                    "missing"
                },
            );
            String::new()
        }
    };
    let (system, fault, truth) = (s("system"), s("fault_type"), s("root_cause_service"));
    let mut i = |k: &'static str| match t.get(k).map(|v| v.as_i64()) {
        Some(Some(v)) => v,
        found => {
            problems.insert(
                k,
                if found.is_some() {
                    "not an integer"
                } else {
                    "missing"
                },
            );
            0
        }
    };
    let (start, from, to) = (
        i("fault_start_ms"),
        i("window_start_ms"),
        i("window_end_ms"),
    );
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|(k, p)| format!("{k}: {p}")).collect();
        return Err(Error::Usage(format!(
            "{}: {}",
            tp.display(),
            list.join("; ")
        )));
    }
    let root = case.parent().unwrap_or(Path::new("."));
    Ok(Case {
        name: case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        fault,
        truth,
        fault_start: start,
        window: (from, to),
        metrics: read_long(&case.join("metrics.csv"))?,
        slo: read_long(&case.join("slo.csv"))?,
        topology: if topology {
            read_topology(root, &system, start)?
        } else {
            None
        },
        system,
    })
}

/// Loads every case of `dir` (its subdirectories with a `truth.json`), in
/// name order.
///
/// # Errors
///
/// See [`load_case`]; a directory with no case.
pub fn load_cases(dir: &Path, topology: bool) -> Result<Vec<Case>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").is_file())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no case (a directory with a truth.json) in it",
            dir.display()
        )));
    }
    names.iter().map(|p| load_case(p, topology)).collect()
}

/// Ranks one case at the onset `mode` says.
///
/// # Errors
///
/// A series out of time order, a bad topology edge.
pub fn diagnose_case(c: &Case, mode: OnsetMode, settings: &RcaSettings) -> Result<Diagnosis> {
    let series: Vec<Series<'_>> = c
        .metrics
        .iter()
        .map(|(s, m, v)| Series::new(s, m, v))
        .collect();
    let slis: Vec<Series<'_>> = c.slo.iter().map(|(s, m, v)| Series::new(s, m, v)).collect();
    let choice = match mode {
        OnsetMode::Given => OnsetChoice::Given(c.fault_start),
        OnsetMode::Detected => OnsetChoice::Detect {
            from_ms: c.window.0.max(c.window.1 - LOOKBACK_MS),
            to_ms: c.window.1,
            min_after_ms: MIN_AFTER_MS,
        },
    };
    diagnose(
        &series,
        &slis,
        c.topology.as_ref(),
        choice,
        &settings.diagnose,
        &settings.onset,
    )
    .map_err(|e| Error::Usage(format!("{}: {e}", c.name)))
}

/// AC@1..5 of one case (one root cause).
fn hits(ranking: &[&str], truth: &str) -> [f64; 5] {
    let pos = ranking.iter().position(|s| *s == truth);
    std::array::from_fn(|k| f64::from(u8::from(pos.is_some_and(|p| p <= k))))
}

/// AC@k over a group of cases.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Cases.
    pub n: usize,
    ac: [f64; 5],
}

impl Tally {
    fn add(&mut self, h: [f64; 5]) {
        self.n += 1;
        for (a, x) in self.ac.iter_mut().zip(h) {
            *a += x;
        }
    }

    /// AC@k, k in 1..=5.
    pub fn ac(&self, k: usize) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.ac[k - 1] / self.n as f64
        }
    }

    /// Mean of AC@1..AC@5.
    pub fn avg5(&self) -> f64 {
        (1..=5).map(|k| self.ac(k)).sum::<f64>() / 5.0
    }

    fn line(&self) -> String {
        format!(
            "{:4}  {:.3}  {:.3}  {:.3}  {:.3}",
            self.n,
            self.ac(1),
            self.ac(3),
            self.ac(5),
            self.avg5()
        )
    }
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Services, most likely cause first.
    pub ranking: Vec<String>,
    /// The onset ranked at.
    pub onset_ms: i64,
    /// Time to rank it (I/O excluded).
    pub secs: f64,
}

/// Every case ranked: the tallies by `all`, system and `system/fault`,
/// and each case's outcome.
///
/// # Errors
///
/// See [`diagnose_case`].
pub fn score_all(
    cases: &[Case],
    mode: OnsetMode,
    settings: &RcaSettings,
) -> Result<(BTreeMap<String, Tally>, Vec<Outcome>)> {
    let mut t: BTreeMap<String, Tally> = BTreeMap::new();
    let mut outs = Vec::with_capacity(cases.len());
    for c in cases {
        let t0 = Instant::now();
        let d = diagnose_case(c, mode, settings)?;
        let secs = t0.elapsed().as_secs_f64();
        let ranking = d.ranking();
        let h = hits(&ranking, &c.truth);
        t.entry("all".into()).or_default().add(h);
        t.entry(c.system.clone()).or_default().add(h);
        t.entry(format!("{}/{}", c.system, c.fault))
            .or_default()
            .add(h);
        outs.push(Outcome {
            ranking: ranking.iter().map(|s| (*s).to_owned()).collect(),
            onset_ms: d.onset_ms,
            secs,
        });
    }
    Ok((t, outs))
}

/// The table of `heal bench rca`.
pub fn table(t: &BTreeMap<String, Tally>) -> String {
    let mut out = format!(
        "{:<40}  {:>4}  {:>5}  {:>5}  {:>5}  {:>5}\n",
        "group", "n", "AC@1", "AC@3", "AC@5", "Avg@5"
    );
    for (g, v) in t {
        out.push_str(&format!("{g:<40}  {}\n", v.line()));
    }
    out
}

/// The settings `--cv` chooses among: how the level is taken, which sides
/// count, calibration and the two topology terms.
fn grid(base: &RcaSettings) -> Result<Vec<(String, RcaSettings)>> {
    let mut out = Vec::new();
    for level in ["3", "5", "8"] {
        for sides in ["harmful", "both"] {
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
                        let mut s = base.clone();
                        for kv in &kvs {
                            s.set(kv)?;
                        }
                        out.push((kvs.join(" "), s));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What `heal bench rca` runs.
#[derive(Debug, Clone)]
pub struct RcaBenchConfig {
    /// The cases' directory.
    pub dir: PathBuf,
    /// Where onsets come from.
    pub onset: OnsetMode,
    /// Write `OUT/<case>.json` (`{"ranking": [...], "onset_ms": ...}`).
    pub results: Option<PathBuf>,
    /// Also choose among the grid's settings on one system and score the
    /// other (leave one system out).
    pub cv: bool,
    /// Print one line per case.
    pub per_case: bool,
    /// Settings.
    pub settings: RcaSettings,
}

/// `heal bench rca`: prints the table, the time per case, the detected
/// onsets' distance from the fault starts, and with `--cv` the
/// leave-one-system-out figures.
///
/// # Errors
///
/// Cases that cannot be read, results that cannot be written.
pub fn run(cfg: &RcaBenchConfig) -> Result<()> {
    let cases = load_cases(&cfg.dir, cfg.settings.topology)?;
    let (t, outs) = score_all(&cases, cfg.onset, &cfg.settings)?;
    println!(
        "{} cases, onset {}{}",
        cases.len(),
        cfg.onset.as_str(),
        if cfg.settings.topology {
            ", call graphs where the directory has them"
        } else {
            ", no call graph"
        }
    );
    print!("{}", table(&t));
    let secs: Vec<f64> = outs.iter().map(|o| o.secs).collect();
    let mean = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
    let max = secs.iter().copied().fold(0.0, f64::max);
    println!(
        "time per case: mean {:.1} ms, max {:.1} ms",
        mean * 1e3,
        max * 1e3
    );
    if cfg.onset == OnsetMode::Detected {
        let mut err: Vec<f64> = cases
            .iter()
            .zip(&outs)
            .map(|(c, o)| (o.onset_ms - c.fault_start) as f64 / 60_000.0)
            .collect();
        // One step either side: scrapes land a little off the minute.
        let within = err.iter().filter(|e| e.abs() <= 1.1).count();
        err.sort_by(f64::total_cmp);
        println!(
            "detected onset minus fault start (min): median {:.2}, within ±1 min {}/{}",
            err[err.len() / 2],
            within,
            err.len()
        );
    }
    if cfg.per_case {
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
                (o.onset_ms - c.fault_start) as f64 / 60_000.0,
                &o.ranking[..o.ranking.len().min(3)]
            );
        }
    }
    if let Some(out) = &cfg.results {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (c, o) in cases.iter().zip(&outs) {
            let p = out.join(format!("{}.json", c.name));
            let body = serde_json::json!({ "ranking": o.ranking, "onset_ms": o.onset_ms });
            stdx::write_atomically(&p, body.to_string().as_bytes())?;
        }
        println!(
            "wrote {} rankings to {} (check: python3 shared/tools/rca_score.py {} {})",
            outs.len(),
            out.display(),
            cfg.dir.display(),
            out.display()
        );
    }
    if cfg.cv {
        let systems: Vec<String> = {
            let mut s: Vec<String> = cases.iter().map(|c| c.system.clone()).collect();
            s.dedup();
            s.sort();
            s.dedup();
            s
        };
        let mut rows = Vec::new();
        for (name, s) in grid(&cfg.settings)? {
            let (t, _) = score_all(&cases, cfg.onset, &s)?;
            rows.push((name, t));
        }
        println!(
            "\nleave one system out: the setting of {} candidates with the best Avg@5 on one system, scored on the other",
            rows.len()
        );
        for sys in &systems {
            let Some(best) = rows
                .iter()
                .max_by(|a, b| a.1[sys].avg5().total_cmp(&b.1[sys].avg5()))
            else {
                continue;
            };
            println!(
                "  chosen on {sys} (in-sample): {}  [{}]",
                best.1[sys].line(),
                best.0
            );
            for other in systems.iter().filter(|o| *o != sys) {
                println!("    scored on {other} (held out): {}", best.1[other].line());
            }
        }
    }
    Ok(())
}

/// `heal diagnose CASE_DIR [--json]`: the ranking with its evidence, as
/// text, or as one JSON document (the case's truth beside the
/// [`Diagnosis`], for notebooks and scripts).
///
/// # Errors
///
/// See [`load_case`] and [`diagnose_case`].
pub fn diagnose_dir(
    case: &Path,
    mode: OnsetMode,
    settings: &RcaSettings,
    json: bool,
) -> Result<String> {
    let c = load_case(case, settings.topology)?;
    let d = diagnose_case(&c, mode, settings)?;
    if !json {
        return Ok(explain(&c, &d));
    }
    let doc = serde_json::json!({
        "case": c.name,
        "system": c.system,
        "fault": c.fault,
        "truth": c.truth,
        "fault_start_ms": c.fault_start,
        "rank_of_truth": d.ranking().iter().position(|s| *s == c.truth).map(|p| p + 1),
        "diagnosis": d,
    });
    Ok(format!("{doc:#}\n"))
}

/// A diagnosis as a person reads it: the onset, the ranking with scores,
/// each leading suspect's evidence, and the truth when the case has one.
pub fn explain(c: &Case, d: &Diagnosis) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let minutes = |t: i64| (t - c.fault_start) as f64 / 60_000.0;
    let _ = writeln!(
        out,
        "{}: onset {} ({:+.1} min from the fault start)",
        c.name,
        remediate::time::rfc3339(d.onset_ms),
        minutes(d.onset_ms)
    );
    for (i, s) in d.suspects.iter().enumerate().take(10) {
        let _ = writeln!(
            out,
            "{:>2}. {:<32} score {:>8.2}  (own {:.2}, latency {:.2}{})",
            i + 1,
            stdx::text::terminal(&s.service),
            s.score,
            s.own,
            s.latency,
            match &s.explained_by {
                Some(by) => format!(
                    ", {:.2} explained by {}",
                    s.explained,
                    stdx::text::terminal(by)
                ),
                None => String::new(),
            }
        );
        for e in &s.evidence {
            let _ = writeln!(
                out,
                "      {:<34} {:<5} {:>10.4} -> {:>10.4}  z {:>6.1}  surprise {:>5.2}{}",
                stdx::text::terminal(&e.metric),
                if e.above { "up" } else { "down" },
                e.baseline,
                e.value,
                e.z,
                e.surprise,
                e.onset_ms
                    .map(|t| format!("  from {:+.1} min", minutes(t)))
                    .unwrap_or_default()
            );
        }
        if s.path.len() > 1 {
            let _ = writeln!(out, "      path: {}", s.path.join(" -> "));
        }
    }
    let pos = d
        .suspects
        .iter()
        .position(|s| s.service == c.truth)
        .map_or_else(|| "not ranked".to_owned(), |p| format!("ranked {}", p + 1));
    let _ = writeln!(
        out,
        "truth: {} ({}), {pos}",
        stdx::text::terminal(&c.truth),
        c.fault
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_nested_fields_and_name_a_bad_one() {
        let mut s = RcaSettings::new();
        s.set("weights.host=0.25").unwrap();
        assert_eq!(s.diagnose.weights.host, 0.25);
        s.set("sides=harmful").unwrap();
        s.set("onset.level_samples=8").unwrap();
        assert_eq!(s.onset.level_samples, 8);
        let e = s.set("weights.hots=1").unwrap_err().to_string();
        assert!(e.contains("no setting \"hots\""), "{e}");
        let e = s.set("nothing").unwrap_err().to_string();
        assert!(e.contains("expected field=value"), "{e}");
    }

    #[test]
    fn hits_count_the_root_cause_within_k() {
        assert_eq!(hits(&["a", "b", "c"], "b"), [0.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(hits(&["a"], "z"), [0.0; 5]);
        let mut t = Tally::default();
        t.add(hits(&["a", "b"], "a"));
        t.add(hits(&["a", "b"], "b"));
        assert_eq!((t.ac(1), t.ac(2)), (0.5, 1.0));
        assert!((t.avg5() - 0.9).abs() < 1e-12);
    }
}
