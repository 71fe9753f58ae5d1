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

use common::{read_topic, Guard};
use heal::pipeline::SeriesScorer;
use heal::scale::detect::events as detect_events;
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
    for m in ["w1", "w2", "w3", "r1", "r2"] {
        let out = std::fs::read_to_string(dir.join(format!("{m}.out"))).unwrap_or_default();
        let err = std::fs::read_to_string(dir.join(format!("{m}.err"))).unwrap_or_default();
        let events: Vec<&str> = out.lines().filter(|l| !l.contains("checkpoint")).collect();
        let tail: Vec<&str> = err.lines().rev().take(10).collect();
        eprintln!(
            "== {m}\n{}\n-- stderr (last lines, newest first)\n{}",
            events.join("\n"),
            tail.join("\n")
        );
    }
}

/// The events a worker printed so far.
fn events(dir: &Path, member: &str) -> Vec<serde_json::Value> {
    detect_events::parse(
        &std::fs::read_to_string(dir.join(format!("{member}.out"))).unwrap_or_default(),
    )
}

/// The partitions a worker holds now, by its assigned and revoked events.
fn held(dir: &Path, member: &str) -> BTreeSet<i64> {
    detect_events::held(&events(dir, member))
}

/// The partitions named by `member`'s `event` events after its first
/// `skip` events (`restored` names one, `assigned` and `revoked` several).
fn partitions_since(dir: &Path, member: &str, skip: usize, event: &str) -> BTreeSet<i64> {
    events(dir, member)
        .into_iter()
        .skip(skip)
        .filter(|e| e["event"] == event)
        .flat_map(|e| {
            let mut ps: Vec<i64> = e["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_i64())
                .collect();
            ps.extend(e["partition"].as_i64());
            ps
        })
        .collect()
}

/// Samples committed so far: the highest offset any worker's checkpoint
/// committed, summed over the partitions.
fn committed(dir: &Path, members: &[&str]) -> u64 {
    let all: Vec<serde_json::Value> = members.iter().flat_map(|m| events(dir, m)).collect();
    detect_events::committed(&all).values().sum()
}

fn scores(brokers: &str) -> Vec<ScoreRecord> {
    read_topic(
        brokers,
        "heal-scores",
        PARTITIONS as i32,
        Duration::from_secs(2),
    )
    .into_iter()
    .map(|(_, _, v)| serde_json::from_slice(&v).expect("a score record"))
    .collect()
}

/// Starts `members` one at a time with `start`, each once the group has
/// settled: every partition held by exactly one member, for a second.
fn settle<'a, T>(
    dir: &Path,
    members: &[&'a str],
    mut start: impl FnMut(&str) -> T,
) -> BTreeMap<&'a str, T> {
    let mut started = BTreeMap::new();
    for (k, &m) in members.iter().enumerate() {
        started.insert(m, start(m));
        let mut since: Option<Instant> = None;
        wait_until(
            dir,
            "the group to share the partitions",
            Duration::from_secs(60),
            || {
                let held: Vec<BTreeSet<i64>> = members[..=k].iter().map(|m| held(dir, m)).collect();
                let all: BTreeSet<i64> = held.iter().flatten().copied().collect();
                let settled = all.len() == PARTITIONS as usize
                    && held.iter().map(|h| h.len()).sum::<usize>() == all.len()
                    && held.iter().all(|h| !h.is_empty());
                if !settled {
                    since = None;
                    return None;
                }
                (since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1))
                    .then_some(())
            },
        );
    }
    started
}

/// A test's world: its directory with the runbook, a broker with the three
/// topics, and PostgreSQL for the leases (tansu 0.6's group coordinator
/// does not reassign a dead member's partitions).
struct World {
    dir: tempfile::TempDir,
    broker: lab::tansu::Tansu,
    pg: lab::postgres::PgServer,
    /// The Docker networks the containers of [`World::on_networks`] join:
    /// the broker's, then the database's.
    nets: Vec<Net>,
}

/// A private Docker network of this test process (removed on drop, after
/// the containers on it: they are dropped first).
struct Net {
    name: String,
    /// The host's address on it: a server for the containers listens there.
    gateway: String,
}

