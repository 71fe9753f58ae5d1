//! Score the default detector (or a variant) on a NAB-style corpus.
//!
//! ```text
//! cargo run --release -p detect --example nabdev -- <NAB_DIR> [field=value ...]
//! ```
//!
//! `NAB_DIR` holds `data/<category>/<name>.csv` (header `timestamp,value`,
//! timestamps `YYYY-MM-DD HH:MM:SS`) and `labels/combined_windows.json`.
//! Every `field=value` overrides one [`detect::DetectorConfig`] field (the
//! same names as in a runbook), e.g. `threshold=0.4 direction=up`. One
//! configuration runs on every file. The example prints, for NAB's three
//! cost profiles, the normalised score at the best corpus-wide threshold and
//! at the configuration's own `threshold`. Environment switches:
//! - `PERFILE=1`: each file's standard-profile result at that threshold;
//! - `DIAG=1`: per file, the top five scores outside windows and the best
//!   score in each window (with its relative position in the window);
//! - `GAUSS=1`: the highest score and the number of alarms the
//!   configuration gives 100,000 one-minute samples of stationary Gaussian
//!   noise (five seeds), a check on its false-alarm rate.
//!
//! The detector runs online, one row at a time, exactly as in production;
//! the example only reads files and scores the result.

use detect::nab::{
    best_threshold, candidate_thresholds, corpus_score, windows_to_rows, NabFile, Profile,
};
use detect::{AdaptiveDetector, DetectorConfig};
use std::collections::BTreeMap;
use std::path::Path;

/// Milliseconds since the Unix epoch of `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
fn parse_ts(s: &str) -> Option<i64> {
    let n = |a: usize, l: usize| -> Option<i64> { s.get(a..a + l)?.parse().ok() };
    let (y, m, d) = (n(0, 4)?, n(5, 2)?, n(8, 2)?);
    let (hh, mm, ss) = (n(11, 2)?, n(14, 2)?, n(17, 2)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = None;
    let mut overrides = serde_json::Map::new();
    for a in std::env::args().skip(1) {
        match a.split_once('=') {
            Some((k, v)) => {
                let v = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.into()));
                overrides.insert(k.to_string(), v);
            }
            None => dir = Some(a),
        }
    }
    let dir = dir.ok_or("usage: nabdev <NAB_DIR> [field=value ...]")?;
    let dir = Path::new(&dir);
    let cfg: DetectorConfig = serde_json::from_value(serde_json::Value::Object(overrides))?;
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(format!("invalid configuration: {problems:?}").into());
    }
    let windows: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("labels/combined_windows.json"))?,
    )?;
    let mut files = Vec::new();
    let mut points = 0usize;
    let mut elapsed = std::time::Duration::ZERO;
    for (name, wins) in &windows {
        let text = std::fs::read_to_string(dir.join("data").join(name))?;
        let mut ts = Vec::new();
        let mut vals = Vec::new();
        for line in text.lines().skip(1) {
            let Some((t, v)) = line.split_once(',') else {
                continue;
            };
            let (Some(t), Ok(v)) = (parse_ts(t), v.trim().parse::<f64>()) else {
                continue;
            };
            ts.push(t);
            vals.push(v);
        }
        let t0 = std::time::Instant::now();
        let mut det = AdaptiveDetector::new(cfg.clone());
        let scores: Vec<f64> = ts
            .iter()
            .zip(&vals)
            .map(|(&t, &v)| det.update(t, v).score)
            .collect();
        elapsed += t0.elapsed();
        points += scores.len();
        let w: Vec<(i64, i64)> = wins
            .iter()
            .filter_map(|(a, b)| Some((parse_ts(a)?, parse_ts(b)?)))
            .collect();
        files.push(NabFile {
            name: name.clone(),
            scores,
            windows: windows_to_rows(&ts, &w),
        });
    }
    let cands = candidate_thresholds(&files, 2000);
    for p in Profile::ALL {
        let b = best_threshold(&files, &cands, p);
        let d = corpus_score(&files, cfg.threshold, p);
        println!(
            "{:20} best {:6.1} @ {:.4} (tp {} fn {} fp {})  default {:6.1} @ {} (tp {} fn {} fp {})",
            p.name, b.normalized, b.threshold, b.tp, b.fn_, b.fp, d.normalized, cfg.threshold,
            d.tp, d.fn_, d.fp
        );
    }
    if std::env::var_os("PERFILE").is_some() {
        println!(
            "{:58} {:>7} {:>3} {:>3} {:>3}",
            "file", "score", "tp", "fn", "fp"
        );
        for f in &files {
            let s = f.score(cfg.threshold, Profile::STANDARD);
            println!(
                "{:58} {:7.2} {:3} {:3} {:3}",
                f.name, s.score, s.tp, s.fn_, s.fp
            );
        }
    }
    if std::env::var_os("DIAG").is_some() {
        // Per file: the top scores outside windows, the best score per window.
        for f in &files {
            let pb = detect::nab::probation_rows(f.scores.len());
            let inside = |i: usize| f.windows.iter().any(|w| i >= w.start && i <= w.end);
            let mut out: Vec<f64> = (pb..f.scores.len())
                .filter(|&i| !inside(i))
                .map(|i| f.scores[i])
                .collect();
            out.sort_by(|a, b| b.total_cmp(a));
            out.truncate(5);
            let wmax: Vec<String> = f
                .windows
                .iter()
                .map(|w| {
                    let (i, m) = (w.start..=w.end)
                        .map(|i| (i, f.scores[i]))
                        .fold((w.start, 0.0), |a, b| if b.1 > a.1 { b } else { a });
                    format!(
                        "{m:.3}@{:.2}",
                        (i - w.start) as f64 / (w.end - w.start + 1) as f64
                    )
                })
                .collect();
            let out: Vec<String> = out.iter().map(|x| format!("{x:.3}")).collect();
            println!("{:50} out {:?} win {:?}", f.name, out, wmax);
        }
    }
    if std::env::var_os("GAUSS").is_some() {
        // Highest score the configuration gives stationary Gaussian noise
        // (100,000 one-minute samples, 5 seeds), and NAB just above it.
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut gmax: f64 = 0.0;
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let normal = rand_distr::Normal::new(100.0, 5.0)?;
            let mut det = AdaptiveDetector::new(cfg.clone());
            let (mut m, mut fires) = (0.0f64, 0);
            for i in 0..100_000 {
                let s = det.update(i * 60_000, normal.sample(&mut rng));
                m = m.max(s.score);
                fires += usize::from(s.excursion.is_some_and(|e| e.first));
            }
            print!("gauss{seed} max {m:.3} fires {fires}; ");
            gmax = gmax.max(m);
        }
        println!("gaussmax {gmax:.3}");
        // Score of a 6-sigma spike after 5000 samples of the same noise.
        let mut smin: f64 = 1.0;
        for seed in 0..20u64 {
            for k in [6.0, 7.0] {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 100);
                let normal = rand_distr::Normal::new(100.0, 5.0)?;
                let mut det = AdaptiveDetector::new(cfg.clone());
                for i in 0..5000 {
                    det.update(i * 60_000, normal.sample(&mut rng));
                }
                let s = det.update(5000 * 60_000, 100.0 + k * 5.0);
                print!("spike{k}σ {:.3}; ", s.score);
                if k == 6.0 {
                    smin = smin.min(s.score);
                }
            }
        }
        println!("spike6 min {smin:.3}");
    }
    eprintln!(
        "{points} points, detector time {elapsed:?} ({:.1} M points/s)",
        points as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}
