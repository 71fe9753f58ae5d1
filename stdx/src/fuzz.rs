//! The seeded generator and mutators behind heal's property tests.
//!
//! Every parser of untrusted input (runbooks and the other YAML files, CSV
//! and NAB imports, Parquet datasets, Prometheus answers, the agent's and
//! the control API's request bodies, log lines) has a test that feeds it
//! valid inputs mutated at random and plain garbage, and asserts that it
//! returns (an error is fine) without panicking, within a bounded budget.
//!
//! Why our own generator instead of proptest: the inputs are byte strings
//! mutated from a valid example, which needs no strategy combinators, and
//! this keeps the property tests free of a dependency tree of their own
//! (stdx is std only). What proptest would add, shrinking, matters less here:
//! a failing case prints its seed and the input itself.
//!
//! Replaying: each test prints `property NAME: seed S, N cases` on stderr
//! (`cargo test -- --nocapture` shows it). `HEAL_FUZZ_SEED=S` runs the same
//! cases again; `HEAL_FUZZ_CASES=N` runs more (or fewer) than the default.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): tiny, fast and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`.
    ///
    /// # Panics
    ///
    /// If `items` is empty (a broken test).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that mean something to one parser or another: quotes, separators,
/// YAML indicators, JSON brackets, controls, a UTF-8 lead byte without its
/// tail, the largest byte.
const INTERESTING: &[u8] = b"\"',;:{}[]&*!|>-#%@`\\\n\r\t \x00\x1b\xc3\xff0123456789.eE+-";

/// Tokens worth splicing in whole: YAML anchors, aliases and tags, numbers
/// at the edges, long runs.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "!custom ",
    "!!str ",
    "<<: *a",
    "---\n",
    "...\n",
    "NaN",
    "-inf",
    "1e309",
    "-9223372036854775809",
    "18446744073709551616",
    "0x",
    "\"",
    "\"\"",
    "null",
    "[]",
    "{}",
    "\u{202e}",
    "\u{feff}",
];

/// One random mutation of `input`: flip, insert, delete, duplicate or
/// truncate bytes, splice a token, or repeat a slice many times.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len + 1);
            input.insert(i, *rng.pick(INTERESTING));
        }
        2 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below(16.min(len - i));
            input.drain(i..i + n);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below(64.min(len - i));
            let chunk = input[i..i + n].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, chunk);
        }
        4 if len > 0 => input.truncate(rng.below(len)),
        5 => {
            let i = rng.below(len + 1);
            let token = rng.pick(TOKENS).as_bytes();
            input.splice(i..i, token.iter().copied());
        }
        6 if len > 0 => {
            // A long run: how parsers cope with size (bounded: 4 KiB).
            let i = rng.below(len);
            let n = 1 + rng.below(8.min(len - i));
            let chunk = input[i..i + n].to_vec();
            let times = 1 + rng.below(4096 / n);
            let at = rng.below(input.len() + 1);
            let run: Vec<u8> = chunk.iter().copied().cycle().take(n * times).collect();
            input.splice(at..at, run);
        }
        7 if len > 0 => {
            let i = rng.below(len);
            input[i] = *rng.pick(INTERESTING);
        }
        _ => {
            let i = rng.below(len + 1);
            input.insert(i, rng.next_u64() as u8);
        }
    }
}

/// `base` with one to `max` random mutations.
pub fn mutated(rng: &mut Rng, base: &[u8], max: usize) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..1 + rng.below(max.max(1)) {
        mutate(rng, &mut out);
    }
    out
}

/// Random bytes, up to `max_len` of them, drawn mostly from
/// [`INTERESTING`].
pub fn garbage(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let n = rng.below(max_len + 1);
    (0..n)
        .map(|_| {
            if rng.one_in(4) {
                rng.next_u64() as u8
            } else {
                *rng.pick(INTERESTING)
            }
        })
        .collect()
}

/// The seed of a property test: `HEAL_FUZZ_SEED` if set, else one derived
/// from the clock, so that each run explores new cases and prints what it
/// explored.
///
/// # Panics
///
/// If `HEAL_FUZZ_SEED` is set but is not a number (a broken replay).
pub fn seed() -> u64 {
    match std::env::var("HEAL_FUZZ_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .expect("HEAL_FUZZ_SEED is a decimal u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42),
    }
}

