//! A Kafka log source under `heal watch`, against a real Kafka-protocol
//! broker (`tansu`, started here on a free port with in-memory storage):
//! heal joins a consumer group on a two-partition topic, counts every line
//! produced, commits offsets only after a slot's evaluations, and after a
//! SIGKILL (lines produced before and while it is down) counts each line
//! exactly once: `heal_log_lines_total` equals the lines produced, and
//! heal's lag gauge falls to 0.
//!
//! The broker: `TANSU_BIN`, else `tansu` on PATH, else
//! `~/.cache/heal-tools/bin/tansu` (where `.ci/run` installs it:
//! `cargo install tansu --locked --features dynostore`). Without one the
//! test fails, never skips.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{free_port, log_heal_stderr, log_line, start_broker, start_log_heal};
use lab::http::client;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Produces lines `from..from + n` round-robin over the partitions, and
/// waits until the broker has them all.
fn produce(brokers: &str, topic: &str, from: usize, n: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    for i in from..from + n {
        let line = log_line(i);
        let key = i.to_string();
        let partition = (i % 2) as i32;
        loop {
            let record = BaseRecord::to(topic)
                .key(&key)
                .payload(&line)
                .partition(partition);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _)) => {
                    // Queue full: let it drain.
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "{e}"
                    );
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// The runbook of a Kafka source `app` on topic `app-logs` with `kafka`'s
/// extra settings, and one signal.
fn write_runbook(dir: &Path, brokers: &str, kafka: &str) {
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(
        dir.join("runbooks/app.yaml"),
        format!(
            "log_sources:
  - name: app
    kafka: {{brokers: [\"{brokers}\"], topics: [app-logs], {kafka}}}
    read_from: beginning
    format: {{type: log_format, log_format: \"<Level> <Content>\"}}
signals:
  - name: app_errors
    logs: {{source: app, level: [ERROR], match: refused}}
    detector: {{direction: up, limit_above: 1000000}}
"
        ),
    )
    .unwrap();
}

fn metrics(heal: SocketAddr) -> Option<String> {
    Some(
        client::get(heal, "/metrics", Duration::from_secs(2))
            .ok()?
            .body_text(),
    )
}

fn sample(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Waits until heal has counted exactly `want` lines and its lag is 0, then
/// checks the count stays.
fn counted(heal: SocketAddr, dir: &Path, want: usize, what: &str) {
    let lines = r#"heal_log_lines_total{source="app"}"#;
    let t0 = std::time::Instant::now();
    let mut last = String::new();
    let got = loop {
        let m = metrics(heal).unwrap_or_default();
        let n = sample(&m, lines);
        assert!(
            n.first().is_none_or(|v| *v <= want as f64),
            "{what}: counted {n:?}, more than the {want} produced\n{}",
            log_heal_stderr(dir)
        );
        let lag = sample(&m, "heal_log_kafka_lag{");
        if n == [want as f64] && lag.len() == 2 && lag.iter().all(|l| *l == 0.0) {
            break m;
        }
        last = m;
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: not {want} lines with no lag after 60 s:\n{}\n{}",
            last.lines()
                .filter(|l| l.starts_with("heal_log"))
                .collect::<Vec<_>>()
                .join("\n"),
            log_heal_stderr(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = last;
    std::thread::sleep(Duration::from_millis(2_500));
    let again = metrics(heal).unwrap();
    assert_eq!(
        sample(&again, lines),
        [want as f64],
        "{what}: the count moved\n{got}"
    );
}

#[test]
fn a_kafka_source_counts_every_line_once_across_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_broker, brokers) = start_broker("app-logs", 2);
    write_runbook(d, &brokers, "group: heal-test, assign: all_partitions");
    let port = free_port();
    let heal = SocketAddr::from(([127, 0, 0, 1], port));
    let mut produced = 0;

    // Lines produced before heal joins: read from the beginning.
    produce(&brokers, "app-logs", produced, 2_000);
    produced += 2_000;
    let mut watch = start_log_heal(d, port, 0);
    counted(heal, d, produced, "the first lines");

    // More lines, and heal killed while it may not have committed them;
    // more while it is down. The restarted member resumes from the
    // committed offsets and the count committed with them.
    produce(&brokers, "app-logs", produced, 1_000);
    produced += 1_000;
    std::thread::sleep(Duration::from_millis(700));
    watch.0.kill().unwrap();
    watch.0.wait().unwrap();
    produce(&brokers, "app-logs", produced, 500);
    produced += 500;
    watch = start_log_heal(d, port, 1);
    counted(heal, d, produced, "after a SIGKILL");
    let m = metrics(heal).unwrap();
    assert_eq!(
        sample(&m, r#"heal_log_templates{source="app"}"#),
        [3.0],
        "{m}"
    );
    drop(watch);
}

/// `group` mode: heal subscribes as a member of a consumer group and gets
/// the partitions by the group's assignment; every line is counted.
#[test]
fn a_kafka_source_in_group_mode_reads_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_broker, brokers) = start_broker("app-logs", 2);
    write_runbook(d, &brokers, "group: heal-group");
    produce(&brokers, "app-logs", 0, 1_000);
    let port = free_port();
    let heal = SocketAddr::from(([127, 0, 0, 1], port));
    let _watch = start_log_heal(d, port, 0);
    counted(heal, d, 1_000, "as a group member");
    produce(&brokers, "app-logs", 1_000, 300);
    counted(heal, d, 1_300, "new lines as a group member");
}

/// The lines heal at `heal` has counted, when it answers.
fn count_of(heal: SocketAddr) -> Option<f64> {
    sample(&metrics(heal)?, r#"heal_log_lines_total{source="app"}"#)
        .first()
        .copied()
}

/// Two heal processes in one consumer group share a topic's partitions:
/// the group hands the second one a partition when it joins and gives it
/// back to the first when it leaves (SIGTERM), and between them every line
/// is counted once (each resumes a partition from the offset the other
/// committed).
#[test]
fn two_members_of_a_group_share_the_partitions_and_count_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_broker, brokers) = start_broker("app-logs", 2);
    write_runbook(d, &brokers, "group: heal-pair");
    produce(&brokers, "app-logs", 0, 1_000);
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (
        SocketAddr::from(([127, 0, 0, 1], pa)),
        SocketAddr::from(([127, 0, 0, 1], pb)),
    );
    let _first = start_log_heal(d, pa, 0);
    counted(a, d, 1_000, "the first member alone");

    // The second member has a state file of its own.
    let second_dir = d.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    std::fs::create_dir_all(second_dir.join("runbooks")).unwrap();
    std::fs::copy(
        d.join("runbooks/app.yaml"),
        second_dir.join("runbooks/app.yaml"),
    )
    .unwrap();
    let mut second = start_log_heal(&second_dir, pb, 0);
    let held = |heal: SocketAddr| {
        metrics(heal).map(|m| {
            m.lines()
                .filter(|l| l.starts_with("heal_log_kafka_lag{"))
                .count()
        })
    };
    common::wait_until(
        "the second member to be given a partition",
        Duration::from_secs(90),
        || held(b).filter(|n| *n >= 1),
    );
    // Lines on both partitions now: each member counts its own.
    produce(&brokers, "app-logs", 1_000, 400);
    let both = || Some(count_of(a)? + count_of(b)?);
    common::wait_until(
        "1,400 lines between the two",
        Duration::from_secs(60),
        || both().filter(|n| *n == 1_400.0),
    );
    let b_count = count_of(b).unwrap();
    assert!(
        b_count > 0.0 && b_count < 400.0,
        "the second member counted {b_count} of the 400 new lines: it should hold one partition"
    );
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(both(), Some(1_400.0), "a count moved");

    // The second leaves; the first takes its partition back from where
    // the second committed, and counts only what comes after.
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &second.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let _ = second.0.wait();
    produce(&brokers, "app-logs", 1_400, 200);
    let want = 1_600.0 - b_count;
    let t0 = std::time::Instant::now();
    while count_of(a) != Some(want) {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the first member counted {:?}, not {want}, 90 s after the second left\nfirst:\n{}\nsecond:\n{}",
            count_of(a),
            log_heal_stderr(d),
            log_heal_stderr(&second_dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(count_of(a), Some(want), "the first member's count moved");
}

/// `heal record` of a Kafka source: every line of every partition, under a
/// consumer group of its own that commits nothing, so the heal that then
/// watches the topic with the runbook's group still finds every line to
/// count.
#[test]
fn a_kafka_source_is_recorded_without_disturbing_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_broker, brokers) = start_broker("app-logs", 2);
    write_runbook(d, &brokers, "group: heal-rec, assign: all_partitions");
    produce(&brokers, "app-logs", 0, 500);
    let rec = d.join("rec.logs.parquet");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["record", "--runbooks"])
        .arg(d.join("runbooks"))
        .args(["--log-source", "app", "--from-start", "--idle", "3s", "-o"])
        .arg(&rec)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("wrote 500 log lines"), "{out}");
    let recorded = ingest::LogDataset::read(&rec).unwrap();
    let mut lines: Vec<&str> = recorded.lines.iter().map(|l| l.line.as_str()).collect();
    lines.sort_unstable();
    let mut want: Vec<String> = (0..500).map(log_line).collect();
    want.sort_unstable();
    assert_eq!(lines, want);
    // The runbook's group committed nothing: its heal counts all 500.
    let port = free_port();
    let heal = SocketAddr::from(([127, 0, 0, 1], port));
    let _watch = start_log_heal(d, port, 0);
    counted(heal, d, 500, "after the recording");
}