impl Net {
    fn create(role: &str) -> Net {
        // Unique per test too: the tests of this file run at once.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("heal-scale-{role}-{}-{n}", std::process::id());
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
        let out = Command::new("docker")
            .args(["network", "create", &name])
            .output()
            .expect("docker");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("docker")
            .args([
                "network",
                "inspect",
                "-f",
                "{{(index .IPAM.Config 0).Gateway}}",
                &name,
            ])
            .output()
            .unwrap();
        let gateway = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            gateway.parse::<std::net::IpAddr>().is_ok(),
            "gateway {gateway:?}"
        );
        Net { name, gateway }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// A container of heal's image on the world's networks, running `args`;
/// its output in `dir/MEMBER.out` and `.err` (the attached `docker start`
/// client is a child of the test); removed on drop.
struct Container {
    name: String,
    client: std::process::Child,
}

impl Container {
    /// Cuts it off network `net` (`connect: false`) or joins it again.
    fn network(&self, net: &Net, connect: bool) {
        let verb = if connect { "connect" } else { "disconnect" };
        let out = Command::new("docker")
            .args(["network", verb, &net.name, &self.name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Container {
    /// Its addresses on its networks.
    fn ips(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                &self.name,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

/// A partition between some containers and one server of this host: their
/// packets to its TCP port dropped (iptables, INPUT) until this is
/// dropped; the rest of the network stays as it was. A container reaches
/// every address of the host through its own network's gateway, so
/// leaving the server's network would not cut it off.
struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    fn new(ips: &[String], port: u16) -> Partition {
        let rules: Vec<Vec<String>> = ips
            .iter()
            .map(|ip| {
                [
                    "INPUT",
                    "-s",
                    ip,
                    "-p",
                    "tcp",
                    "--dport",
                    &port.to_string(),
                    "-j",
                    "DROP",
                ]
                .map(str::to_owned)
                .to_vec()
            })
            .collect();
        for rule in &rules {
            let out = Command::new("iptables")
                .arg("-I")
                .args(rule)
                .output()
                .expect("iptables");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Partition { rules }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).output();
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl World {
    /// The broker on one Docker network's gateway and PostgreSQL on
    /// another's, for members that run as containers on both (and so can
    /// be cut off from either, or both).
    fn on_networks() -> World {
        let nets = vec![Net::create("data"), Net::create("db")];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        std::fs::write(dir.path().join("runbooks/queue.yaml"), RUNBOOK).unwrap();
        let broker = lab::tansu::Tansu::start_durable_on(&nets[0].gateway).expect("a tansu broker");
        for topic in ["heal-samples", "heal-scores", "heal-detect-changelog"] {
            broker.create_topic(topic, PARTITIONS).unwrap();
        }
        let pg = lab::postgres::PgServer::start_on(&nets[1].gateway).expect("a PostgreSQL server");
        World {
            dir,
            broker,
            pg,
            nets,
        }
    }

    /// Runs heal `args` as container `member` on both networks, the
    /// runbooks mounted at `/runbooks`, actions written to `/actions`.
    fn container(&self, image: &str, member: &str, args: &[&str]) -> Container {
        let name = format!("heal-{member}-{}", self.nets[0].name);
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        let dir = self.dir();
        std::fs::create_dir_all(dir.join("actions")).unwrap();
        let mut create = vec!["create", "--name", &name, "--network", &self.nets[0].name];
        let (runbooks, actions) = (
            format!("{}:/runbooks:ro", dir.join("runbooks").display()),
            format!("{}:/actions", dir.join("actions").display()),
        );
        create.extend([
            "-v",
            &runbooks,
            "-v",
            &actions,
            "-e",
            "RUST_LOG=warn",
            image,
        ]);
        create.extend(args);
        docker(&create);
        docker(&["network", "connect", &self.nets[1].name, &name]);
        let client = Command::new("docker")
            .args(["start", "-a", &name])
            .stdout(std::fs::File::create(dir.join(format!("{member}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{member}.err"))).unwrap())
            .spawn()
            .expect("docker start");
        Container { name, client }
    }

    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        std::fs::write(dir.path().join("runbooks/queue.yaml"), RUNBOOK).unwrap();
        // The durable (libsql) engine: the memory one skips the rest of a
        // batch when a fetch starts inside it (measured: a worker taking a
        // partition over at offset 1 was handed 6,353 first), which no
        // worker can make up for.
        let broker = lab::tansu::Tansu::start_durable().expect("a tansu broker");
        for topic in ["heal-samples", "heal-scores", "heal-detect-changelog"] {
            broker.create_topic(topic, PARTITIONS).unwrap();
        }
        let pg = lab::postgres::PgServer::start().expect("a PostgreSQL server");
        World {
            dir,
            broker,
            pg,
            nets: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `members` one at a time, each once the group has settled:
    /// every partition held by exactly one member, for a second.
    fn workers<'a>(&self, members: &[&'a str]) -> BTreeMap<&'a str, Guard> {
        let (dir, brokers, pg) = (self.dir(), self.broker.brokers(), self.pg.url());
        settle(dir, members, |m| worker(dir, &brokers, &pg, m, true))
    }

    /// Detect workers as containers on the world's networks (heal's
    /// image), started one by one until they share the partitions.
    fn worker_containers<'a>(&self, members: &[&'a str]) -> BTreeMap<&'a str, Container> {
        let image = heal_image();
        let (brokers, pg) = (self.broker.brokers(), self.pg.url());
        settle(self.dir(), members, |m| {
            self.container(
                &image,
                m,
                &[
                    "detect",
                    "--brokers",
                    &brokers,
                    "--member",
                    m,
                    "--runbooks",
                    "/runbooks",
                    "--checkpoint-every",
                    "300ms",
                    "--session-timeout",
                    "6s",
                    "--leases",
                    &pg,
                ],
            )
        })
    }

    /// `heal ingest` of [`synthetic`] samples, returned once `members`
    /// have committed a quarter of them (mid-stream: the moment to break
    /// something), with their total.
    fn ingest_a_quarter(&self, members: &[&str]) -> (Synthetic, u64, std::process::Child) {
        let synth = synthetic();
        let total = (synth.series * synth.steps) as u64;
        let ingest = self.ingest(&synth);
        wait_until(
            self.dir(),
            "a quarter of the samples scored",
            Duration::from_secs(60),
            || (committed(self.dir(), members) > total / 4).then_some(()),
        );
        (synth, total, ingest)
    }

    /// `heal ingest` of the synthetic samples at 2,000 a second.
    fn ingest(&self, synth: &Synthetic) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args([
                "ingest",
                "--brokers",
                &self.broker.brokers(),
                "--rate",
                "2000",
            ])
            .arg("--runbooks")
            .arg(self.dir().join("runbooks"))
            .args(["--synth-series", &synth.series.to_string()])
            .args(["--synth-steps", &synth.steps.to_string()])
            .args(["--synth-replicas", &synth.replicas.to_string()])
            .args(["--seed", &synth.seed.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for `heal ingest`, which must have had all `total` samples
/// acknowledged, and returns their places: offsets are dense per
/// partition, so the samples are offsets 0..n of each partition.
fn produced(ingest: std::process::Child, total: u64) -> BTreeSet<(i32, i64)> {
    let published = ingest.wait_with_output().unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let published: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(published["produced"].as_u64(), Some(total), "{published}");
    let keys: BTreeSet<(i32, i64)> = published["partitions"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, n)| {
            let p: i32 = p.parse().unwrap();
            (0..n.as_i64().unwrap()).map(move |o| (p, o))
        })
        .collect();
    assert_eq!(keys.len() as u64, total);
    keys
}

/// The score an uninterrupted run of each series' detector gives each
/// sample, by (series, timestamp).
fn reference(synth: &Synthetic) -> BTreeMap<(String, i64), u64> {
    let signal: remediate::runbook::Signal =
        serde_json::from_value(serde_json::json!({"name": "queue_depth", "query": "q"})).unwrap();
    let mut reference = BTreeMap::new();
    for i in 0..synth.series {
        let labels = synth.labels(i).to_string();
        let mut scorer = SeriesScorer::for_signal(&signal);
        for t in 0..synth.steps {
            let ts = synth.start_ms + t as i64 * synth.step_ms;
            let sample = scorer.admit(ts, synth.value(i, t)).unwrap();
            reference.insert(
                (labels.clone(), ts),
                scorer.score(sample, None).scored.score.to_bits(),
            );
        }
    }
    reference
}

/// Waits until the scores cover `keys` (partition, offset), and returns
/// them de-duplicated, with the number of duplicates; a duplicate must be
/// the same score.
fn scored_once(
    dir: &Path,
    brokers: &str,
    keys: &BTreeSet<(i32, i64)>,
) -> (BTreeMap<(i32, i64), ScoreRecord>, usize) {
    let all = wait_until(dir, "every sample scored", Duration::from_secs(120), || {
        let all = scores(brokers);
        let got: BTreeSet<(i32, i64)> = all.iter().map(|s| (s.partition, s.offset)).collect();
        keys.is_subset(&got).then_some(all)
    });
    let mut unique: BTreeMap<(i32, i64), ScoreRecord> = BTreeMap::new();
    let mut duplicates = 0;
    for s in all {
        match unique.get(&(s.partition, s.offset)) {
            Some(first) => {
                duplicates += 1;
                assert_eq!(
                    first.score.to_bits(),
                    s.score.to_bits(),
                    "a duplicate scored differently: {first:?} {s:?}"
                );
                assert_eq!((first.anomalous, first.first), (s.anomalous, s.first));
            }
            None => {
                unique.insert((s.partition, s.offset), s);
            }
        }
    }
    (unique, duplicates)
}

#[test]
fn a_killed_detect_worker_loses_no_sample_and_its_successors_score_as_it_would_have() {
    let world = World::new();
    let (dir, brokers) = (world.dir(), world.broker.brokers());
    let members = ["w1", "w2", "w3"];
    let mut workers = world.workers(&members);

    // Samples arrive at 2,000 a second for six seconds.
    let synth = synthetic();
    let total = (synth.series * synth.steps) as u64;
    let ingest = world.ingest(&synth);

    // Mid-stream, the worker holding the most partitions dies.
    wait_until(
        dir,
        "a third of the samples scored",
        Duration::from_secs(60),
        || (committed(dir, &members) > total / 3).then_some(()),
    );
    let victim = *members.iter().max_by_key(|m| held(dir, m).len()).unwrap();
    let lost = held(dir, victim);
    assert!(!lost.is_empty());
    let seen: BTreeMap<&str, usize> = members.iter().map(|m| (*m, events(dir, m).len())).collect();
    let mut dead = workers.remove(victim).unwrap();
    let killed_at = Instant::now();
    dead.0.kill().unwrap();
    dead.0.wait().unwrap();

    // The survivors take its partitions over, restoring their state.
    let survivors: Vec<&str> = members.iter().copied().filter(|m| *m != victim).collect();
    let takeover = wait_until(
        dir,
        "the survivors to restore the lost partitions",
        Duration::from_secs(60),
        || {
            let restored: BTreeSet<i64> = survivors
                .iter()
                .flat_map(|m| events(dir, m).into_iter().skip(seen[m]))
                .filter(|e| e["event"] == "restored" && e["series"].as_u64() > Some(0))
                .filter_map(|e| e["partition"].as_i64())
                .collect();
            lost.is_subset(&restored).then(|| killed_at.elapsed())
        },
    );

    // Every sample scored; duplicates are the same score.
    let keys = produced(ingest, total);
    let (unique, duplicates) = scored_once(dir, &brokers, &keys);
    assert_eq!(
        unique.len() as u64,
        total,
        "scored once each after de-duplication"
    );

    // Each the score an uninterrupted run of its series' detector gives.
    let reference = reference(&synth);
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
        unique.len() + duplicates,
        takeover.as_secs_f64()
    );
    assert!(
        takeover < Duration::from_secs(30),
        "takeover took {takeover:?}"
    );
    drop(workers);
}

/// The broker SIGKILLed mid-stream and started again (its messages in a
/// SQLite file): every sample the producer was told was written is in the
/// samples topic and scored; a sample the producer sent again because the
/// broker died before answering (should idempotence not hold it back) is
/// in the topic twice, and the second is dropped by the sample policy (a
/// duplicate or out-of-order timestamp).
#[test]
fn a_restarted_broker_loses_nothing_it_acknowledged() {
    broker_restart(false);
}

/// The same with the workers as containers on a private network, as on
/// separate hosts, and the broker on its gateway.
#[test]
fn a_restarted_broker_loses_nothing_the_worker_containers_were_sent() {
    broker_restart(true);
}

fn broker_restart(containers: bool) {
    let mut world = if containers {
        World::on_networks()
    } else {
        World::new()
    };
    let (brokers, dir) = (world.broker.brokers(), world.dir.path().to_owned());
    let members = ["w1", "w2"];
    let (processes, containers) = if containers {
        (None, Some(world.worker_containers(&members)))
    } else {
        (Some(world.workers(&members)), None)
    };
    let (synth, total, ingest) = world.ingest_a_quarter(&members);
    world.broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    world.broker.restart().expect("the broker starts again");

    let published = ingest.wait_with_output().unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let published: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(
        published["produced"].as_u64(),
        Some(total),
        "every sample acknowledged: {published}"
    );

    // Every sample the producer was told was written is there.
    let topic = read_topic(
        &brokers,
        "heal-samples",
        PARTITIONS as i32,
        Duration::from_secs(3),
    );
    let mut present: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for (_, _, v) in &topic {
        let s: heal::scale::wire::SampleRecord = serde_json::from_slice(v).unwrap();
        *present
            .entry((s.labels().to_string(), s.ts_ms))
            .or_default() += 1;
    }
    let reference = reference(&synth);
    let missing = reference
        .keys()
        .filter(|k| !present.contains_key(k))
        .count();
    assert_eq!(missing, 0, "acknowledged samples lost by the restart");
    let resent: usize = present.values().map(|n| n - 1).sum();

    // Every message of the topic scored: the first of each sample as an
    // uninterrupted run would, a resent one dropped as a duplicate.
    let keys: BTreeSet<(i32, i64)> = topic.iter().map(|(p, o, _)| (*p, *o)).collect();
    let (unique, duplicates) = scored_once(&dir, &brokers, &keys);
    let mut scored = 0;
    let mut dropped = 0;
    for s in unique.values() {
        match &s.dropped {
            None => {
                scored += 1;
                assert_eq!(
                    reference.get(&(s.series.clone(), s.ts_ms)),
                    Some(&s.score.to_bits()),
                    "{s:?}"
                );
            }
            Some(why) => {
                dropped += 1;
                // Resent after newer samples of its series, or right after
                // its first copy.
                assert!(why == "duplicate" || why == "out_of_order", "{s:?}");
            }
        }
    }
    assert_eq!(scored, total, "each sample scored once");
    assert_eq!(dropped, resent);
    println!(
        "{}produced {total}, topic messages {} ({resent} resent after the restart), scored {scored}, dropped as duplicates {dropped}, score messages {}, lost 0",
        if containers.is_some() { "worker containers: " } else { "" },
        topic.len(),
        unique.len() + duplicates
    );
    drop((processes, containers));
}

/// A worker paused (SIGSTOP, as a long GC pause or a network cut would
/// freeze it) past its lease: the others take its partitions over; when it
/// wakes (SIGCONT) it finds its leases stale and gives them up at its next
/// round. Every sample is still scored once after de-duplication, as an
/// uninterrupted run would (what a zombie scored in between is a
/// duplicate with the same score).
#[test]
fn a_paused_worker_wakes_up_fenced() {
    let world = World::new();
    let (dir, brokers) = (world.dir(), world.broker.brokers());
    let members = ["w1", "w2"];
    let workers = world.workers(&members);
    let (synth, total, ingest) = world.ingest_a_quarter(&members);
    let pid = workers["w1"].0.id().to_string();
    let lost = held(dir, "w1");
    let seen = events(dir, "w2").len();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until(
        dir,
        "w2 to take the paused worker's partitions",
        Duration::from_secs(60),
        || {
            lost.is_subset(&partitions_since(dir, "w2", seen, "restored"))
                .then_some(())
        },
    );
    let woke = events(dir, "w1").len();
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    // Woken, it drops what it held (revoked), whatever happens next: once
    // it is a live member again the other may hand partitions back.
    wait_until(
        dir,
        "w1 to give up what it no longer holds",
        Duration::from_secs(30),
        || {
            lost.is_subset(&partitions_since(dir, "w1", woke, "revoked"))
                .then_some(())
        },
    );

    let keys = produced(ingest, total);
    let (unique, duplicates) = scored_once(dir, &brokers, &keys);
    assert_eq!(unique.len() as u64, total);
    let reference = reference(&synth);
    let differ = unique
        .values()
        .filter(|s| reference.get(&(s.series.clone(), s.ts_ms)) != Some(&s.score.to_bits()))
        .count();
    assert_eq!(differ, 0, "scores unlike an uninterrupted run's");
    println!("paused past its lease: {total} scored once each, {duplicates} duplicates, 0 lost");
    drop(workers);
}

/// `heal ingest` from live sources, on real parts: three lab services
/// (two replicas of `api`, one `db`) scraped every second by a real
/// Prometheus, which also remote-writes to `heal ingest`'s
/// `POST /api/v1/write`. heal ingest evaluates one `query:` signal against
/// that Prometheus and takes one `remote_write:` signal from the pushes,
/// and produces both to the samples topic; one `heal detect` worker scores
/// them.
///
/// What must hold: the keying rule (each series in one partition, a
/// service's replicas in the same one, a series' samples in time order);
/// garbage and a missing token refused with a sender's statuses and
/// nothing produced for them; every sample acknowledged is in the topic
/// and scored.
#[test]
fn live_sources_and_remote_write_feed_heal_ingest_keyed_and_a_worker_scores_them() {
    use common::{free_port, heal_lab, metric, metrics};
    use std::net::SocketAddr;
    let world = World::new();
    let (brokers, dir) = (world.broker.brokers(), world.dir.path().to_owned());
    std::fs::remove_file(dir.join("runbooks/queue.yaml")).unwrap();
    std::fs::write(
        dir.join("runbooks/lab.yaml"),
        format!(
            "log_sources:
  - name: app
    files: [{}]
    read_from: beginning
    format: {{type: log_format, log_format: \"<Level> <Content>\"}}
signals:
  - name: lab_up
    query: up{{job=\"lab\"}}
  - name: lab_memory_bytes
    remote_write: {{metric: process_resident_memory_bytes, match: {{job: lab}}}}
  - name: app_lines
    logs: {{source: app}}
",
            dir.join("app.log").display()
        ),
    )
    .unwrap();
    // A log written to while the test runs (the log signal counts its lines).
    std::fs::write(dir.join("app.log"), "").unwrap();
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (writing, path) = (writing.clone(), dir.join("app.log"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                writeln!(f, "INFO request served").unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let token = "ingest-test-token";

    // The lab: api twice, db once.
    let labs: Vec<(u16, &str)> = vec![
        (free_port(), "api"),
        (free_port(), "api"),
        (free_port(), "db"),
    ];
    let _labs: Vec<Guard> = labs
        .iter()
        .map(|(port, name)| {
            Guard(
                Command::new(heal_lab())
                    .args(["service", "--name", name, "--port", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    // heal ingest, live, with its API.
    let prom_port = free_port();
    let heal = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ingest_err = dir.join("ingest.err");
    let ingest = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["ingest", "--brokers", &brokers])
        .arg("--runbooks")
        .arg(dir.join("runbooks"))
        .arg("--prometheus")
        .arg(format!("http://127.0.0.1:{prom_port}"))
        .args(["--listen", &heal.to_string(), "--interval", "1s"])
        .args(["--api-token-env", "HEAL_RW_TOKEN"])
        .env("HEAL_RW_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&ingest_err).unwrap())
        .spawn()
        .unwrap();
    let ingest = Guard(ingest);
    let ingest_log = || std::fs::read_to_string(&ingest_err).unwrap_or_default();
    wait_until(&dir, "heal ingest's API", Duration::from_secs(20), || {
        metrics(heal)
            .contains("heal_ingest_samples_total")
            .then_some(())
    });
    let post = |token: Option<&str>, body: &[u8]| common::post_remote_write(heal, token, body);
    assert_eq!(post(None, b"x"), 401);
    assert_eq!(post(Some("wrong"), b"x"), 401);
    assert_eq!(post(Some(token), b"this is not snappy"), 400);

    // The real Prometheus: scrapes the lab, remote-writes to heal ingest.
    let targets = |name: &str| {
        labs.iter()
            .filter(|(_, n)| *n == name)
            .map(|(p, _)| format!("'127.0.0.1:{p}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:
  scrape_interval: 1s
scrape_configs:
  - job_name: lab
    static_configs:
      - targets: [{}]
        labels: {{service: api}}
      - targets: [{}]
        labels: {{service: db}}
remote_write:
  - url: http://{heal}/api/v1/write
    authorization: {{credentials: {token}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
",
            targets("api"),
            targets("db")
        ),
    )
    .unwrap();
    let _prometheus = common::start_prometheus(&dir, &config, prom_port, &[]);

    // Both signals' three series reach the topic, several samples each.
    let topic_samples = || {
        read_topic(
            &brokers,
            "heal-samples",
            PARTITIONS as i32,
            Duration::from_secs(1),
        )
        .into_iter()
        .map(|(p, o, v)| {
            let s: heal::scale::wire::SampleRecord = serde_json::from_slice(&v).unwrap();
            (p, o, s)
        })
        .collect::<Vec<_>>()
    };
    wait_until(
        &dir,
        "both signals' series in the topic",
        Duration::from_secs(90),
        || {
            let mut per: BTreeMap<String, usize> = BTreeMap::new();
            for (_, _, s) in topic_samples() {
                *per.entry(s.labels().to_string()).or_default() += 1;
            }
            let signals: BTreeSet<String> = per
                .keys()
                .map(|k| k.split('{').next().unwrap().to_owned())
                .collect();
            (per.len() >= 7 && signals.len() == 3 && per.values().all(|n| *n >= 5)).then_some(())
        },
    );
    assert!(
        metric(heal, "heal_remote_write_samples_total{outcome=\"matched\"}").unwrap_or(0.0) > 0.0,
        "{}\n{}",
        metrics(heal),
        ingest_log()
    );

    // One worker scores what was produced.
    let _workers = world.workers(&["w1"]);

    // Stop ingest (SIGTERM): it flushes and reports what was acknowledged.
    let mut ingest = ingest;
    assert!(Command::new("kill")
        .args(["-TERM", &ingest.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut ingest.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(ingest.0.wait().unwrap().success(), "{}", ingest_log());
    let stats: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let produced = stats["published"]["produced"].as_u64().unwrap();
    assert_eq!(Some(produced), stats["sent"].as_u64(), "{stats}");

    // Every acknowledged sample is in the topic, keyed by the rule.
    let topic = topic_samples();
    assert_eq!(topic.len() as u64, produced, "{stats}");
    let mut partition_of: BTreeMap<(String, String), BTreeSet<i32>> = BTreeMap::new();
    let mut series_partition: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut last_ts: BTreeMap<String, i64> = BTreeMap::new();
    let mut ordered = topic.iter().collect::<Vec<_>>();
    ordered.sort_by_key(|(p, o, _)| (*p, *o));
    for (p, _, s) in ordered {
        let labels = s.labels();
        let series = labels.to_string();
        let signal = labels.name().unwrap().to_owned();
        let service = labels.get("service").unwrap_or_default().to_owned();
        partition_of
            .entry((signal, service))
            .or_default()
            .insert(*p);
        series_partition
            .entry(series.clone())
            .or_default()
            .insert(*p);
        if let Some(before) = last_ts.insert(series.clone(), s.ts_ms) {
            assert!(s.ts_ms > before, "{series}: {} after {before}", s.ts_ms);
        }
    }
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let of_signal = |signal: &str| {
        series_partition
            .keys()
            .filter(|s| s.split('{').next() == Some(signal))
            .count()
    };
    assert_eq!(of_signal("lab_up"), 3, "{series_partition:?}");
    assert_eq!(of_signal("lab_memory_bytes"), 3, "{series_partition:?}");
    assert!(of_signal("app_lines") >= 1, "{series_partition:?}");
    assert!(
        series_partition.values().all(|ps| ps.len() == 1),
        "{series_partition:?}"
    );
    assert!(partition_of.len() >= 5, "{partition_of:?}");
    assert!(
        partition_of.values().all(|ps| ps.len() == 1),
        "a service's replicas share a partition: {partition_of:?}"
    );

    // And every one is scored.
    let keys: BTreeSet<(i32, i64)> = topic.iter().map(|(p, o, _)| (*p, *o)).collect();
    let (unique, duplicates) = scored_once(&dir, &brokers, &keys);
    let scored = unique.values().filter(|s| s.dropped.is_none()).count();
    assert!(scored > 0);
    println!(
        "live ingest: {} evaluations ({} without data), {produced} samples produced and acknowledged, {} in the topic, {} scored ({scored} scored, {} dropped by the sample policy), {duplicates} duplicate scores",
        stats["evaluations"],
        stats["failed_evaluations"],
        topic.len(),
        unique.len(),
        unique.len() - scored
    );
}

/// A `heal remediate` member: the world's runbook, its PostgreSQL for the
/// leases, the journal and the incidents, actions performed, offsets
/// committed (and the guards' memory saved) every `commit_every` (`1h`: a
/// member killed mid-stream has committed nothing, and its successor
/// replays every score it had).
fn remediate_member_committing(
    dir: &Path,
    brokers: &str,
    db: &str,
    member: &str,
    commit_every: &str,
) -> Guard {
    let out = std::fs::File::create(dir.join(format!("{member}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{member}.err"))).unwrap();
    Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args([
                "remediate",
                "--brokers",
                brokers,
                "--member",
                member,
                "--db",
                db,
            ])
            .arg("--runbooks")
            .arg(dir.join("runbooks"))
            .args([
                "--session-timeout",
                "6s",
                "--commit-every",
                commit_every,
                "--execute",
            ])
            .env("RUST_LOG", "warn")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting heal remediate"),
    )
}

/// Ingests twice the series of the other tests (more faulty services,
/// spread over the members), waits until every sample is scored (so every
/// score is on the scores topic), and returns the services whose series
/// fired upwards (the rules' direction): the faulty ones, as far as the
/// detector saw them.
fn faulty_services(world: &World) -> BTreeSet<String> {
    let synth = Synthetic {
        series: 96,
        ..synthetic()
    };
    let total = (synth.series * synth.steps) as u64;
    let keys = produced(world.ingest(&synth), total);
    let (scored, _) = scored_once(world.dir(), &world.broker.brokers(), &keys);
    let fired: BTreeSet<String> = scored
        .values()
        .filter(|s| s.first && s.excursion.is_some_and(|e| e.above))
        .map(|s| {
            let labels: ingest::Labels = s.series.parse().unwrap();
            labels.get("service").unwrap().to_owned()
        })
        .collect();
    assert!(!fired.is_empty(), "no anomaly to act on");
    fired
}

/// The steps a member reported, by outcome: (key, outcome) in order.
fn steps(dir: &Path, member: &str) -> Vec<(String, String)> {
    events(dir, member)
        .into_iter()
        .filter(|e| e["event"] == "step")
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The runbook of the remediate tests: a queue backing up is acted on by
/// `mktemp` (the program at `mktemp`) making a file named after the
/// service in `actions` (a path as the member sees it).
fn action_runbook(dir: &Path, mktemp: &str, actions: &str) {
    std::fs::write(
        dir.join("runbooks/queue.yaml"),
        format!(
            "{RUNBOOK}rules:
  - name: queue-backed-up
    when: {{signal: queue_depth, direction: up, for: 0s}}
    then:
      - {{action: exec, argv: [{mktemp}, \"{actions}/{{{{service}}}}.XXXXXX\"]}}
"
        ),
    )
    .unwrap();
}

/// Waits until the action files in `actions` stop growing for three
/// seconds (every member done with what it holds); returns their names.
fn settled_actions(dir: &Path, actions: &Path) -> Vec<String> {
    let mut last = (usize::MAX, Instant::now());
    wait_until(dir, "the members to act", Duration::from_secs(60), || {
        let n = std::fs::read_dir(actions).unwrap().count();
        if n != last.0 {
            last = (n, Instant::now());
        }
        (n > 0 && last.1.elapsed() > Duration::from_secs(3)).then_some(())
    });
    std::fs::read_dir(actions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The keys a member performed.
fn performed(dir: &Path, member: &str) -> BTreeSet<String> {
    steps(dir, member)
        .into_iter()
        .filter(|(_, o)| o == "performed")
        .map(|(k, _)| k)
        .collect()
}

/// Two remediate members (`r1`, `r2`, committing every `commit_every`) on
/// the scores of one detect worker (`w1`), acting by `action_runbook`'s
/// `mktemp` into `actions`.
struct Remediation {
    world: World,
    dir: std::path::PathBuf,
    db: String,
    actions: std::path::PathBuf,
    _detect: BTreeMap<&'static str, Guard>,
    members: BTreeMap<&'static str, Guard>,
}

impl Remediation {
    fn start(commit_every: &str) -> Remediation {
        let world = World::new();
        let (brokers, dir, db) = (
            world.broker.brokers(),
            world.dir.path().to_owned(),
            world.pg.url(),
        );
        let actions = dir.join("actions");
        std::fs::create_dir(&actions).unwrap();
        action_runbook(&dir, "mktemp", &actions.display().to_string());
        let _detect = world.workers(&["w1"]);
        let members = settle(&dir, &["r1", "r2"], |m| {
            remediate_member_committing(&dir, &brokers, &db, m, commit_every)
        });
        Remediation {
            world,
            dir,
            db,
            actions,
            _detect,
            members,
        }
    }
}

/// Two remediate members share the scores; the one that has performed
/// actions is SIGKILLed before it committed anything (a forced
/// rebalance): the survivor takes its partitions over, replays every score
/// they held with an engine of its own, opens the same incidents, and
/// begins none of their steps again: the journal in PostgreSQL refuses
/// the same key. Every action is performed once: one file per action
/// (`mktemp`, a real process each), one finished journal row per key.
#[test]
fn a_killed_remediate_member_begins_no_action_twice() {
    let Remediation {
        world,
        dir,
        db,
        actions,
        _detect,
        mut members,
    } = Remediation::start("1h");

    let fired = faulty_services(&world);
    let performed = |m: &str| performed(&dir, m);
    // Every service that fired was acted on, and no other.
    let files = settled_actions(&dir, &actions);
    let acted: BTreeSet<String> = files
        .iter()
        .map(|f| f.split('.').next().unwrap().to_owned())
        .collect();
    if acted != fired {
        dump(&dir);
        panic!("fired {fired:?}, acted on {files:?}");
    }
    let (r1, r2) = (performed("r1"), performed("r2"));
    assert!(
        r1.is_disjoint(&r2),
        "both performed {:?}",
        r1.intersection(&r2)
    );
    assert_eq!(files.len(), r1.len() + r2.len(), "{files:?}");

    // Kill the member that acted (r1 when both did).
    let (dead, survivor, dead_keys) = if r1.is_empty() {
        ("r2", "r1", r2)
    } else {
        ("r1", "r2", r1)
    };
    members.get_mut(dead).unwrap().0.kill().unwrap();
    let killed = Instant::now();
    let before = steps(&dir, survivor).len();
    // The survivor replays the dead member's scores: every one of its
    // keys comes back, begun elsewhere, none performed.
    let replayed = wait_until(
        &dir,
        "the survivor to replay",
        Duration::from_secs(60),
        || {
            let after: Vec<(String, String)> =
                steps(&dir, survivor).into_iter().skip(before).collect();
            let seen: BTreeSet<String> = after.iter().map(|(k, _)| k.clone()).collect();
            dead_keys.is_subset(&seen).then_some(after)
        },
    );
    let takeover = killed.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    for (key, outcome) in &replayed {
        if dead_keys.contains(key) {
            assert_eq!(outcome, "begun_elsewhere", "{key} performed again");
        }
    }
    let files_after = std::fs::read_dir(&actions).unwrap().count();
    assert_eq!(files_after, files.len(), "an action ran twice");

    // The journal: one finished row per action key.
    let mut journal = store::PgStore::open(&db).unwrap();
    let all_keys: BTreeSet<String> = performed("r1").union(&performed("r2")).cloned().collect();
    for k in &all_keys {
        let mut parts = k.rsplitn(3, '/');
        let attempt: u32 = parts
            .next()
            .unwrap()
            .trim_start_matches("attempt-")
            .parse()
            .unwrap();
        let step: usize = parts
            .next()
            .unwrap()
            .trim_start_matches("step-")
            .parse()
            .unwrap();
        let incident = parts.next().unwrap();
        let record = journal
            .action(&store::ActionKey::new(incident, step, attempt))
            .unwrap()
            .unwrap_or_else(|| panic!("{k} not in the journal"));
        assert_eq!(record.state, store::ExecutionState::Finished, "{k}");
    }
    // The incidents, stored by the members in the same database under the
    // journal's ids, whichever member opened them first: every journaled
    // action's incident is there, and each stored incident has one
    // finished execution per step the guards allowed (none run twice).
    let incidents = store::Store::open_read_only(&db).unwrap();
    let page = incidents
        .list(&store::IncidentFilter {
            limit: 1000,
            ..store::IncidentFilter::default()
        })
        .unwrap();
    let stored: BTreeSet<String> = page.incidents.iter().map(|s| s.id.clone()).collect();
    let journaled: BTreeSet<String> = all_keys
        .iter()
        .map(|k| k.rsplitn(3, '/').nth(2).unwrap().to_owned())
        .collect();
    assert!(
        journaled.is_subset(&stored),
        "journaled {journaled:?}, stored {stored:?}"
    );
    for id in &stored {
        let record = incidents.incident(id).unwrap().unwrap();
        assert_eq!(record.incident.rule, "queue-backed-up");
        let allowed = record
            .incident
            .actions
            .iter()
            .filter(|a| a.decision.allowed)
            .count();
        let finished = record
            .executions
            .iter()
            .filter(|e| e.state == store::ExecutionState::Finished)
            .count();
        assert_eq!(
            (finished, record.executions.len()),
            (allowed, allowed),
            "{id}: {record:?}"
        );
    }
    // And `heal incidents list` reads them from PostgreSQL.
    let listed = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["incidents", "list", "--limit", "1000", "--db", &db])
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    for id in &stored {
        assert!(listed.contains(id.as_str()), "{id} not listed:\n{listed}");
    }
    println!(
        "remediate: {} actions performed ({dead}: {}, {survivor}: {}), {dead} SIGKILLed uncommitted; {survivor} replayed its partitions in {:.1} s: {} of its steps begun elsewhere, 0 run again; {} files, {} journal rows, {} incidents stored",
        all_keys.len(),
        dead_keys.len(),
        all_keys.len() - dead_keys.len(),
        takeover.as_secs_f64(),
        replayed.iter().filter(|(k, o)| dead_keys.contains(k) && o == "begun_elsewhere").count(),
        files_after,
        all_keys.len(),
        stored.len()
    );
}

/// The guards' memory passes with a partition: two members commit every
/// second, each partition's guard state saved in PostgreSQL (under its
/// fence) before its offsets; the one that acted is SIGKILLed after its
/// last commit. The survivor takes its partitions over with the attempts
/// the dead one saved (a cooldown it began still holds there), has nothing
/// of them to replay, and runs nothing again.
#[test]
fn a_partitions_guard_memory_passes_to_its_next_holder() {
    let Remediation {
        world,
        dir,
        actions,
        _detect,
        mut members,
        ..
    } = Remediation::start("1s");
    faulty_services(&world);
    let files = settled_actions(&dir, &actions);
    let (r1, r2) = (performed(&dir, "r1"), performed(&dir, "r2"));
    let (dead, survivor, dead_keys) = if r1.is_empty() {
        ("r2", "r1", r2)
    } else {
        ("r1", "r2", r1)
    };
    // Killed once it committed after its last step (its state saved).
    wait_until(
        &dir,
        "a commit after the last step",
        Duration::from_secs(30),
        || {
            let ev = events(&dir, dead);
            let last_step = ev.iter().rposition(|e| e["event"] == "step")?;
            let last_commit = ev.iter().rposition(|e| e["event"] == "commit")?;
            (last_commit > last_step).then_some(())
        },
    );
    let dead_held = held(&dir, dead);
    let before = events(&dir, survivor).len();
    members.get_mut(dead).unwrap().0.kill().unwrap();
    let killed = Instant::now();
    let restored = |ev: &[serde_json::Value]| -> BTreeMap<i64, u64> {
        ev.iter()
            .filter(|e| e["event"] == "guards_restored")
            .map(|e| {
                (
                    e["partition"].as_i64().unwrap(),
                    e["attempts"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let got = wait_until(
        &dir,
        "the survivor to restore the dead member's guards",
        Duration::from_secs(60),
        || {
            let ev: Vec<serde_json::Value> =
                events(&dir, survivor).into_iter().skip(before).collect();
            let got = restored(&ev);
            (got.values().sum::<u64>() >= dead_keys.len() as u64).then_some(got)
        },
    );
    let takeover = killed.elapsed();
    let partitions: BTreeSet<i64> = got.keys().copied().collect();
    assert!(
        partitions.is_subset(&dead_held),
        "restored {partitions:?}, the dead member held {dead_held:?}"
    );
    assert_eq!(
        got.values().sum::<u64>(),
        dead_keys.len() as u64,
        "attempts restored vs steps the dead member performed"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        std::fs::read_dir(&actions).unwrap().count(),
        files.len(),
        "an action ran again"
    );
    let again: Vec<(String, String)> = steps(&dir, survivor)
        .into_iter()
        .filter(|(k, o)| dead_keys.contains(k) && o == "performed")
        .collect();
    assert!(again.is_empty(), "{again:?}");
    println!(
        "guards' memory: {dead} performed {} steps, committed, was SIGKILLed; {survivor} took partitions {partitions:?} over {:.1} s later with {} attempts restored, ran nothing again ({} files)",
        dead_keys.len(),
        takeover.as_secs_f64(),
        got.values().sum::<u64>(),
        files.len()
    );
}

/// Two detect workers as containers on a private Docker network, as on
/// separate hosts; one is cut off the network mid-stream (`docker network
/// disconnect`: its broker and database connections go silent, the process
/// lives on). The other takes its partitions over once its leases expire;
/// every sample is still scored once after de-duplication, each as an
/// uninterrupted run would, 0 lost.
#[test]
fn a_detect_worker_cut_off_the_network_loses_no_sample() {
    a_detect_worker_container_fails(Fault::Disconnect);
}

/// The same with the container killed (`docker kill`: the host dies).
#[test]
fn a_killed_detect_worker_container_loses_no_sample() {
    a_detect_worker_container_fails(Fault::Kill);
}

/// What happens to a container in a test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `docker network disconnect` from every network: it lives on, cut off.
    Disconnect,
    /// `docker kill`.
    Kill,
}

fn a_detect_worker_container_fails(fault: Fault) {
    let world = World::on_networks();
    let (brokers, dir) = (world.broker.brokers(), world.dir.path().to_owned());
    let members = ["w1", "w2"];
    let containers = world.worker_containers(&members);
    let (synth, total, ingest) = world.ingest_a_quarter(&members);
    let cut_off = held(&dir, "w1");
    let before = events(&dir, "w2").len();
    match fault {
        Fault::Disconnect => {
            for net in &world.nets {
                containers["w1"].network(net, false);
            }
        }
        Fault::Kill => docker(&["kill", &containers["w1"].name]),
    }
    let cut = Instant::now();
    wait_until(
        &dir,
        "w2 to restore w1's partitions",
        Duration::from_secs(60),
        || {
            cut_off
                .is_subset(&partitions_since(&dir, "w2", before, "restored"))
                .then_some(())
        },
    );
    let takeover = cut.elapsed();

    let keys = produced(ingest, total);
    let (unique, duplicates) = scored_once(&dir, &brokers, &keys);
    let reference = reference(&synth);
    for s in unique.values() {
        assert_eq!(s.dropped, None, "{s:?}");
        assert_eq!(
            reference.get(&(s.series.clone(), s.ts_ms)),
            Some(&s.score.to_bits()),
            "{s:?}"
        );
    }
    assert_eq!(unique.len() as u64, total);
    println!(
        "{fault:?}: {total} produced, {} scored once after de-duplication ({duplicates} duplicates), 0 lost; w1's partitions {cut_off:?} restored on w2 {:.1} s after it",
        unique.len(),
        takeover.as_secs_f64()
    );
    drop(containers);
}

/// heal's image, with `mktemp` for the runbook's action.
fn heal_image() -> String {
    lab::image::of_binary(
        Path::new(env!("CARGO_BIN_EXE_heal")),
        &[Path::new("/usr/bin/mktemp")],
        "heal-scale-test",
    )
    .expect("heal's image")
}

/// Two remediate members as containers on the broker's network and the
/// database's. One is cut off from PostgreSQL only (its packets to the
/// server dropped), as a partial network failure would: it still reads
/// the scores (the broker is reachable) and
/// still believes, for two thirds of a lease, that it holds its
/// partitions, but it can neither renew its leases nor record a begin, and
/// a step whose begin is not recorded does not run. The other takes its
/// partitions over once the leases expire, replays their scores and acts.
/// The partition heals: whatever the cut-off member tries then is refused
/// (begun elsewhere, or fenced). One file per
/// action, every fired service acted on once.
#[test]
fn a_remediate_member_cut_off_from_the_database_begins_nothing_twice() {
    let world = World::on_networks();
    let (brokers, dir, db) = (
        world.broker.brokers(),
        world.dir.path().to_owned(),
        world.pg.url(),
    );
    action_runbook(&dir, "/usr/bin/mktemp", "/actions");
    let image = heal_image();
    let _detect = world.workers(&["w1"]);
    let members = settle(&dir, &["r1", "r2"], |m| {
        world.container(
            &image,
            m,
            &[
                "remediate",
                "--brokers",
                &brokers,
                "--member",
                m,
                "--db",
                &db,
                "--runbooks",
                "/runbooks",
                "--session-timeout",
                "30s",
                "--commit-every",
                "1h",
                "--execute",
            ],
        )
    });
    let cut_off = held(&dir, "r1");
    let partition = Partition::new(&members["r1"].ips(), world.pg.port());
    let cut = Instant::now();

    let fired = faulty_services(&world);
    // r2 holds every partition and has acted on every fired service.
    let actions = dir.join("actions");
    let acted = || -> BTreeSet<String> {
        std::fs::read_dir(&actions)
            .unwrap()
            .map(|e| {
                let f = e.unwrap().file_name().to_string_lossy().into_owned();
                f.split('.').next().unwrap().to_owned()
            })
            .collect()
    };
    wait_until(
        &dir,
        "r2 to take over and act",
        Duration::from_secs(90),
        || (held(&dir, "r2").len() == PARTITIONS as usize && acted() == fired).then_some(()),
    );
    let takeover = partitions_since(&dir, "r2", 0, "assigned");
    assert!(cut_off.is_subset(&takeover), "{cut_off:?} {takeover:?}");
    let acted_after = cut.elapsed();

    // The partition heals: r1 may now reach PostgreSQL with what it was
    // trying, or find its leases gone.
    drop(partition);
    std::thread::sleep(Duration::from_secs(8));
    let files = std::fs::read_dir(&actions).unwrap().count();
    let performed = |m: &str| -> Vec<String> {
        steps(&dir, m)
            .into_iter()
            .filter(|(_, o)| o == "performed" || o == "failed")
            .map(|(k, _)| k)
            .collect()
    };
    let (r1, r2) = (performed("r1"), performed("r2"));
    assert!(r1.is_empty(), "the cut-off member ran {r1:?}");
    let unique: BTreeSet<&String> = r2.iter().collect();
    assert_eq!(unique.len(), r2.len(), "a step ran twice: {r2:?}");
    assert_eq!(files, r2.len(), "one file per action");
    assert_eq!(acted(), fired);
    let r1_steps = steps(&dir, "r1");
    println!(
        "remediate, one member cut off from PostgreSQL: {} actions, all by the other ({:.1} s after the cut), {files} files; the cut-off member's own steps: {:?}",
        r2.len(),
        acted_after.as_secs_f64(),
        r1_steps.iter().map(|(_, o)| o.as_str()).collect::<Vec<_>>()
    );
}
