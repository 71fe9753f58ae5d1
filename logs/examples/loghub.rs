//! Mines every system of a Loghub-2k directory (laid out as
//! `shared/datasets/loghub-dev`) and prints, per system and on average, GA, PA
//! and FGA against the corrected ground truth and the mining throughput; with
//! `--out DIR`, writes `DIR/<Sys>.csv` (`template_id,template`, one row per
//! line) for `shared/tools/loghub_score.py`.
//!
//! ```text
//! cargo run -p logs --release --example loghub -- ../shared/datasets/loghub-dev [--out DIR] [--reps N]
//! ```
//!
//! This is what `heal bench loghub DIR` will print; it calls the same
//! `logs::loghub` functions.

use std::path::{Path, PathBuf};
use std::time::Instant;

use logs::loghub::{self, Prepared};
use logs::{mean, MinerConfig};

struct Args {
    dir: PathBuf,
    out: Option<PathBuf>,
    reps: usize,
    config: MinerConfig,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut dir = None;
    let mut out = None;
    let mut reps = 5;
    let mut config = MinerConfig::default();
    while let Some(a) = it.next() {
        match a.as_str() {
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
        "{:<12} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>12} {:>9} {:>8}",
        "system", "lines", "true_g", "pred_g", "GA", "PA", "FGA", "lines/s", "templates", "KiB"
    );
    let mut all = Vec::new();
    let mut total_lines = 0usize;
    let mut total_secs = 0f64;
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
        let s = loghub::score_mined(&p.truth, &mined).expect("same lengths");
        total_lines += p.messages.len();
        total_secs += best;
        println!(
            "{:<12} {:>6} {:>6} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>12.0} {:>9} {:>8.1}{}",
            sys,
            s.lines,
            s.true_groups,
            s.predicted_groups,
            s.ga,
            s.pa.unwrap_or(f64::NAN),
            s.fga,
            p.messages.len() as f64 / best,
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
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>12.0}",
        format!("mean({})", all.len()),
        "",
        "",
        "",
        ga,
        pa.unwrap_or(f64::NAN),
        fga,
        total_lines as f64 / total_secs
    );
}
