//! `heal bench journal`: the shared action journal on a real PostgreSQL
//! (`store::postgres`), several members racing to begin the same actions.
//!
//! A cluster of its own is started (`lab::postgres`). For each member count
//! asked (1, 2 and 4 by default), that many threads, each its own member
//! with its own connection, walk the same keys from different starting
//! points and try to begin each (then finish the ones they won), so every
//! key is contended. Figures: begin attempts a second, the latency of a
//! begin (median, p99), keys begun (must equal the keys), and keys begun
//! more than once (must be 0). A failure of that last figure fails the
//! bench.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lab::postgres::PgServer;
use remediate::action::ActionResult;
use store::{ActionKey, PgStore, StoreError};

use crate::{Error, Result};

/// What `heal bench journal` runs.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Member counts, one round each.
    pub members: Vec<usize>,
    /// Keys per round.
    pub keys: usize,
}

/// One member's round: the keys it won, its refusals and its latencies.
struct MemberRun {
    won: Vec<usize>,
    refused: usize,
    latencies: Vec<Duration>,
}

fn member_round(
    url: &str,
    name: &str,
    round: usize,
    keys: usize,
    offset: usize,
    go: &Barrier,
) -> Result<MemberRun> {
    let mut store = PgStore::open_as(url, name)?;
    let mut run = MemberRun {
        won: Vec::new(),
        refused: 0,
        latencies: Vec::with_capacity(keys),
    };
    go.wait();
    for i in 0..keys {
        let k = (i + offset) % keys;
        let key = ActionKey::new(format!("r{round}-inc-{k:06}"), 1, 1);
        let t0 = Instant::now();
        match store.begin_action(&key, "exec true", 0, None) {
            Ok(()) => {
                run.latencies.push(t0.elapsed());
                run.won.push(k);
                store.finish_action(
                    &key,
                    &ActionResult {
                        ok: true,
                        retryable: false,
                        summary: "exit status 0".into(),
                        output: String::new(),
                        duration: Duration::from_millis(1),
                    },
                    1,
                )?;
            }
            Err(StoreError::DuplicateAction { .. }) => {
                run.latencies.push(t0.elapsed());
                run.refused += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(run)
}

/// Runs the bench and prints its table.
///
/// # Errors
///
/// PostgreSQL could not be started or a member failed, or a key was
/// begun other than once.
pub fn run(cfg: &JournalConfig) -> Result<()> {
    if cfg.keys == 0 || cfg.members.contains(&0) {
        return Err(Error::Usage(
            "--keys and each --members must be at least 1".into(),
        ));
    }
    let pg = PgServer::start()?;
    let url = pg.url();
    drop(PgStore::open(&url)?);
    println!(
        "shared action journal on PostgreSQL ({}), {} keys a round, every key contended by every member",
        lab::postgres::bin_dir()?.display(),
        cfg.keys
    );
    println!(
        "{:>7} {:>12} {:>10} {:>10} {:>8} {:>9} {:>12}",
        "members", "attempts/s", "begin p50", "begin p99", "begun", "refused", "begun twice"
    );
    let mut failures = Vec::new();
    for (round, &members) in cfg.members.iter().enumerate() {
        let go = Arc::new(Barrier::new(members));
        let started = Instant::now();
        let handles: Vec<_> = (0..members)
            .map(|m| {
                let (url, go) = (url.clone(), go.clone());
                let keys = cfg.keys;
                std::thread::spawn(move || {
                    member_round(
                        &url,
                        &format!("member-{m}"),
                        round,
                        keys,
                        m * keys / members,
                        &go,
                    )
                })
            })
            .collect();
        let mut begun = vec![0u32; cfg.keys];
        let mut refused = 0;
        let mut latencies = Vec::new();
        for h in handles {
            let run = h
                .join()
                .map_err(|_| Error::msg("a member thread panicked"))??;
            for k in run.won {
                begun[k] += 1;
            }
            refused += run.refused;
            latencies.extend(run.latencies);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let once = begun.iter().filter(|&&n| n == 1).count();
        let twice = begun.iter().filter(|&&n| n > 1).count();
        println!(
            "{members:>7} {:>12.0} {:>8.2}ms {:>8.2}ms {:>8} {:>9} {:>12}",
            (members * cfg.keys) as f64 / elapsed,
            super::percentile_ms(&latencies, 0.5),
            super::percentile_ms(&latencies, 0.99),
            once,
            refused,
            twice
        );
        if twice > 0 || once != cfg.keys {
            failures.push(format!(
                "{members} members: {once} of {} keys begun once, {twice} more than once",
                cfg.keys
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::msg(failures.join("; ")))
    }
}
