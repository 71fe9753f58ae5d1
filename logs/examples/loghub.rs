//! Mines every system of a Loghub-2k directory (laid out as
//! `shared/datasets/loghub-dev`) and prints, per system and on average, GA, PA
//! and FGA against the corrected ground truth and the mining throughput; with
//! `--out DIR`, writes `DIR/<Sys>.csv` (`template_id,template`, one row per
//! line) for `shared/tools/loghub_score.py`.
//!
//! ```text
//! cargo run -p logs --release --example loghub -- ../shared/datasets/loghub-dev \
//!     [--out DIR] [--reps N] [--config JSON] [--ablation] [--loso]
//! ```
//!
//! This is what `heal bench loghub DIR` will print; it calls the same
//! `logs::loghub` functions.
//!
//! `--ablation` flips each rule and threshold of the configuration one at a
//! time and prints the change of GA and PA per system: which systems a rule
//! helps or hurts.
//!
//! `--loso` is the honesty check for "one configuration for all systems":
//! for each system S, every rule and threshold is chosen again on the other
//! systems only (coordinate ascent from the given configuration over the
//! same knobs as `--ablation`, objective mean GA + mean PA), and S is scored
//! with that choice. A rule that only S needs is dropped for S.

use std::path::{Path, PathBuf};
use std::time::Instant;

use logs::loghub::{self, Prepared};
use logs::{mean, MinerConfig};

struct Args {
    dir: PathBuf,
    out: Option<PathBuf>,
    reps: usize,
    config: MinerConfig,
    ablation: bool,
    loso: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut dir = None;
    let mut out = None;
    let mut reps = 5;
    let mut config = MinerConfig::default();
    let (mut ablation, mut loso) = (false, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ablation" => ablation = true,
            "--loso" => loso = true,
            "--out" => out = Some(PathBuf::from(it.next().ok_or("--out needs a directory")?)),
            "--reps" => {
                reps = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--reps needs a positive number")?
            }
            "--config" => {
                let json = it.next().ok_or("--config needs JSON")?;
                config = serde_json::from_str(&json).map_err(|e| format!("--config: {e}"))?;
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("usage: loghub DIR [--out DIR] [--reps N] [--config JSON]")?,
        out,
        reps,
        config,
        ablation,
        loso,
    })
}

/// Systems of `dir`: sub-directories holding `<Sys>_2k.log_structured_corrected.csv`,
/// in the README's order first.
fn systems(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut found: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|s| truth_path(dir, s).is_file())
        .collect();
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

fn load(dir: &Path, sys: &str) -> Result<Prepared, String> {
    let truth = std::fs::read_to_string(truth_path(dir, sys)).map_err(|e| format!("{sys}: {e}"))?;
    let log_path = dir.join(sys).join(format!("{sys}_2k.log"));
    let log = std::fs::read_to_string(&log_path).ok();
    loghub::prepare(sys, log.as_deref(), &truth, loghub::known_format(sys))
        .map_err(|e| e.to_string())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(64);
        }
    };
    let systems = match systems(&args.dir) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            eprintln!(
                "{}: no <Sys>/<Sys>_2k.log_structured_corrected.csv",
                args.dir.display()
            );
            std::process::exit(64);
        }
        Err(e) => {
            eprintln!("{}: {e}", args.dir.display());
            std::process::exit(64);
        }
    };
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).expect("create --out directory");
    }
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>12} {:>12} {:>9} {:>8}",
        "system",
        "lines",
        "true_g",
        "pred_g",
        "GA",
        "PA",
        "FGA",
        "mine/s",
        "header+mine/s",
        "templates",
        "KiB"
    );
    let mut all = Vec::new();
    let mut online = Vec::new();
    let mut total_lines = 0usize;
    let mut total_secs = 0f64;
    let mut total_parse = 0f64;
    for sys in &systems {
        let p = match load(&args.dir, sys) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        if p.content_mismatches > 0 {
            eprintln!(
                "{sys}: {} messages differ from the Content column",
                p.content_mismatches
            );
        }
        let mut best = f64::INFINITY;
        let mut mined = None;
        for _ in 0..args.reps {
            let t = Instant::now();
            let m = loghub::mine_messages(&p.messages, &args.config).expect("valid config");
            best = best.min(t.elapsed().as_secs_f64());
            mined = Some(m);
        }
        let mined = mined.expect("at least one rep");
        // Header parsing of the raw log text in memory, timed the same way.
        let mut parse = f64::NAN;
        if let (Some(layout), Ok(text)) = (
            loghub::known_format(sys),
            std::fs::read_to_string(args.dir.join(sys).join(format!("{sys}_2k.log"))),
        ) {
            let fmt = logs::LoghubFormat::new(&logs::LoghubFormatConfig::new(layout))
                .expect("known layout");
            parse = f64::INFINITY;
            for _ in 0..args.reps {
                let t = Instant::now();
                let m = loghub::messages(&text, sys, &fmt).expect("parsed above");
                parse = parse.min(t.elapsed().as_secs_f64());
                std::hint::black_box(m);
            }
            total_parse += parse;
        }
        let s = loghub::score_mined(&p.truth, &mined).expect("same lengths");
        online
            .push(logs::score(&p.truth, &mined.online_ids, None::<&[&str]>).expect("same lengths"));
        total_lines += p.messages.len();
        total_secs += best;
        println!(
            "{:<12} {:>6} {:>6} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>12.0} {:>12.0} {:>9} {:>8.1}{}",
            sys,
            s.lines,
            s.true_groups,
            s.predicted_groups,
            s.ga,
            s.pa.unwrap_or(f64::NAN),
            s.fga,
            p.messages.len() as f64 / best,
            p.messages.len() as f64 / (best + parse),
            mined.templates,
            mined.memory_bytes as f64 / 1024.0,
            if p.from_log { "" } else { "  (Content column)" }
        );
        if let Some(out) = &args.out {
            let f = std::fs::File::create(out.join(format!("{sys}.csv"))).expect("create csv");
            loghub::write_templates_csv(std::io::BufWriter::new(f), &mined).expect("write csv");
        }
        all.push(s);
    }
    let (ga, pa, fga) = mean(&all);
    let (oga, _, ofga) = mean(&online);
    let systems_data: Vec<Prepared> = if args.ablation || args.loso {
        systems
            .iter()
            .map(|s| load(&args.dir, s).expect("loaded above"))
            .collect()
    } else {
        Vec::new()
    };
    let mut eval = Evaluator::new(&systems_data);
    if args.ablation {
        ablation(&mut eval, &args.config);
    }
    if args.loso {
        loso(
            &mut eval,
            &args.config,
            &args.config,
            "from the given configuration (ties keep it)",
        );
        loso(
            &mut eval,
            &minimal(),
            &args.config,
            "from the digits rule alone (a rule or threshold is taken only if it is strictly better on the other systems)",
        );
    }
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>12.0} {:>12.0}",
        format!("mean({})", all.len()),
        "",
        "",
        "",
        ga,
        pa.unwrap_or(f64::NAN),
        fga,
        total_lines as f64 / total_secs,
        total_lines as f64 / (total_secs + total_parse)
    );
    println!(
        "grouped by the id each line got when it was mined (no later merge applied): mean GA {oga:.4}, FGA {ofga:.4}"
    );
    memory_at_cap(&args.config);
}

/// Fills a miner to its template cap with distinct statements of about 100
/// bytes, then sends as many distinct forms again, and prints its memory.
fn memory_at_cap(config: &MinerConfig) {
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
    let mut m = logs::TemplateMiner::new(config.clone()).expect("valid config");
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
        bytes as f64 / m.len() as f64
    );
}

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
