//! The probe source against real local HTTP servers: one that answers, one that hangs (accepts
//! and never answers), a closed port, a 500, a redirect and a hostile label value; targets come
//! from a fake Prometheus on a local port.
//!
//! Time is a [`ManualClock`] the test moves by hand, not tokio's paused time: paused time
//! auto-advances while the runtime waits on I/O, so every real request would time out at once.
//! Probe timeouts are a minute long, so only the manual clock can end the hung probe: its
//! result arriving as soon as the clock reaches the slot shows the deadline is the slot's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::sources::prometheus::{Clock, Evaluation, PrometheusClient, SourceEvent, Timer};
use crate::{Labels, PrometheusConfig, RetryConfig};

/// A clock that stays where the test puts it.
#[derive(Clone, Debug)]
struct ManualClock(Arc<watch::Sender<i64>>);

impl ManualClock {
    fn at(ms: i64) -> Self {
        ManualClock(Arc::new(watch::channel(ms).0))
    }

    fn set(&self, ms: i64) {
        self.0.send_replace(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.0.borrow()
    }
}

impl Timer for ManualClock {
    async fn sleep_until(&self, ts_ms: i64) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|now| *now >= ts_ms).await;
    }
}

/// How a test server answers.
#[derive(Clone)]
enum Answer {
    /// This status and body.
    Status(u16, String),
    /// Accepts, reads the request, never answers.
    Hang,
}

/// Serves `answer` on an ephemeral port until the runtime ends; returns the address.
async fn serve(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(answer_one(stream, answer.clone()));
        }
    });
    addr
}

