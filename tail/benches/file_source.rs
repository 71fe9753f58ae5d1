//! A file log source end to end, one core: read a file with the [`Tailer`]
//! (from its checkpoint, lines split), parse each line's header
//! (`<Date> <Time> <Level> <Component>: <Content>`, Loghub's syntax), mine
//! its message into a template, and count it the way a log source's signals
//! do (lines at level ERROR matching a regex, and lines per template). What
//! `ingest::log_source` does per slot, short of building the evaluations.
//!
//! The file: 200,000 seeded lines (about 18 MB) from 40 logging statements
//! with numbers, addresses, ids and durations in them, written before timing.
//! Each iteration tails it from offset 0 with a fresh tailer and a miner
//! that has seen the stream once (a running source's steady state).
//!
//! ```text
//! cargo bench -p tail --bench file_source
//! ```

use std::collections::HashMap;
use std::io::Write;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use logs::{FormatConfig, LineFormat, LoghubFormatConfig, MinerConfig, TemplateMiner};
use tail::{ReadFrom, TailConfig, Tailer};

const LINES: usize = 200_000;

/// SplitMix64: a seeded generator, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn message(rng: &mut Rng) -> (String, &'static str) {
    let statement = rng.next() % 40;
    let a = rng.next() % 100_000;
    let b = rng.next() % 1_000;
    let level = if statement % 13 == 0 { "ERROR" } else { "INFO" };
    let text = match statement % 8 {
        0 => format!(
            "connection to 10.0.{}.{}:5432 refused (attempt {b}) s{statement}",
            a % 256,
            b % 256
        ),
        1 => format!("GET /api/v1/items/{a} 200 in {b} ms s{statement}"),
        2 => format!("session {a:x}-{b:x} opened for user u{b} s{statement}"),
        3 => format!("flushed {a} bytes to /var/lib/app/seg-{b}.log in {b}ms s{statement}"),
        4 => format!(
            "worker {b} picked job {a} from queue q{} s{statement}",
            b % 7
        ),
        5 => format!(
            "cache miss ratio {}.{:02} over {b} keys s{statement}",
            a % 10,
            b % 100
        ),
        6 => format!("request id={a} status=ok elapsed={b}ms s{statement}"),
        _ => format!("heartbeat from node-{} lag {b} ms s{statement}", a % 32),
    };
    (text, level)
}

fn write_log(path: &std::path::Path) -> u64 {
    let mut rng = Rng(42);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..LINES {
        let (text, level) = message(&mut rng);
        writeln!(
            out,
            "2026-12-05 10:{:02}:{:02},{:03} {level} app.core: {text}",
            i / 60_000 % 60,
            i / 1000 % 60,
            i % 1000
        )
        .unwrap();
    }
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Tails the whole file once: parse, mine, count. Returns (lines, errors).
fn run(
    path: &std::path::Path,
    format: &LineFormat,
    miner: &mut TemplateMiner,
    pattern: &regex::Regex,
) -> (usize, usize) {
    let mut config = TailConfig::new(vec![path.display().to_string()]);
    config.read_from = ReadFrom::Beginning;
    let mut tailer = Tailer::new(config, Vec::new());
    let mut lines = Vec::with_capacity(64 * 1024);
    let mut per_template: HashMap<logs::TemplateId, u64> = HashMap::new();
    let (mut total, mut errors) = (0, 0);
    loop {
        lines.clear();
        let problems = tailer.poll(&mut lines);
        assert!(problems.is_empty(), "{problems:?}");
        if lines.is_empty() {
            break;
        }
        for line in &lines {
            total += 1;
            let record = format.parse(line).expect("every line has the header");
            let outcome = miner.add(&record.message);
            *per_template.entry(outcome.id).or_default() += 1;
            let error = record
                .fields
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("level") && v.trim() == "ERROR");
            if error && pattern.is_match(&record.message) {
                errors += 1;
            }
        }
    }
    black_box(&per_template);
    (total, errors)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let bytes = write_log(&path);
    let format = LineFormat::new(&FormatConfig::LogFormat(LoghubFormatConfig::new(
        "<Date> <Time> <Level> <Component>: <Content>",
    )))
    .unwrap();
    let pattern = regex::Regex::new("refused").unwrap();
    let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
    let (n, errors) = run(&path, &format, &mut miner, &pattern);
    assert_eq!(n, LINES);
    assert!(errors > 0);
    eprintln!(
        "file: {LINES} lines, {:.1} MB, {} templates, {errors} error lines matched",
        bytes as f64 / 1e6,
        miner.len()
    );
    let mut group = c.benchmark_group("file_source");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(10);
    group.bench_function("tail+parse+mine+count", |b| {
        b.iter(|| run(&path, &format, &mut miner, &pattern))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