/// How many cases: `HEAL_FUZZ_CASES` if set, else `default`.
///
/// # Panics
///
/// If `HEAL_FUZZ_CASES` is set but is not a number.
pub fn cases(default: usize) -> usize {
    match std::env::var("HEAL_FUZZ_CASES") {
        Ok(s) => s.trim().parse().expect("HEAL_FUZZ_CASES is a decimal count"),
        Err(_) => default,
    }
}

/// Runs a property: `cases` inputs made by `make` from one seeded generator,
/// each given to `check`. Prints the seed and the case count first; on a
/// panic, prints the seed, the case number and the input (escaped), then
/// fails the test with them.
///
/// # Panics
///
/// When `check` panics for some input: that is the test failing.
pub fn check<I: std::fmt::Debug>(
    name: &str,
    default_cases: usize,
    mut make: impl FnMut(&mut Rng) -> I,
    mut check: impl FnMut(&I),
) {
    let seed = seed();
    let cases = cases(default_cases);
    eprintln!("property {name}: seed {seed}, {cases} cases (replay with HEAL_FUZZ_SEED={seed})");
    let mut rng = Rng::new(seed);
    let watchdog = Watchdog::start(name, seed);
    for case in 0..cases {
        let input = make(&mut rng);
        watchdog.case(case);
        let result = catch_unwind(AssertUnwindSafe(|| check(&input)));
        if let Err(panic) = result {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)");
            let shown = format!("{input:?}");
            let shown: String = shown.chars().take(4000).collect();
            panic!(
                "property {name} failed at case {case} (HEAL_FUZZ_SEED={seed}): {what}\ninput: {shown}"
            );
        }
    }
    watchdog.stop();
    if let Some(kib) = peak_rss_kib() {
        assert!(
            kib < MAX_PEAK_RSS_KIB,
            "property {name} (HEAL_FUZZ_SEED={seed}): the test process peaked at {kib} KiB, over {MAX_PEAK_RSS_KIB}"
        );
    }
}

/// The peak resident memory a property test's process may reach (the whole
/// test binary, other tests included): far above what any of them needs, far
/// below what an unbounded expansion takes (an alias bomb went past 8 GB).
pub const MAX_PEAK_RSS_KIB: u64 = 2 * 1024 * 1024;

/// How long one case may run before the test is declared hung.
pub const HANG_SECS: u64 = 60;

/// The process's peak resident set (`VmHWM` of /proc/self/status), where
/// the system has one.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Declares a case hung after [`HANG_SECS`]: a hung parser cannot be
/// unwound, so the watchdog prints the seed and case and ends the process
/// (the test fails instead of hanging CI until its own timeout).
struct Watchdog {
    state: std::sync::Arc<(std::sync::Mutex<(usize, bool)>, std::sync::Condvar)>,
}

impl Watchdog {
    fn start(name: &str, seed: u64) -> Watchdog {
        use std::time::{Duration, Instant};
        let state = std::sync::Arc::new((std::sync::Mutex::new((0usize, false)), std::sync::Condvar::new()));
        let shared = state.clone();
        let name = name.to_owned();
        std::thread::spawn(move || {
            let (lock, wake) = &*shared;
            let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen = guard.0;
            let mut since = Instant::now();
            loop {
                if guard.1 {
                    return;
                }
                if guard.0 != seen {
                    seen = guard.0;
                    since = Instant::now();
                }
                if since.elapsed() > Duration::from_secs(HANG_SECS) {
                    eprintln!(
                        "property {name} hung at case {seen} (HEAL_FUZZ_SEED={seed}): over {HANG_SECS} s"
                    );
                    std::process::exit(101);
                }
                guard = wake
                    .wait_timeout(guard, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        });
        Watchdog { state }
    }

    fn case(&self, case: usize) {
        let mut guard = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = case;
    }

    fn stop(&self) {
        let mut guard = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 = true;
        self.state.1.notify_all();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_cases() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| mutated(&mut rng, b"signals:\n  - name: x\n", 4))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn check_reports_the_seed_and_input_of_a_failure() {
        let result = catch_unwind(|| {
            check("demo", 100, |rng| rng.below(10), |n| assert!(*n < 9, "too big"));
        });
        let panic = result.unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(text.starts_with("property demo failed at case "), "{text}");
        assert!(text.contains("HEAL_FUZZ_SEED="), "{text}");
        assert!(text.contains("too big\ninput: 9"), "{text}");
    }
}