async fn answer_one(mut stream: TcpStream, answer: Answer) {
    // Read the head and, for a POST, the body (the fake Prometheus gets form posts).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                break;
            }
        }
    }
    match answer {
        Answer::Hang => {
            // Hold the connection open without a word until the client leaves.
            let _ = stream.read(&mut chunk).await;
        }
        Answer::Status(code, body) => {
            let location = if code / 100 == 3 {
                "Location: http://127.0.0.1:9/\r\n"
            } else {
                ""
            };
            let reply = format!(
                "HTTP/1.1 {code} X\r\n{location}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    }
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

/// A Prometheus answering every instant query with one `up` series per address.
async fn prometheus_with_targets(addresses: &[(&str, &str)]) -> String {
    let result: Vec<String> = addresses
        .iter()
        .map(|(name, address)| {
            format!(
                r#"{{"metric":{{"__name__":"up","job":"lab","service":"{name}","address":"{address}"}},"value":[1.0,"1"]}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        result.join(",")
    );
    format!("http://{}", serve(Answer::Status(200, body)).await)
}

fn client(url: &str) -> PrometheusClient {
    let mut config = PrometheusConfig::new(url);
    config.timeout_ms = 10_000;
    config.retry = RetryConfig {
        max_attempts: 1,
        ..RetryConfig::default()
    };
    PrometheusClient::new(config).unwrap().with_seed(7)
}

const INTERVAL: i64 = 120_000;
const TIMEOUT: u64 = 60_000;

fn signal() -> ProbeSignal {
    ProbeSignal {
        name: "probe_success".into(),
        targets: r#"up{job="lab"}"#.into(),
        url: UrlTemplate::new(vec![
            UrlPart::Literal("http://".into()),
            UrlPart::Label("address".into()),
            UrlPart::Literal("/healthz".into()),
        ]),
        timeout_ms: TIMEOUT,
    }
}

type Seen = Arc<Mutex<Vec<ProbeResult>>>;

fn options() -> (ProbeOptions, Seen) {
    let seen: Seen = Arc::default();
    let mut options = ProbeOptions::new(INTERVAL);
    let s = seen.clone();
    options.observer = Some(Arc::new(move |signal: &str, result| {
        assert_eq!(signal, "probe_success");
        s.lock().unwrap().push(result);
    }));
    (options, seen)
}

/// Waits (at most 10 s of real time) until `seen` holds `n` results.
async fn wait_for_results(seen: &Seen, n: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "only {:?} after 10 s", seen.lock().unwrap());
}

async fn next_evaluation(rx: &mut mpsc::Receiver<SourceEvent>) -> Evaluation {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(SourceEvent::Evaluation(e))) => e,
        other => panic!("expected an evaluation, got {other:?}"),
    }
}

fn value_of(e: &Evaluation, service: &str) -> Option<f64> {
    e.outcome
        .as_ref()
        .unwrap()
        .iter()
        .find(|(l, _)| l.get("service") == Some(service))
        .map(|(_, v)| *v)
}

#[tokio::test]
async fn probes_every_kind_of_target_and_reports_the_hang_at_the_slot() {
    let ok = serve(Answer::Status(200, "ok".into())).await;
    let hung = serve(Answer::Hang).await;
    let error = serve(Answer::Status(500, "unhealthy".into())).await;
    let redirect = serve(Answer::Status(302, String::new())).await;
    let closed = closed_port().await;
    let hostile = format!("evil.example@{ok}");
    let prometheus = prometheus_with_targets(&[
        ("ok", &ok),
        ("hung", &hung),
        ("error", &error),
        ("redirect", &redirect),
        ("closed", &closed),
        ("hostile", &hostile),
    ])
    .await;

    let start = 10 * INTERVAL + 5;
    let clock = ManualClock::at(start);
    let (options, seen) = options();
    let (tx, mut rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let source = tokio::spawn(run_probe_source_with_clock(
        client(&prometheus),
        vec![signal()],
        options,
        tx,
        shutdown.clone(),
        clock.clone(),
    ));
    // The first slot whose probe can start on time: 12 * INTERVAL, probed from 11.5 * INTERVAL.
    let slot = 12 * INTERVAL;
    clock.set(slot - TIMEOUT as i64);
    // Everything but the hung target answers (or is refused) in real time...
    wait_for_results(&seen, 5).await;
    // ...but the slot's evaluation waits for the hung one, whose deadline is the slot.
    tokio::task::yield_now().await;
    assert!(rx.try_recv().is_err(), "sent before the slot");
    clock.set(slot);
    let e = next_evaluation(&mut rx).await;
    assert_eq!(e.ts_ms, slot);
    assert_eq!(e.signal, "probe_success");
    assert_eq!(value_of(&e, "ok"), Some(1.0));
    assert_eq!(value_of(&e, "hung"), Some(0.0));
    assert_eq!(value_of(&e, "error"), Some(0.0));
    assert_eq!(value_of(&e, "redirect"), Some(0.0));
    assert_eq!(value_of(&e, "closed"), Some(0.0));
    assert_eq!(
        value_of(&e, "hostile"),
        None,
        "an unsafe target is not probed"
    );
    let series = e.outcome.as_ref().unwrap();
    assert_eq!(series.len(), 5);
    assert!(series
        .iter()
        .all(|(l, _)| l.name() == Some("probe_success") && l.get("job") == Some("lab")));
    let mut results = seen.lock().unwrap().clone();
    results.sort();
    assert_eq!(
        results,
        [
            ProbeResult::Ok,
            ProbeResult::Timeout,
            ProbeResult::Refused,
            ProbeResult::HttpError,
            ProbeResult::HttpError,
            ProbeResult::InvalidTarget,
        ]
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), source)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn keeps_probing_the_last_known_targets_when_prometheus_goes_away() {
    let ok = serve(Answer::Status(200, "ok".into())).await;
    // A Prometheus that answers once, then is gone: a listener closed after one connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let prometheus = format!("http://{}", listener.local_addr().unwrap());
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"__name__":"up","service":"ok","address":"{ok}"}},"value":[1.0,"1"]}}]}}}}"#
    );
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        drop(listener);
        answer_one(stream, Answer::Status(200, body)).await;
    });

    let clock = ManualClock::at(10 * INTERVAL);
    let (options, seen) = options();
    let (tx, mut rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let source = tokio::spawn(run_probe_source_with_clock(
        client(&prometheus),
        vec![signal()],
        options,
        tx,
        shutdown.clone(),
        clock.clone(),
    ));
    for (k, slot) in [11, 12, 13].map(|k| (k, k * INTERVAL)) {
        clock.set(slot - TIMEOUT as i64);
        wait_for_results(&seen, (k - 10) as usize).await;
        clock.set(slot);
        let e = next_evaluation(&mut rx).await;
        assert_eq!(e.ts_ms, slot);
        assert_eq!(value_of(&e, "ok"), Some(1.0), "slot {k}");
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), source)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn no_targets_before_prometheus_answers_is_no_data() {
    let prometheus = format!("http://{}", closed_port().await);
    let clock = ManualClock::at(10 * INTERVAL);
    let (options, seen) = options();
    let (tx, mut rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let source = tokio::spawn(run_probe_source_with_clock(
        client(&prometheus),
        vec![signal()],
        options,
        tx,
        shutdown.clone(),
        clock.clone(),
    ));
    // Whenever the source starts reading the clock, its first slot is 11 * INTERVAL.
    clock.set(11 * INTERVAL - TIMEOUT as i64);
    tokio::task::yield_now().await;
    clock.set(11 * INTERVAL);
    let e = next_evaluation(&mut rx).await;
    assert_eq!(e.ts_ms, 11 * INTERVAL);
    let error = e.outcome.unwrap_err();
    // "connect" when the refusal came before the slot, "timeout" when the slot came first.
    assert!(["connect", "timeout"].contains(&error.kind()), "{error}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was probed");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), source)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn refuses_a_timeout_not_below_the_interval() {
    let mut s = signal();
    s.timeout_ms = INTERVAL as u64;
    let (tx, _rx) = mpsc::channel(1);
    let e = run_probe_source_with_clock(
        client("http://127.0.0.1:9"),
        vec![s],
        ProbeOptions::new(INTERVAL),
        tx,
        CancellationToken::new(),
        ManualClock::at(0),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "preparing prometheus request: probe signal \"probe_success\": timeout must be above 0 and below the evaluation interval (120000 ms), got 120000 ms"
    );
}

#[test]
fn labels_parse_for_the_fixture() {
    let l: Labels = r#"up{address="127.0.0.1:1"}"#.parse().unwrap();
    assert_eq!(l.get("address"), Some("127.0.0.1:1"));
}
