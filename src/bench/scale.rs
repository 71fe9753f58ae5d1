//! `heal bench scale`: samples through a real broker (tansu, started by
//! the bench) to 1, 2 and 4 `heal detect` workers (separate processes of
//! this very binary), end to end.
//!
//! Each round has a broker of its own: the samples, scores and changelog
//! topics, the workers joining one group, then `series × steps` synthetic
//! samples produced as fast as the broker takes them. A round ends when
//! the workers' committed offsets cover every sample. Figures per round:
//! samples a second from the first sample produced to the last commit;
//! each worker's share of the samples and its CPU time (from `/proc`),
//! and the CPU time per sample, which must stay flat as workers are added
//! (this machine has 2 cores: wall-clock speed-up stops at two, so the
//! figure that shows the work spreads is each worker's share, 1/N);
//! the consumer lag (samples produced, not yet committed) when the
//! producer finished; with `--kill` and two or more workers, the time from
//! SIGKILL of one worker until the survivors restored its partitions; and,
//! read back from the scores topic, duplicates and samples lost (must be
//! 0; a loss fails the bench).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::orchestrate::TempDir;
use lab::tansu::Tansu;

use crate::scale::detect::events;
use crate::scale::ingest::{publish, Synthetic};
use crate::{Error, Result};

/// What `heal bench scale` runs.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// The `heal` binary the workers run.
    pub heal: PathBuf,
    pub series: usize,
    pub steps: usize,
    /// Worker counts, one round each.
    pub workers: Vec<usize>,
    /// Partitions of each topic.
    pub partitions: u32,
    /// The workers' `--checkpoint-every`.
    pub checkpoint_every: String,
    /// Kill one worker half way (rounds of two or more workers).
    pub kill: bool,
    /// Workers keep no changelog (`--no-changelog`).
    pub no_changelog: bool,
}

impl Round {
    fn label(&self) -> String {
        match self.kill.as_str() {
            "No" => self.workers.to_string(),
            "WithChangelog" => format!("{} kill", self.workers),
            _ => format!("{} kill-nc", self.workers),
        }
    }
}

/// One worker's part of a round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerFigures {
    pub member: String,
    pub scored: u64,
    pub cpu_s: f64,
    pub killed: bool,
}

/// One round's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    pub workers: usize,
    /// `No`, or a worker killed a quarter of the way (`WithChangelog`,
    /// `WithoutChangelog`).
    pub kill: String,
    pub samples: u64,
    pub wall_s: f64,
    pub samples_per_s: f64,
    pub per_worker: Vec<WorkerFigures>,
    pub lag_at_ingest_end: u64,
    pub takeover_s: Option<f64>,
    pub restored_series: u64,
    /// The longest restore of a partition taken over after the kill, ms.
    pub restore_ms: Option<f64>,
    pub states_written: u64,
    pub score_messages: u64,
    pub duplicates: u64,
    pub lost: u64,
}

const RUNBOOK: &str = "signals:
  - name: queue_depth
    query: sum by (service, instance) (queue_depth)
";

struct Worker {
    member: String,
    child: Child,
    out: PathBuf,
    cpu_at_kill: Option<f64>,
}

impl Worker {
    fn events(&self) -> Vec<serde_json::Value> {
        events::parse(&std::fs::read_to_string(&self.out).unwrap_or_default())
    }

    fn held(&self) -> BTreeSet<i64> {
        events::held(&self.events())
    }

    fn cpu_s(&self) -> f64 {
        lab::procfs::cpu_ticks_of(self.child.id()).unwrap_or(0) as f64
            / lab::procfs::clock_ticks_per_second() as f64
    }
}

/// The highest committed offset per partition any worker reported.
fn committed(workers: &[Worker]) -> BTreeMap<i64, u64> {
    let all: Vec<serde_json::Value> = workers.iter().flat_map(|w| w.events()).collect();
    events::committed(&all)
}

