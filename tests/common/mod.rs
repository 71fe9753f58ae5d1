//! Helpers the integration tests of the `heal` binary share (each test file
//! that needs them says `mod common;`). Not every file uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use lab::rng::SplitMix64;

/// A runbook whose one rule parks its step for approval: what the tests of
/// `heal watch`'s API (in-process and through the binary) run.
pub const APPROVAL_RUNBOOK: &str = "signals:
  - name: lat
    query: lat
rules:
  - name: restart-on-latency
    when: {signal: lat, direction: up}
    then:
      - action: exec
        argv: [/bin/true]
    guards: {require_approval: true}
";

/// Runs the real `heal` binary with `args`, from the package root (so the
/// bundled `runbooks/` and `datasets/` resolve), and waits for it.
pub fn heal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running heal")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A standard normal draw (Box-Muller) from the lab's seeded generator.
pub fn normal(rng: &mut SplitMix64) -> f64 {
    let (u, v) = (rng.unit().max(1e-12), rng.unit());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A child process killed (and reaped) when the guard drops.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after
/// `deadline`.
pub fn wait_until<T>(
    what: &str,
    deadline: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < deadline {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// The Prometheus server: `PROMETHEUS_BIN`, else `/usr/bin/prometheus`
/// (Debian's, which `.ci/run` installs). Without one a test fails, never
/// skips.
pub fn prometheus_bin() -> PathBuf {
    let p = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or("/usr/bin/prometheus".into());
    assert!(
        p.exists(),
        "this test needs Prometheus at {}: `apt-get install prometheus` (CI does), or set PROMETHEUS_BIN",
        p.display()
    );
    p
}

/// Percent-encodes a PromQL expression for a query string.
pub fn url_encode(q: &str) -> String {
    stdx::text::percent_encode(q, b"")
}

/// A tansu broker (`lab::tansu`: `TANSU_BIN`, PATH or
/// `~/.cache/heal-tools/bin`; without one a test fails, never skips) on a
/// free port with the topic `topic` of `partitions`, and its `host:port`.
pub fn start_broker(topic: &str, partitions: u32) -> (lab::tansu::Tansu, String) {
    let broker = lab::tansu::Tansu::start().expect("a tansu broker");
    broker
        .create_topic(topic, partitions)
        .expect("creating the topic");
    let brokers = broker.brokers();
    (broker, brokers)
}

/// How many messages the topic's partitions `0..partitions` hold, read
/// from the start by a consumer of its own (no group offsets touched)
/// until nothing more comes for two seconds.
///
/// Read, not asked: tansu 0.6's ListOffsets answers the latest offset as
/// the base offset of the last batch plus one (dynostore `list_offsets`),
/// short by the batch's other records, so watermarks undercount a topic
/// whose last batch held more than one message.
pub fn topic_messages(brokers: &str, topic: &str, partitions: i32) -> u64 {
    read_topic(brokers, topic, partitions, Duration::from_secs(2)).len() as u64
}

/// Every message of the topic's partitions `0..partitions` as (partition,
/// offset, payload), read from the start by a consumer of its own until
/// nothing more comes for `idle`.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    idle: Duration,
) -> Vec<(i32, i64, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("heal-test-count-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let mut last = std::time::Instant::now();
    while last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                seen.insert(
                    (m.partition(), m.offset()),
                    m.payload().unwrap_or_default().to_vec(),
                );
                last = std::time::Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    seen.into_iter().map(|((p, o), v)| (p, o, v)).collect()
}

/// Line `i` of the log tests' streams: three statements, whatever their
/// numbers and addresses (the miner sees three templates).
pub fn log_line(i: usize) -> String {
    match i % 3 {
        0 => format!("INFO request {i} served in {} ms", i % 97),
        1 => format!("WARN cache miss for key user:{i}"),
        _ => format!("ERROR connection to 10.0.0.{}:5432 refused", i % 250),
    }
}

/// `heal watch` (dry run) with the runbooks of `dir/runbooks` and its log
/// state in `dir/logs.json`, listening on `port`; Prometheus is a port
/// nobody listens on (the runbooks have log signals only). Its stderr goes
/// to `dir/heal-RUN.err` ([`log_heal_stderr`]).
pub fn start_log_heal(dir: &Path, port: u16, run: usize) -> Guard {
    let err = std::fs::File::create(dir.join(format!("heal-{run}.err"))).unwrap();
    Guard(
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["watch", "--prometheus"])
            .arg(format!("http://127.0.0.1:{}", free_port()))
            .arg("--runbooks")
            .arg(dir.join("runbooks"))
            .args(["--interval", "1s", "--backfill", "0s"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--log-state")
            .arg(dir.join("logs.json"))
            .env("HEAL_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .expect("starting heal watch"),
    )
}

/// The stderr of the first two [`start_log_heal`] runs in `dir`.
pub fn log_heal_stderr(dir: &Path) -> String {
    (0..2)
        .map(|r| std::fs::read_to_string(dir.join(format!("heal-{r}.err"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lab's binary, built beside heal's by `cargo test --workspace`.
pub fn heal_lab() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_heal"))
        .parent()
        .unwrap()
        .join("heal-lab");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p lab` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// heal's own `/metrics` text, empty when it does not answer.
pub fn metrics(heal: std::net::SocketAddr) -> String {
    lab::http::client::get(heal, "/metrics", Duration::from_secs(2))
        .map(|r| r.body_text())
        .unwrap_or_default()
}

/// The value of the line of heal's metrics that starts with `prefix`.
pub fn metric(heal: std::net::SocketAddr, prefix: &str) -> Option<f64> {
    metrics(heal)
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

/// `POST path` to heal with `body`, a bearer `token` when given, and
/// `headers`; the answer's status (0 when none came).
pub fn post_status(
    heal: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> u16 {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(b) = &bearer {
        all.push(("Authorization", b));
    }
    lab::http::client::request_with(heal, "POST", path, &all, body, Duration::from_secs(30))
        .map_or(0, |r| r.status)
}

/// A remote-write `POST /api/v1/write` of `body` (protobuf in snappy, or
/// garbage) to heal with `token`; the answer's status.
pub fn post_remote_write(heal: std::net::SocketAddr, token: Option<&str>, body: &[u8]) -> u16 {
    post_status(
        heal,
        "/api/v1/write",
        token,
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        body,
    )
}

/// A real Prometheus on `port` with `config`, its data and stderr in `dir`.
pub fn start_prometheus(
    dir: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    extra: &[&str],
) -> Guard {
    Guard(
        std::process::Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .unwrap(),
    )
}
