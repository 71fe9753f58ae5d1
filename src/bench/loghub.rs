//! `heal bench loghub DIR`: the template miner on every system of a Loghub-2k
//! directory (laid out as `shared/datasets/loghub-dev`), with ONE
//! configuration (the default a log source gets), scored against the
//! corrected ground truth: Grouping Accuracy, Parsing Accuracy and FGA per
//! system and on average, and lines per second (mining alone, and header
//! parsing plus mining, messages in memory, best of `reps`).
//!
//! The Loghub datasets are research data (Zhu et al., "Tools and Benchmarks
//! for Automated Log Parsing", ICSE-SEIP 2019; Jiang et al., "A Large-scale
//! Evaluation for Log Parsing Techniques: How Far are We?", ISSTA 2024): cite
//! Loghub when reporting these figures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use logs::loghub::{self, Prepared};
use logs::{mean, MinerConfig, Scores};

use crate::{Error, Result};

/// One system's figures.
#[derive(Debug, Clone)]
pub struct SystemRow {
    /// The system (`HDFS`).
    pub system: String,
    /// Scores against the corrected truth.
    pub scores: Scores,
    /// Mining alone, lines per second.
    pub mine_per_s: f64,
    /// Header parsing and mining, lines per second (`None` when the
    /// messages came from the truth's Content column).
    pub parse_mine_per_s: Option<f64>,
    /// Templates at the end.
    pub templates: usize,
    /// Their memory (estimate), bytes.
    pub memory_bytes: usize,
}

/// Systems of `dir`: sub-directories holding
/// `<Sys>/<Sys>_2k.log_structured_corrected.csv`, in the README's order
/// first.
///
/// # Errors
///
/// `dir` cannot be read, or holds no system.
pub fn systems(dir: &Path) -> Result<Vec<String>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|s| truth_path(dir, s).is_file())
        .collect();
    if found.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no <Sys>/<Sys>_2k.log_structured_corrected.csv (a directory laid out as loghub-dev)",
            dir.display()
        )));
    }
    let order: Vec<&str> = loghub::DEV_FORMATS.iter().map(|(s, _)| *s).collect();
    found.sort_by_key(|s| {
        (
            order.iter().position(|o| o == s).unwrap_or(usize::MAX),
            s.clone(),
        )
    });
    Ok(found)
}

fn truth_path(dir: &Path, sys: &str) -> PathBuf {
    dir.join(sys)
        .join(format!("{sys}_2k.log_structured_corrected.csv"))
}

fn log_path(dir: &Path, sys: &str) -> PathBuf {
    dir.join(sys).join(format!("{sys}_2k.log"))
}

/// One system's messages and truth: from its raw log read by its known
/// header layout, else from the truth's Content column.
///
/// # Errors
///
/// The truth cannot be read, or does not match the log line for line.
pub fn load(dir: &Path, sys: &str) -> Result<Prepared> {
    let path = truth_path(dir, sys);
    let truth = std::fs::read_to_string(&path)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let log = std::fs::read_to_string(log_path(dir, sys)).ok();
    loghub::prepare(sys, log.as_deref(), &truth, loghub::known_format(sys))
        .map_err(|e| Error::Usage(format!("{sys}: {e}")))
}

/// Mines and scores one system (timed `reps` times, best kept).
///
/// # Errors
///
/// See [`load`]; a configuration that does not compile.
pub fn system(dir: &Path, sys: &str, config: &MinerConfig, reps: usize) -> Result<SystemRow> {
    let p = load(dir, sys)?;
    let reps = reps.max(1);
    let mut best = f64::INFINITY;
    let mut mined = None;
    for _ in 0..reps {
        let t = Instant::now();
        let m = loghub::mine_messages(&p.messages, config)
            .map_err(|e| Error::Usage(format!("miner configuration: {e}")))?;
        best = best.min(t.elapsed().as_secs_f64());
        mined = Some(m);
    }
    let mined = mined.ok_or_else(|| Error::Message("no repetition ran".into()))?;
    let mut parse = None;
    if let (true, Some(layout), Ok(text)) = (
        p.from_log,
        loghub::known_format(sys),
        std::fs::read_to_string(log_path(dir, sys)),
    ) {
        let fmt = logs::LoghubFormat::new(&logs::LoghubFormatConfig::new(layout))
            .map_err(|e| Error::Message(e.to_string()))?;
        let mut fastest = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            let m =
                loghub::messages(&text, sys, &fmt).map_err(|e| Error::Message(e.to_string()))?;
            fastest = fastest.min(t.elapsed().as_secs_f64());
            std::hint::black_box(m);
        }
        parse = Some(fastest);
    }
    let scores =
        loghub::score_mined(&p.truth, &mined).map_err(|e| Error::Message(e.to_string()))?;
    let n = p.messages.len() as f64;
    Ok(SystemRow {
        system: sys.to_owned(),
        scores,
        mine_per_s: n / best,
        parse_mine_per_s: parse.map(|parse| n / (best + parse)),
        templates: mined.templates,
        memory_bytes: mined.memory_bytes,
    })
}