fn failed(doing: &str, e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("bench scale: {doing}: {e}"))
}

/// What a round does besides scoring: nothing, or kill one worker a
/// quarter of the way (with or without the changelog).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    No,
    WithChangelog,
    WithoutChangelog,
}

fn round(cfg: &ScaleConfig, n: usize, leases: &str, kill: Kill) -> Result<Round> {
    let _span = tracing::info_span!("bench_scale", workers = n).entered();
    let dir = TempDir::new("heal-bench-scale")?;
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks)?;
    std::fs::write(runbooks.join("queue.yaml"), RUNBOOK)?;
    let set = remediate::RunbookSet::load_dir(&runbooks)?;
    // Durable (libsql): the memory engine skips the rest of a batch when a
    // fetch starts inside it (see `crate::scale`).
    let broker = Tansu::start_durable()?;
    let brokers = broker.brokers();
    for t in ["heal-samples", "heal-scores", "heal-detect-changelog"] {
        broker.create_topic(t, cfg.partitions)?;
    }
    let mut workers = Vec::new();
    for k in 0..n {
        let member = format!("w{k}");
        let out = dir.path().join(format!("{member}.out"));
        let mut cmd = Command::new(&cfg.heal);
        cmd.args(["detect", "--brokers", &brokers, "--member", &member])
            .arg("--runbooks")
            .arg(&runbooks)
            .args(["--checkpoint-every", &cfg.checkpoint_every])
            .args(["--session-timeout", "6s"])
            .args(["--group", &format!("heal-bench-{n}-{kill:?}")])
            .args(["--leases", leases]);
        if cfg.no_changelog || kill == Kill::WithoutChangelog {
            cmd.arg("--no-changelog");
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(
                dir.path().join(format!("{member}.err")),
            )?)
            .spawn()
            .map_err(|e| failed("starting a worker", e))?;
        workers.push(Worker {
            member,
            child,
            out,
            cpu_at_kill: None,
        });
    }
    let all_held =
        lab::orchestrate::wait_until(Duration::from_secs(90), Duration::from_millis(100), || {
            workers
                .iter()
                .flat_map(|w| w.held())
                .collect::<BTreeSet<_>>()
                .len()
                == cfg.partitions as usize
        });
    if all_held.is_none() {
        return Err(failed(
            "the group",
            "the workers did not share the partitions in 90 s",
        ));
    }

    let synth = Synthetic {
        signal: "queue_depth".into(),
        series: cfg.series,
        replicas: 4,
        steps: cfg.steps,
        start_ms: ingest::SYNTH_START_MS,
        step_ms: 10_000,
        seed: 42,
    };
    let total = (cfg.series * cfg.steps) as u64;
    let started = Instant::now();
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || publish(&brokers, "heal-samples", &set, synth.samples(), None))
    };
    let mut lag_at_ingest_end = None;
    let mut producer = Some(producer);
    // The victim, its partitions, when, and how many events each worker
    // had printed by then (a takeover is a restore printed after).
    let mut killed: Option<(BTreeSet<i64>, Instant, Vec<usize>)> = None;
    let mut takeover = None;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let done: u64 = committed(&workers).values().sum();
        if producer.as_ref().is_some_and(|p| p.is_finished()) {
            let published = producer
                .take()
                .unwrap()
                .join()
                .expect("the producer thread")?;
            if published.produced != total {
                return Err(failed(
                    "ingest",
                    format!("{} of {total} acknowledged", published.produced),
                ));
            }
            lag_at_ingest_end = Some(total.saturating_sub(done));
        }
        if kill != Kill::No && killed.is_none() && done >= total / 4 {
            let seen: Vec<usize> = workers.iter().map(|w| w.events().len()).collect();
            let victim = &mut workers[0];
            let lost = victim.held();
            victim.cpu_at_kill = Some(victim.cpu_s());
            victim
                .child
                .kill()
                .map_err(|e| failed("killing a worker", e))?;
            let _ = victim.child.wait();
            killed = Some((lost, Instant::now(), seen));
        }
        if let (Some((lost, at, seen)), None) = (&killed, takeover) {
            let restored: BTreeSet<i64> = workers[1..]
                .iter()
                .zip(&seen[1..])
                .flat_map(|(w, &seen)| w.events().into_iter().skip(seen))
                .filter(|e| e["event"] == "restored")
                .filter_map(|e| e["partition"].as_i64())
                .collect();
            if lost.is_subset(&restored) {
                takeover = Some(at.elapsed().as_secs_f64());
            }
        }
        let taken_over = killed.is_none() || takeover.is_some();
        if done >= total && producer.is_none() && taken_over {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(failed(
                "the round",
                format!("{done} of {total} committed after 30 min"),
            ));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let mut per_worker = Vec::new();
    let mut restored_series = 0;
    let mut restore_ms: Option<f64> = None;
    let mut states_written = 0;
    for w in &mut workers {
        let cpu = w.cpu_at_kill.unwrap_or_else(|| w.cpu_s());
        if w.cpu_at_kill.is_none() {
            lab::orchestrate::terminate(&mut w.child, Duration::from_secs(30));
        }
        let events = w.events();
        let scored = events
            .iter()
            .rev()
            .find(|e| e["event"] == "stopped")
            .and_then(|e| e["stats"]["scored"].as_u64());
        // A killed worker printed no totals: its checkpoints say what it
        // committed (what it scored after its last one was scored again).
        let scored = scored.unwrap_or_else(|| events::committed(&events).values().sum());
        for e in &events {
            if e["event"] == "restored" && e["series"].as_u64() > Some(0) {
                restored_series += e["series"].as_u64().unwrap_or(0);
                let ms = e["ms"].as_f64().unwrap_or(0.0);
                restore_ms = Some(restore_ms.map_or(ms, |m: f64| m.max(ms)));
            }
            if e["event"] == "stopped" {
                states_written += e["stats"]["states_written"].as_u64().unwrap_or(0);
            }
        }
        per_worker.push(WorkerFigures {
            member: w.member.clone(),
            scored,
            cpu_s: cpu,
            killed: w.cpu_at_kill.is_some(),
        });
    }
    let (messages, keys) = read_scores(&brokers, cfg.partitions)?;
    let distinct = keys.len() as u64;
    if distinct < total {
        // Which (partition, offset) ranges have no score, the first few.
        let mut missing: Vec<(i32, i64, i64)> = Vec::new();
        for p in 0..cfg.partitions as i32 {
            let offsets: Vec<i64> = keys.range((p, 0)..(p + 1, 0)).map(|k| k.1).collect();
            let mut expect = 0;
            for o in offsets {
                if o > expect {
                    missing.push((p, expect, o - 1));
                }
                expect = o + 1;
            }
        }
        tracing::error!(missing = ?&missing[..missing.len().min(20)], "samples without a score (partition, first, last)");
        // Kept for a look: the workers' events and logs.
        let keep = std::env::temp_dir().join(format!("heal-bench-scale-lost-{n}-{kill:?}"));
        let _ = std::fs::create_dir_all(&keep);
        for e in std::fs::read_dir(dir.path())?.flatten() {
            let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
        }
        tracing::error!(dir = %keep.display(), "samples lost; the workers' logs are kept");
    }
    Ok(Round {
        workers: n,
        kill: format!("{kill:?}"),
        samples: total,
        wall_s: wall,
        samples_per_s: total as f64 / wall,
        per_worker,
        lag_at_ingest_end: lag_at_ingest_end.unwrap_or(0),
        takeover_s: takeover,
        restored_series,
        restore_ms,
        states_written,
        score_messages: messages,
        duplicates: messages - distinct,
        lost: total.saturating_sub(distinct),
    })
}

