//! Template mining throughput, messages in memory, one core.
//!
//! - `mine/synthetic/<T>`: a seeded stream of 20,000 messages from `T`
//!   logging statements (Zipf-like: a few statements write most lines), each
//!   with 1–4 variables (integers, decimals, IPv4:port, hex ids, paths, UUIDs,
//!   durations, `key=value`), mined by a miner that has already seen the
//!   stream once: the steady state of a running source (fast path: mask and
//!   one cache lookup per line).
//! - `mine/synthetic-cold/<T>`: the same stream into a fresh miner each
//!   iteration: template creation, matching and families included.
//! - `mask/synthetic`: the masker alone.
//! - `mine/loghub-dev` and `mine/loghub-dev-cold`: the 16,000 `Content`
//!   messages of `$LOGHUB_DIR` (e.g. `../shared/datasets/loghub-dev`), one
//!   miner per system as `heal bench loghub` does, when the variable is set.
//!   Files are read before timing.
//!
//! ```text
//! LOGHUB_DIR=../shared/datasets/loghub-dev cargo bench -p logs --bench miner
//! ```

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use logs::{loghub, MinerConfig, TemplateMiner};

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded generator, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Word(usize),
    Int,
    Decimal,
    IpPort,
    Hex,
    Path,
    Uuid,
    Duration,
    KeyValue(usize),
}

const WORDS: [&str; 40] = [
    "connection",
    "request",
    "failed",
    "to",
    "from",
    "user",
    "session",
    "opened",
    "closed",
    "block",
    "received",
    "sending",
    "retrying",
    "after",
    "timeout",
    "worker",
    "started",
    "stopped",
    "cache",
    "miss",
    "hit",
    "for",
    "with",
    "status",
    "error",
    "warning",
    "queue",
    "size",
    "is",
    "the",
    "of",
    "in",
    "served",
    "backend",
    "upstream",
    "latency",
    "commit",
    "offset",
    "partition",
    "rebalance",
];

fn statements(n: usize, rng: &mut Rng) -> Vec<Vec<Slot>> {
    (0..n)
        .map(|_| {
            let len = 5 + rng.below(11) as usize;
            let vars = 1 + rng.below(4) as usize;
            let mut slots: Vec<Slot> = (0..len)
                .map(|_| Slot::Word(rng.below(WORDS.len() as u64) as usize))
                .collect();
            for _ in 0..vars {
                let at = rng.below(len as u64) as usize;
                slots[at] = match rng.below(9) {
                    0 => Slot::Int,
                    1 => Slot::Decimal,
                    2 => Slot::IpPort,
                    3 => Slot::Hex,
                    4 => Slot::Path,
                    5 => Slot::Uuid,
                    6 => Slot::Duration,
                    7 => Slot::KeyValue(rng.below(WORDS.len() as u64) as usize),
                    _ => Slot::Int,
                };
            }
            slots
        })
        .collect()
}

fn render(slots: &[Slot], rng: &mut Rng, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    for (i, s) in slots.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let r = rng.next();
        let _ = match *s {
            Slot::Word(w) => write!(out, "{}", WORDS[w]),
            Slot::Int => write!(out, "{}", r % 100_000),
            Slot::Decimal => write!(out, "{}.{}", r % 1000, (r >> 20) % 100),
            Slot::IpPort => write!(
                out,
                "/10.{}.{}.{}:{}",
                r % 256,
                (r >> 8) % 256,
                (r >> 16) % 256,
                1024 + (r >> 24) % 60_000
            ),
            Slot::Hex => write!(out, "0x{:x}", r >> 20),
            Slot::Path => write!(
                out,
                "/var/lib/app/{}/part-{:05}.log",
                WORDS[(r % 40) as usize],
                (r >> 8) % 100_000
            ),
            Slot::Uuid => write!(
                out,
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                r as u32,
                (r >> 32) as u16,
                (r >> 48) as u16,
                (r >> 8) as u16,
                r >> 16
            ),
            Slot::Duration => write!(out, "{}ms", r % 5000),
            Slot::KeyValue(k) => write!(out, "{}={}", WORDS[k], r % 1000),
        };
    }
}

/// `lines` messages from `n` statements; statement `k` is drawn with weight
/// 1/(k+1) (Zipf, s = 1).
fn synthetic(n: usize, lines: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let stmts = statements(n, &mut rng);
    let weights: Vec<f64> = (0..n).map(|k| 1.0 / (k as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut buf = String::new();
    (0..lines)
        .map(|_| {
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let k = cdf.partition_point(|&c| c < u).min(n - 1);
            render(&stmts[k], &mut rng, &mut buf);
            buf.clone()
        })
        .collect()
}

fn bench_synthetic(c: &mut Criterion) {
    let mut group = c.benchmark_group("mine");
    for n in [10usize, 100, 1000] {
        let msgs = synthetic(n, 20_000, 42 + n as u64);
        group.throughput(Throughput::Elements(msgs.len() as u64));
        let mut warm = TemplateMiner::new(MinerConfig::default()).expect("default config");
        for m in &msgs {
            warm.add(m);
        }
        group.bench_with_input(BenchmarkId::new("synthetic", n), &msgs, |b, msgs| {
            b.iter(|| {
                for m in msgs {
                    black_box(warm.add(m));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("synthetic-cold", n), &msgs, |b, msgs| {
            b.iter(|| {
                let mut miner = TemplateMiner::new(MinerConfig::default()).expect("default config");
                for m in msgs {
                    black_box(miner.add(m));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mask");
    let msgs = synthetic(100, 20_000, 7);
    group.throughput(Throughput::Elements(msgs.len() as u64));
    let masker = TemplateMiner::new(MinerConfig::default()).expect("default config");
    let mut out = String::new();
    group.bench_function("synthetic", |b| {
        b.iter(|| {
            for m in &msgs {
                masker.masker().mask_into(m, &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();
}

fn bench_loghub(c: &mut Criterion) {
    let Ok(dir) = std::env::var("LOGHUB_DIR") else {
        return;
    };
    let mut systems: Vec<Vec<String>> = Vec::new();
    for (sys, _) in loghub::DEV_FORMATS {
        let path = format!("{dir}/{sys}/{sys}_2k.log_structured_corrected.csv");
        let Ok(csv) = std::fs::read_to_string(&path) else {
            continue;
        };
        let truth = loghub::read_truth(&csv, &path).expect("ground truth parses");
        systems.push(truth.contents);
    }
    let lines: usize = systems.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("mine");
    group.throughput(Throughput::Elements(lines as u64));
    let mut warm: Vec<TemplateMiner> = systems
        .iter()
        .map(|msgs| {
            let mut m = TemplateMiner::new(MinerConfig::default()).expect("default config");
            for x in msgs {
                m.add(x);
            }
            m
        })
        .collect();
    group.bench_function("loghub-dev", |b| {
        b.iter(|| {
            for (miner, msgs) in warm.iter_mut().zip(&systems) {
                for m in msgs {
                    black_box(miner.add(m));
                }
            }
        })
    });
    group.bench_function("loghub-dev-cold", |b| {
        b.iter(|| {
            for msgs in &systems {
                let mut miner = TemplateMiner::new(MinerConfig::default()).expect("default config");
                for m in msgs {
                    black_box(miner.add(m));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_synthetic, bench_loghub);
criterion_main!(benches);