/// Runs every system of `dir` and prints the table.
///
/// # Errors
///
/// See [`systems`] and [`system`].
pub fn run(dir: &Path, reps: usize) -> Result<Vec<SystemRow>> {
    let config = MinerConfig::default();
    let mut rows = Vec::new();
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>11} {:>13} {:>9} {:>7}",
        "system",
        "lines",
        "true",
        "found",
        "GA",
        "PA",
        "FGA",
        "mine/s",
        "header+mine/s",
        "templates",
        "KiB"
    );
    for sys in systems(dir)? {
        let r = system(dir, &sys, &config, reps)?;
        println!(
            "{:<12} {:>6} {:>6} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>11.0} {:>13} {:>9} {:>7.1}",
            r.system,
            r.scores.lines,
            r.scores.true_groups,
            r.scores.predicted_groups,
            r.scores.ga,
            r.scores.pa.unwrap_or(f64::NAN),
            r.scores.fga,
            r.mine_per_s,
            r.parse_mine_per_s
                .map_or_else(|| "(Content)".to_owned(), |v| format!("{v:.0}")),
            r.templates,
            r.memory_bytes as f64 / 1024.0
        );
        rows.push(r);
    }
    let scores: Vec<Scores> = rows.iter().map(|r| r.scores).collect();
    let (ga, pa, fga) = mean(&scores);
    let lines: usize = rows.iter().map(|r| r.scores.lines).sum();
    let mine_secs: f64 = rows
        .iter()
        .map(|r| r.scores.lines as f64 / r.mine_per_s)
        .sum();
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>11.0}",
        format!("mean({})", rows.len()),
        lines,
        "",
        "",
        ga,
        pa.unwrap_or(f64::NAN),
        fga,
        lines as f64 / mine_secs
    );
    println!(
        "one configuration for every system (the log source default); lines/s on one core, messages in memory, best of {reps}"
    );
    Ok(rows)
}

/// Fills a miner to its template cap with distinct statements of about 100
/// bytes, then sends as many distinct forms again as its cache holds, and
/// prints its memory: what one log source costs at most.
pub fn memory_at_cap(config: &MinerConfig) {
    let word = |mut i: usize| {
        let mut w = String::from("w");
        loop {
            w.push((b'a' + (i % 26) as u8) as char);
            i /= 26;
            if i == 0 {
                return w;
            }
        }
    };
    let Ok(mut m) = logs::TemplateMiner::new(config.clone()) else {
        return;
    };
    let n = config.max_templates + config.max_cached_forms;
    for i in 0..n {
        m.add(&format!(
            "{} then {} happened to the widget {} while the queue held {i} items for {}",
            word(i),
            word(i + 7),
            i % 97,
            word(i % 13)
        ));
    }
    let bytes = m.memory_bytes();
    println!(
        "memory at the caps ({} templates, {} cached forms, {n} distinct ~100-byte messages): {:.1} MiB, {:.0} bytes per template",
        config.max_templates,
        config.max_cached_forms,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / m.len().max(1) as f64
    );
}

// The honesty checks for "one configuration for all systems" (`--ablation`,
// `--cv`): every rule and threshold of the miner is a knob; a configuration's
// scores per system are cached, since the searches revisit them.

/// Scores of a configuration on every system, cached by configuration.
struct Evaluator<'a> {
    systems: &'a [Prepared],
    cache: std::collections::HashMap<String, Vec<(f64, f64, f64)>>,
}

impl<'a> Evaluator<'a> {
    fn new(systems: &'a [Prepared]) -> Self {
        Self {
            systems,
            cache: Default::default(),
        }
    }

    /// (GA, PA, FGA) per system.
    fn scores(&mut self, config: &MinerConfig) -> Vec<(f64, f64, f64)> {
        let key = serde_json::to_string(config).expect("config serialises");
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let v: Vec<(f64, f64, f64)> = self
            .systems
            .iter()
            .map(|p| {
                let mined = loghub::mine_messages(&p.messages, config).expect("valid config");
                let s = loghub::score_mined(&p.truth, &mined).expect("same lengths");
                (s.ga, s.pa.unwrap_or(0.0), s.fga)
            })
            .collect();
        self.cache.insert(key, v.clone());
        v
    }

