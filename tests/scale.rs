//! Scale-out through a real Kafka-protocol broker (tansu): `heal ingest`
//! produces keyed samples, three `heal detect` workers share them as one
//! consumer group, and one worker is SIGKILLed mid-stream.
//!
//! What must hold: every sample produced is scored, exactly once after
//! de-duplication by its (partition, offset), with the very score an
//! uninterrupted run of the same detector gives (so the survivors restored
//! the dead worker's detector state from the changelog rather than starting
//! cold), and the survivors take its partitions over within the session.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{create_tansu_broker, read_topic, Guard};
use heal::pipeline::SeriesScorer;
use heal::scale::ingest::Synthetic;
use heal::scale::wire::ScoreRecord;

const PARTITIONS: u32 = 4;
const RUNBOOK: &str = "signals:
  - name: queue_depth
    query: sum by (service, instance) (queue_depth)
";

fn synthetic() -> Synthetic {
    Synthetic {
        signal: "queue_depth".into(),
        series: 48,
        replicas: 3,
        steps: 250,
        start_ms: ingest::SYNTH_START_MS,
        step_ms: 10_000,
        seed: 7,
    }
}

fn worker(dir: &Path, brokers: &str, leases: &str, member: &str, changelog: bool) -> Guard {
    let out = std::fs::File::create(dir.join(format!("{member}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{member}.err"))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_heal"));
    cmd.args(["detect", "--brokers", brokers, "--member", member])
        .arg("--runbooks")
        .arg(dir.join("runbooks"))
        .args(["--checkpoint-every", "300ms", "--session-timeout", "6s"])
        .args(["--leases", leases]);
    if !changelog {
        cmd.arg("--no-changelog");
    }
    Guard(
        cmd.env("RUST_LOG", "warn")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting heal detect"),
    )
}

/// `common::wait_until`, printing every worker's events and log when it
/// times out.
fn wait_until<T>(dir: &Path, what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    dump(dir);
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Prints every worker's events (checkpoints aside) and the end of its log.
fn dump(dir: &Path) {
    for m in ["w1", "w2", "w3"] {
        let out = std::fs::read_to_string(dir.join(format!("{m}.out"))).unwrap_or_default();
        let err = std::fs::read_to_string(dir.join(format!("{m}.err"))).unwrap_or_default();
        let events: Vec<&str> = out.lines().filter(|l| !l.contains("checkpoint")).collect();
        let tail: Vec<&str> = err.lines().rev().take(10).collect();
        eprintln!("== {m}\n{}\n-- stderr (last lines, newest first)\n{}", events.join("\n"), tail.join("\n"));
    }
}

/// The events a worker printed so far.
fn events(dir: &Path, member: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("{member}.out")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The partitions a worker holds now, by its assigned and revoked events.
fn held(dir: &Path, member: &str) -> BTreeSet<i64> {
    let mut held = BTreeSet::new();
    for e in events(dir, member) {
        let parts = || {
            e["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_i64())
                .collect::<Vec<_>>()
        };
        match e["event"].as_str() {
            Some("assigned") => held.extend(parts()),
            Some("revoked") => held.retain(|p| !parts().contains(p)),
            _ => {}
        }
    }
    held
}

/// Samples committed so far: the highest offset any worker's checkpoint
/// committed, summed over the partitions.
fn committed(dir: &Path, members: &[&str]) -> u64 {
    let mut at: BTreeMap<String, u64> = BTreeMap::new();
    for e in members.iter().flat_map(|m| events(dir, m)) {
        if e["event"] == "checkpoint" {
            for (p, o) in e["offsets"].as_object().into_iter().flatten() {
                let o = o.as_u64().unwrap_or(0);
                let c = at.entry(p.clone()).or_default();
                *c = (*c).max(o);
            }
        }
    }
    at.values().sum()
}

fn scores(brokers: &str) -> Vec<ScoreRecord> {
    read_topic(brokers, "heal-scores", PARTITIONS as i32, Duration::from_secs(2))
        .into_iter()
        .map(|(_, _, v)| serde_json::from_slice(&v).expect("a score record"))
        .collect()
}

#[test]
fn a_killed_detect_worker_loses_no_sample_and_its_successors_score_as_it_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("runbooks")).unwrap();
    std::fs::write(dir.join("runbooks/queue.yaml"), RUNBOOK).unwrap();
    let (_broker, brokers) = create_tansu_broker(dir, &[
        ("heal-samples", PARTITIONS),
        ("heal-scores", PARTITIONS),
        ("heal-detect-changelog", PARTITIONS),
    ]);
    // The partitions are leased in PostgreSQL: tansu 0.6's group
    // coordinator does not reassign a dead member's partitions.
    let pg = lab::postgres::PgServer::start().expect("a PostgreSQL server");
    let members = ["w1", "w2", "w3"];
    // Members join one at a time, each once the group has settled: every
    // partition held by exactly one member, for a second.
    let mut workers: BTreeMap<&str, Guard> = BTreeMap::new();
    for (k, &m) in members.iter().enumerate() {
        workers.insert(m, worker(dir, &brokers, &pg.url(), m, true));
        let mut since: Option<Instant> = None;
        wait_until(dir, "the group to share the partitions", Duration::from_secs(60), || {
            let held: Vec<BTreeSet<i64>> = members[..=k].iter().map(|m| held(dir, m)).collect();
            let all: BTreeSet<i64> = held.iter().flatten().copied().collect();
            let settled = all.len() == PARTITIONS as usize
                && held.iter().map(|h| h.len()).sum::<usize>() == all.len()
                && held.iter().all(|h| !h.is_empty());
            if !settled {
                since = None;
                return None;
            }
            (since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1)).then_some(())
        });
    }

    // Samples arrive at 2,000 a second for six seconds.
    let synth = synthetic();
    let total = (synth.series * synth.steps) as u64;
    let ingest = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["ingest", "--brokers", &brokers, "--rate", "2000"])
        .arg("--runbooks")
        .arg(dir.join("runbooks"))
        .args(["--synth-series", &synth.series.to_string()])
        .args(["--synth-steps", &synth.steps.to_string()])
        .args(["--synth-replicas", &synth.replicas.to_string()])
        .args(["--seed", &synth.seed.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // Mid-stream, the worker holding the most partitions dies.
    wait_until(dir, "a third of the samples scored", Duration::from_secs(60), || {
        (committed(dir, &members) > total / 3).then_some(())
    });
    let victim = *members
        .iter()
        .max_by_key(|m| held(dir, m).len())
        .unwrap();
    let lost = held(dir, victim);
    assert!(!lost.is_empty());
    let mut dead = workers.remove(victim).unwrap();
    let killed_at = Instant::now();
    dead.0.kill().unwrap();
    dead.0.wait().unwrap();

    // The survivors take its partitions over, restoring their state.
    let survivors: Vec<&str> = members.iter().copied().filter(|m| *m != victim).collect();
    let takeover = wait_until(dir, "the survivors to restore the lost partitions", Duration::from_secs(60), || {
        let restored: BTreeSet<i64> = survivors
            .iter()
            .flat_map(|m| events(dir, m))
            .filter(|e| e["event"] == "restored" && e["series"].as_u64() > Some(0))
            .filter_map(|e| e["partition"].as_i64())
            .collect();
        lost.is_subset(&restored).then(|| killed_at.elapsed())
    });

    let published = ingest.wait_with_output().unwrap();
    assert!(published.status.success());
    let published: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(published["produced"].as_u64(), Some(total), "{published}");

    // Every sample scored; duplicates are the same score.
    let all = wait_until(dir, "every sample scored", Duration::from_secs(90), || {
        let all = scores(&brokers);
        let keys: BTreeSet<(i32, i64)> = all.iter().map(|s| (s.partition, s.offset)).collect();
        (keys.len() as u64 >= total).then_some(all)
    });
    let mut unique: BTreeMap<(i32, i64), &ScoreRecord> = BTreeMap::new();
    let mut duplicates = 0;
    for s in &all {
        match unique.get(&(s.partition, s.offset)) {
            Some(first) => {
                duplicates += 1;
                assert_eq!(first.score.to_bits(), s.score.to_bits(), "a duplicate scored differently: {first:?} {s:?}");
                assert_eq!((first.anomalous, first.first), (s.anomalous, s.first));
            }
            None => {
                unique.insert((s.partition, s.offset), s);
            }
        }
    }
    assert_eq!(unique.len() as u64, total, "scored once each after de-duplication");
    // Offsets are dense per partition: none skipped, none invented.
    for p in 0..PARTITIONS as i32 {
        let offsets: Vec<i64> = unique.keys().filter(|k| k.0 == p).map(|k| k.1).collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {p}");
    }

    // The score an uninterrupted run of each series' detector gives.
    let mut reference: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let signal: remediate::runbook::Signal =
        serde_json::from_value(serde_json::json!({"name": "queue_depth", "query": "q"})).unwrap();
    for i in 0..synth.series {
        let labels = synth.labels(i).to_string();
        let mut scorer = SeriesScorer::for_signal(&signal);
        for t in 0..synth.steps {
            let ts = synth.start_ms + t as i64 * synth.step_ms;
            let sample = scorer.admit(ts, synth.value(i, t)).unwrap();
            reference.insert((labels.clone(), ts), scorer.score(sample, None).scored.score.to_bits());
        }
    }
    let mut by_member: BTreeMap<&str, u64> = BTreeMap::new();
    let mut fired = 0;
    let mut differ = Vec::new();
    for s in unique.values() {
        assert_eq!(s.dropped, None, "{s:?}");
        if reference.get(&(s.series.clone(), s.ts_ms)) != Some(&s.score.to_bits()) {
            differ.push(s);
        }
        *by_member.entry(s.member.as_str()).or_default() += 1;
        fired += usize::from(s.first);
    }
    if !differ.is_empty() {
        dump(dir);
        let first: Vec<String> = differ.iter().take(5).map(|s| format!("{s:?}")).collect();
        panic!(
            "{} of {total} samples scored as no uninterrupted run would, the first:\n{}",
            differ.len(),
            first.join("\n")
        );
    }
    assert!(fired > 0, "the synthetic faults fire");
    for (m, n) in &by_member {
        println!("{m}: {n} samples scored (after de-duplication)");
    }
    println!(
        "produced {total}, score messages {}, duplicates {duplicates}, lost 0; takeover {:.1} s after the kill",
        all.len(),
        takeover.as_secs_f64()
    );
    assert!(takeover < Duration::from_secs(30), "takeover took {takeover:?}");
    drop(workers);
}