/// Messages on the scores topic, and distinct (partition, offset) keys.
fn read_scores(brokers: &str, partitions: u32) -> Result<(u64, BTreeSet<(i32, i64)>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "heal-bench-scale-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| failed("reading the scores", e))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset("heal-scores", p, Offset::Beginning)
            .map_err(|e| failed("reading the scores", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| failed("reading the scores", e))?;
    let mut keys: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut messages = 0u64;
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::message::Message;
                messages += 1;
                last = Instant::now();
                if let Some(Ok(s)) = m
                    .payload()
                    .map(serde_json::from_slice::<crate::scale::wire::ScoreRecord>)
                {
                    keys.insert((s.partition, s.offset));
                }
            }
            Some(Err(e)) => return Err(failed("reading the scores", e)),
            None => {}
        }
    }
    Ok((messages, keys))
}

/// Runs every round; the table, and the rounds as JSON lines after it.
pub fn run(cfg: &ScaleConfig) -> Result<String> {
    // Partitions are leased in PostgreSQL (tansu's group coordinator does
    // not reassign a dead member's partitions; see `crate::scale`).
    let pg = lab::postgres::PgServer::start()?;
    let mut rounds = Vec::new();
    for &n in &cfg.workers {
        rounds.push(round(cfg, n, &pg.url(), Kill::No)?);
    }
    // The takeover, apart (its wait is not throughput): two workers, one
    // killed a quarter of the way; with the changelog the survivor restores
    // the dead one's detectors, without it they start cold.
    if cfg.kill {
        rounds.push(round(cfg, 2, &pg.url(), Kill::WithChangelog)?);
        rounds.push(round(cfg, 2, &pg.url(), Kill::WithoutChangelog)?);
    }
    let mut out = format!(
        "heal bench scale: {} series x {} steps = {} samples through tansu, {} partitions, checkpoint every {}{}\n\n",
        cfg.series,
        cfg.steps,
        cfg.series * cfg.steps,
        cfg.partitions,
        cfg.checkpoint_every,
        if cfg.no_changelog { ", no changelog" } else { "" }
    );
    out.push_str(
        "workers  samples/s  wall s  lag@ingest-end  takeover s  restore ms  restored series  duplicates  lost   worker: share  cpu s  cpu us/sample\n",
    );
    for r in &rounds {
        let takeover = r.takeover_s.map_or("-".to_owned(), |t| format!("{t:.1}"));
        let restore = r.restore_ms.map_or("-".to_owned(), |t| format!("{t:.0}"));
        for (i, w) in r.per_worker.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "{:>7}  {:>9.0}  {:>6.1}  {:>14}  {:>10}  {:>10}  {:>15}  {:>10}  {:>4}",
                    r.label(),
                    r.samples_per_s,
                    r.wall_s,
                    r.lag_at_ingest_end,
                    takeover,
                    restore,
                    r.restored_series,
                    r.duplicates,
                    r.lost
                )
            } else {
                " ".repeat(103)
            };
            out.push_str(&format!(
                "{head}   {:>4}{}: {:>5.3}  {:>5.1}  {:>13.1}\n",
                w.member,
                if w.killed { "†" } else { " " },
                w.scored as f64 / r.samples as f64,
                w.cpu_s,
                if w.scored > 0 {
                    w.cpu_s * 1e6 / w.scored as f64
                } else {
                    0.0
                }
            ));
        }
    }
    out.push_str(
        "\n(kill: one of two workers SIGKILLed a quarter of the way, † (its share is what it committed); kill-nc: the same without the changelog, the survivor's detectors of the dead one's series start cold. restore ms: the longest restore of a partition taken over.)\n",
    );
    for r in &rounds {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    if let Some(r) = rounds.iter().find(|r| r.lost > 0) {
        return Err(failed(
            "lost samples",
            format!("{} with {} workers\n{out}", r.lost, r.workers),
        ));
    }
    Ok(out)
}