    /// Mean GA + mean PA over the systems except `skip`.
    fn objective(&mut self, config: &MinerConfig, skip: Option<usize>) -> f64 {
        let v = self.scores(config);
        let kept: Vec<&(f64, f64, f64)> = v
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, x)| x)
            .collect();
        let n = kept.len() as f64;
        kept.iter().map(|x| x.0 + x.1).sum::<f64>() / n
    }
}

type Setter = Box<dyn Fn(&mut MinerConfig)>;

/// The knobs of the configuration, each with the values tried.
fn knobs() -> Vec<(&'static str, Vec<(String, Setter)>)> {
    fn flag(
        name: &'static str,
        f: fn(&mut MinerConfig, bool),
    ) -> (&'static str, Vec<(String, Setter)>) {
        (
            name,
            [true, false]
                .into_iter()
                .map(|v| {
                    (
                        v.to_string(),
                        Box::new(move |c: &mut MinerConfig| f(c, v)) as Setter,
                    )
                })
                .collect(),
        )
    }
    fn values<T: Copy + std::fmt::Debug + 'static>(
        name: &'static str,
        vals: &[T],
        f: fn(&mut MinerConfig, T),
    ) -> (&'static str, Vec<(String, Setter)>) {
        (
            name,
            vals.iter()
                .map(|&v| {
                    (
                        format!("{v:?}"),
                        Box::new(move |c: &mut MinerConfig| f(c, v)) as Setter,
                    )
                })
                .collect(),
        )
    }
    vec![
        flag("mask.hex", |c, v| c.mask.builtin.hex = v),
        flag("mask.ips", |c, v| c.mask.builtin.ips = v),
        flag("mask.uuids", |c, v| c.mask.builtin.uuids = v),
        flag("mask.macs", |c, v| c.mask.builtin.macs = v),
        flag("mask.paths", |c, v| c.mask.builtin.paths = v),
        flag("mask.urls", |c, v| c.mask.builtin.urls = v),
        flag("mask.sizes", |c, v| c.mask.builtin.sizes = v),
        flag("mask.durations", |c, v| c.mask.builtin.durations = v),
        flag("mask.key_names", |c, v| c.mask.builtin.key_names = v),
        flag("mask.prefixes", |c, v| c.mask.builtin.prefixes = v),
        flag("mask.labels", |c, v| c.mask.builtin.labels = v),
        flag("mask.short_names", |c, v| c.mask.builtin.short_names = v),
        values("mask.max_variable_run", &[0usize, 4, 8, 16], |c, v| {
            c.mask.max_variable_run = v
        }),
        family(),
        flag("word_matches_variable", |c, v| c.word_matches_variable = v),
    ]
}

/// The family settings interact (a ratio or a first-token rule means nothing
/// without families), so they are one knob: every combination.
fn family() -> (&'static str, Vec<(String, Setter)>) {
    let mut vals: Vec<(String, Setter)> = vec![(
        "off".to_string(),
        Box::new(|c: &mut MinerConfig| {
            c.family_min_values = 0;
            c.family_max_lines_per_value = 2.0;
            c.family_skip_first = true;
        }) as Setter,
    )];
    for k in [3usize, 4, 5, 6] {
        for r in [1.0f64, 2.0, 4.0, 1e9] {
            for skip in [true, false] {
                vals.push((
                    format!("k{k}/r{r}/skip-first-{skip}"),
                    Box::new(move |c: &mut MinerConfig| {
                        c.family_min_values = k;
                        c.family_max_lines_per_value = r;
                        c.family_skip_first = skip;
                    }),
                ));
            }
        }
    }
    ("family", vals)
}

fn ablation(eval: &mut Evaluator<'_>, base: &MinerConfig) {
    let names: Vec<&str> = eval.systems.iter().map(|p| p.system.as_str()).collect();
    let b = eval.scores(base);
    println!("\nablation: change of GA / PA (x1000) per system when one knob changes from the configuration");
    print!("{:<36}", "knob = value");
    for n in &names {
        print!(" {:>11}", n);
    }
    println!(" {:>11}", "mean");
    for (name, vals) in knobs() {
        for (label, set) in vals {
            let mut c = base.clone();
            set(&mut c);
            if c == *base {
                continue;
            }
            let v = eval.scores(&c);
            print!("{:<36}", format!("{name} = {label}"));
            let (mut dg, mut dp) = (0.0, 0.0);
            for (x, y) in v.iter().zip(&b) {
                let (g, p) = ((x.0 - y.0) * 1000.0, (x.1 - y.1) * 1000.0);
                dg += g;
                dp += p;
                print!(" {:>5.0}/{:<5.0}", g, p);
            }
            let n = v.len() as f64;
            println!(" {:>5.1}/{:<5.1}", dg / n, dp / n);
        }
    }
}

