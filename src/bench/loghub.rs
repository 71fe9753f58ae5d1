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