/// The starting point of the strict check: only the rule every Drain-like
/// parser has (a token with a digit is a variable), no families, no runs.
fn minimal() -> MinerConfig {
    let mut c = MinerConfig::default();
    let b = &mut c.mask.builtin;
    (
        b.hex,
        b.ips,
        b.uuids,
        b.macs,
        b.paths,
        b.urls,
        b.sizes,
        b.durations,
    ) = (false, false, false, false, false, false, false, false);
    (b.key_names, b.prefixes, b.labels, b.short_names) = (false, false, false, false);
    c.mask.max_variable_run = 0;
    c.family_min_values = 0;
    c.family_max_lines_per_value = 2.0;
    c.family_skip_first = true;
    c.word_matches_variable = false;
    c
}

fn loso(eval: &mut Evaluator<'_>, start: &MinerConfig, given: &MinerConfig, how: &str) {
    let names: Vec<String> = eval.systems.iter().map(|p| p.system.clone()).collect();
    let knobs = knobs();
    let base = given;
    println!("\nleave-one-system-out, {how}: configuration chosen on the other systems, scored on the held-out one");
    println!(
        "{:<12} {:>7} {:>7} {:>7}   changes from the given configuration",
        "held out", "GA", "PA", "FGA"
    );
    let mut held = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let mut cfg = start.clone();
        let mut best = eval.objective(&cfg, Some(k));
        for _pass in 0..4 {
            let mut improved = false;
            for (_, vals) in &knobs {
                for (_, set) in vals {
                    let mut c = cfg.clone();
                    set(&mut c);
                    if c == cfg {
                        continue;
                    }
                    let o = eval.objective(&c, Some(k));
                    // Strictly better on the other systems, else keep.
                    if o > best + 1e-9 {
                        best = o;
                        cfg = c;
                        improved = true;
                    }
                }
            }
            if !improved {
                break;
            }
        }
        let s = eval.scores(&cfg)[k];
        let changes = describe_changes(base, &cfg, &knobs);
        println!(
            "{:<12} {:>7.4} {:>7.4} {:>7.4}   {}",
            name, s.0, s.1, s.2, changes
        );
        held.push(s);
    }
    let n = held.len() as f64;
    println!(
        "{:<12} {:>7.4} {:>7.4} {:>7.4}",
        format!("mean({})", held.len()),
        held.iter().map(|s| s.0).sum::<f64>() / n,
        held.iter().map(|s| s.1).sum::<f64>() / n,
        held.iter().map(|s| s.2).sum::<f64>() / n
    );
}

fn describe_changes(
    base: &MinerConfig,
    cfg: &MinerConfig,
    knobs: &[(&'static str, Vec<(String, Setter)>)],
) -> String {
    let mut out = Vec::new();
    for (name, vals) in knobs {
        // The value of this knob in `cfg`: the setter that leaves it unchanged.
        let now = vals.iter().find(|(_, set)| {
            let mut c = cfg.clone();
            set(&mut c);
            c == *cfg
        });
        let was = vals.iter().find(|(_, set)| {
            let mut c = base.clone();
            set(&mut c);
            c == *base
        });
        if let (Some((n, _)), Some((w, _))) = (now, was) {
            if n != w {
                out.push(format!("{name}={n}"));
            }
        }
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// `--ablation` and `--cv` on every system of `dir`, from the default
/// configuration. `--cv` is leave-one-system-out: for each system S, every
/// rule and threshold is chosen again on the other systems only (coordinate
/// ascent over the same knobs as `--ablation`, objective mean GA + mean PA)
/// and S is scored with that choice, twice: starting from the default (ties
/// keep it) and from the digits rule alone (a rule is taken only when it is
/// strictly better on the other systems). A rule only S needs is dropped
/// for S.
///
/// # Errors
///
/// See [`systems`] and [`load`].
pub fn checks(dir: &Path, ablate: bool, cv: bool) -> Result<()> {
    let prepared: Vec<Prepared> = systems(dir)?
        .iter()
        .map(|s| load(dir, s))
        .collect::<Result<_>>()?;
    let mut eval = Evaluator::new(&prepared);
    let given = MinerConfig::default();
    if ablate {
        ablation(&mut eval, &given);
    }
    if cv {
        loso(
            &mut eval,
            &given,
            &given,
            "from the default configuration (ties keep it)",
        );
        loso(
            &mut eval,
            &minimal(),
            &given,
            "from the digits rule alone (a rule or threshold is taken only if it is strictly better on the other systems)",
        );
    }
    Ok(())
}
