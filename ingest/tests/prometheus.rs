//! The Prometheus client, source and recorder against a real Prometheus (`/usr/bin/prometheus`,
//! started per test by `support::prometheus`), and against `fake_*` servers: plain sockets that
//! stand in for a misbehaving server (silent, answering garbage or bare HTTP errors), which the
//! real Prometheus cannot be made to be.
//!
//! Source tests run on `FakeClock`, a clock that jumps to whatever time the source waits for,
//! instead of tokio's paused time: paused time auto-advances whenever the runtime waits on I/O,
//! so every real HTTP request would hit its timeout at once.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ingest::{
    record, run_source_with_clock, Clock, Dataset, Evaluation, Labels, PromError, PrometheusClient,
    PrometheusConfig, RecordQuery, RetryConfig, Sample, SignalQuery, SourceEvent, SourceStats,
    Timer,
};
use support::prometheus::{free_port, Prometheus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A config with short, jitter-free backoff so that retrying tests take milliseconds.
fn config(url: &str, max_attempts: u32) -> PrometheusConfig {
    PrometheusConfig {
        retry: RetryConfig {
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            max_attempts,
            jitter: 0.2,
        },
        ..PrometheusConfig::new(url)
    }
}

fn client(cfg: PrometheusConfig) -> PrometheusClient {
    PrometheusClient::new(cfg).unwrap().with_seed(7)
}

fn now_ms() -> i64 {
    ingest::SystemClock.now_ms()
}

fn l(s: &str) -> Labels {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Instant and range queries against the real Prometheus.

#[tokio::test]
async fn instant_queries_of_up_and_build_info() {
    let prom = Prometheus::start();
    let c = client(config(&prom.url, 1));
    let up = c.query("up", now_ms()).await.unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    let (labels, value) = &up[0];
    assert_eq!(labels.name(), Some("up"));
    assert_eq!(labels.get("job"), Some("prometheus"));
    assert_eq!(*value, 1.0);

    let info = c.query("prometheus_build_info", now_ms()).await.unwrap();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].0.name(), Some("prometheus_build_info"));
    assert!(
        info[0]
            .0
            .get("version")
            .is_some_and(|v| v.starts_with("2.")),
        "{info:?}"
    );
    assert_eq!(info[0].1, 1.0);

    // A scalar is one series without labels; the time asked for is the time evaluated at.
    let t = c.query("time()", 1_700_000_000_250).await.unwrap();
    assert_eq!(t, vec![(Labels::new(), 1_700_000_000.25)]);
}

#[tokio::test]
async fn nan_and_infinities_parse() {
    let prom = Prometheus::start();
    let c = client(config(&prom.url, 1));
    let at = now_ms();
    let nan = c.query("0/0", at).await.unwrap();
    assert_eq!(nan.len(), 1);
    assert!(nan[0].1.is_nan());
    assert_eq!(
        c.query("1/0", at).await.unwrap(),
        vec![(Labels::new(), f64::INFINITY)]
    );
    assert_eq!(
        c.query("-1/0", at).await.unwrap(),
        vec![(Labels::new(), f64::NEG_INFINITY)]
    );
    let vector = c.query("up / 0", at).await.unwrap();
    assert_eq!(vector.len(), 1);
    assert_eq!(vector[0].1, f64::INFINITY);
    let range = c.query_range("0/0", at - 2_000, at, 1_000).await.unwrap();
    assert_eq!(range.len(), 1);
    assert_eq!(range[0].1.len(), 3);
    assert!(range[0].1.iter().all(|s| s.value.is_nan()));
}

#[tokio::test]
async fn strings_and_matrices_are_not_instant_vectors() {
    let prom = Prometheus::start();
    let c = client(config(&prom.url, 3));
    let e = c.query_attempted("\"hello\"", now_ms(), None).await;
    assert_eq!(e.attempts, 1);
    match e.result {
        Err(PromError::Decode { reason, .. }) => assert_eq!(
            reason,
            "expected an instant vector or a scalar, got a string"
        ),
        other => panic!("expected Decode, got {other:?}"),
    }
    match c.query("up[10s]", now_ms()).await {
        Err(PromError::Decode { reason, .. }) => assert_eq!(
            reason,
            "expected an instant vector or a scalar, got a matrix"
        ),
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_promql_is_an_api_error_and_not_retried() {
    let prom = Prometheus::start();
    let c = client(config(&prom.url, 4));
    let a = c.query_attempted("sum(", now_ms(), None).await;
    assert_eq!(a.attempts, 1, "a bad query must not be retried");
    let e = a.result.unwrap_err();
    match &e {
        PromError::Api {
            status, error_type, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_type, "bad_data");
        }
        other => panic!("expected Api, got {other:?}"),
    }
    assert!(!e.retryable());
    assert!(
        e.to_string().starts_with(&format!(
            "querying {}/api/v1/query: prometheus error bad_data (http status 400): ",
            prom.url
        )),
        "{e}"
    );
    // The same through a range query.
    let e = c.query_range("sum(", 0, 10_000, 1_000).await.unwrap_err();
    assert!(matches!(e, PromError::Api { .. }), "{e:?}");
}

/// A range query over a few seconds at a tiny step with a chunk limit of 7 points: several
/// chunks, merged into exactly what one unchunked request returns, for a series that is always
/// there and one that comes and goes (present only in even seconds).
#[tokio::test]
async fn range_queries_are_chunked_and_merged() {
    let prom = Prometheus::start();
    std::thread::sleep(Duration::from_secs(3)); // a few scrapes of history
    let whole = client(config(&prom.url, 1));
    let chunked = whole.clone().with_max_points_per_chunk(7);
    let end = now_ms() / 1000 * 1000;
    let start = end - 4_000;
    let step = 250; // 17 points: chunks of 7, 7 and 3
    for expr in [
        "up",
        "time()",
        "up and on() (vector(time()) % 2 < 1)",
        "label_replace(up, \"half\", \"x\", \"\", \"\") and on() (vector(time()) % 2 >= 1)",
    ] {
        let one = whole
            .query_range_attempted(expr, start, end, step, None)
            .await;
        let many = chunked
            .query_range_attempted(expr, start, end, step, None)
            .await;
        assert_eq!(one.attempts, 1);
        assert_eq!(many.attempts, 3, "three chunks, one attempt each");
        let (one, many) = (one.result.unwrap(), many.result.unwrap());
        assert_eq!(one, many, "{expr}");
        assert!(!many.is_empty(), "{expr}");
        for (labels, samples) in &many {
            assert!(
                samples.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms),
                "{expr} {labels}: not strictly increasing"
            );
            assert!(samples
                .iter()
                .all(|s| (s.ts_ms - start) % step == 0 && s.ts_ms <= end));
        }
    }
    let clock = chunked
        .query_range("time()", start, end, step)
        .await
        .unwrap();
    assert_eq!(clock.len(), 1);
    let expected: Vec<Sample> = (0..17)
        .map(|i| start + i * step)
        .map(|ts| Sample::new(ts, ts as f64 / 1000.0))
        .collect();
    assert_eq!(clock[0].1, expected);
    // The series that comes and goes has gaps of a second, and spans several chunks.
    let gappy = chunked
        .query_range(
            "vector(time()) and on() (vector(time()) % 2 < 1)",
            start,
            end,
            step,
        )
        .await
        .unwrap();
    let ts: Vec<i64> = gappy[0]
        .1
        .iter()
        .map(|s| (s.ts_ms - start) / step)
        .collect();
    assert!(ts.len() < 17 && ts.len() >= 8, "{ts:?}");
}

#[tokio::test]
async fn record_writes_a_dataset() {
    let prom = Prometheus::start();
    std::thread::sleep(Duration::from_secs(2));
    let c = client(config(&prom.url, 1)).with_max_points_per_chunk(5);
    let end = now_ms() / 1000 * 1000;
    let start = end - 2_000;
    let queries = [
        RecordQuery {
            name: Some("clock".into()),
            query: "time()".into(),
        },
        RecordQuery {
            name: None,
            query: "up".into(),
        },
        RecordQuery {
            name: None,
            query: "sum(up)".into(),
        },
    ];
    let dataset = record(&c, &queries, start, end, 500).await.unwrap();
    let names: Vec<_> = dataset
        .series
        .iter()
        .map(|s| s.labels.name().unwrap().to_string())
        .collect();
    assert_eq!(names, ["clock", "query_3", "up"]);
    assert_eq!(dataset.series[0].samples.len(), 5);
    assert_eq!(
        dataset.series[0].samples[4],
        Sample::new(end, end as f64 / 1000.0)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.parquet");
    dataset.write(&path).unwrap();
    assert_eq!(Dataset::read(&path).unwrap(), dataset);

    // Two queries naming the same series are refused, not silently merged.
    let clash = [
        RecordQuery {
            name: Some("x".into()),
            query: "time()".into(),
        },
        RecordQuery {
            name: Some("x".into()),
            query: "time() * 2".into(),
        },
    ];
    let e = record(&c, &clash, start, end, 500).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "preparing prometheus request: queries \"time()\" and \"time() * 2\" both yield series x; name them apart with NAME=PROMQL"
    );
}

/// Three series `{i="1"}`, `{i="2"}`, `{i="3"}` from constants: no scrape data needed.
const THREE_SERIES: &str = r#"label_replace(vector(3), "i", "3", "", "") or label_replace(vector(1), "i", "1", "", "") or label_replace(vector(2), "i", "2", "", "")"#;

#[tokio::test]
async fn series_cap_truncates_live_and_refuses_recording() {
    let prom = Prometheus::start();
    let mut cfg = config(&prom.url, 1);
    cfg.max_series_per_signal = 2;
    let c = client(cfg);
    assert_eq!(c.query(THREE_SERIES, now_ms()).await.unwrap().len(), 3);

    let (tx, mut rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let clock = FakeClock::at(now_ms());
    let source = tokio::spawn(run_source_with_clock(
        c.clone(),
        vec![SignalQuery::new("three", THREE_SERIES)],
        1_000,
        Some(3_000),
        tx,
        shutdown.clone(),
        clock,
    ));
    match rx.recv().await.unwrap() {
        SourceEvent::Backfill {
            signal,
            series,
            truncated,
            duplicates,
        } => {
            assert_eq!(signal, "three");
            let labels: Vec<_> = series.iter().map(|(l, _)| l.clone()).collect();
            assert_eq!(labels, [l(r#"three{i="1"}"#), l(r#"three{i="2"}"#)]);
            assert_eq!((truncated, duplicates), (1, 0));
        }
        other => panic!("expected a back-fill, got {other:?}"),
    }
    let e = evaluation(rx.recv().await);
    assert_eq!(
        e.outcome.unwrap(),
        vec![(l(r#"three{i="1"}"#), 1.0), (l(r#"three{i="2"}"#), 2.0)]
    );
    assert_eq!((e.truncated, e.duplicates, e.attempts), (1, 0, 1));
    shutdown.cancel();
    source.await.unwrap().unwrap();

    let end = now_ms();
    let q = [RecordQuery {
        name: Some("three".into()),
        query: THREE_SERIES.into(),
    }];
    match record(&c, &q, end - 1_000, end, 1_000).await {
        Err(PromError::TooManySeries { got, cap, .. }) => assert_eq!((got, cap), (3, 2)),
        other => panic!("expected TooManySeries, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Failures, with nothing listening or with fake servers.

#[tokio::test]
async fn prometheus_down_is_connect_retried_max_attempts() {
    let port = free_port();
    let c = client(config(&format!("http://127.0.0.1:{port}"), 4));
    let a = c.query_attempted("up", now_ms(), None).await;
    assert_eq!(a.attempts, 4);
    let e = a.result.unwrap_err();
    assert!(matches!(e, PromError::Connect { .. }), "{e:?}");
    assert!(e.retryable());
    assert!(
        e.to_string().starts_with(&format!(
            "connecting to http://127.0.0.1:{port}/api/v1/query: "
        )),
        "{e}"
    );
    let r = c.query_range_attempted("up", 0, 10_000, 1_000, None).await;
    assert_eq!(r.attempts, 4);
    assert!(matches!(r.result, Err(PromError::Connect { .. })));
}

#[tokio::test]
async fn slow_server_times_out() {
    let fake = FakeSilentServer::start();
    let mut cfg = config(&fake.url, 2);
    cfg.timeout_ms = 300;
    let c = client(cfg);
    let started = Instant::now();
    let a = c.query_attempted("up", now_ms(), None).await;
    let elapsed = started.elapsed();
    assert_eq!(a.attempts, 2);
    let e = a.result.unwrap_err();
    assert_eq!(
        e,
        PromError::Timeout {
            url: format!("{}/api/v1/query", fake.url),
            timeout_ms: 300
        }
    );
    assert!(e.retryable());
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn garbage_is_a_decode_error_not_retried() {
    let fake = FakeHttpServer::start(200, "application/json", "not json");
    let c = client(config(&fake.url, 4));
    let a = c.query_attempted("up", now_ms(), None).await;
    assert_eq!(a.attempts, 1);
    match a.result {
        Err(PromError::Decode { reason, .. }) => {
            assert!(reason.ends_with(r#"(body starts "not json")"#), "{reason}")
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn http_errors_without_prometheus_body() {
    let unavailable = FakeHttpServer::start(503, "text/plain", "upstream down");
    let c = client(config(&unavailable.url, 3));
    let a = c.query_attempted("up", now_ms(), None).await;
    assert_eq!(a.attempts, 3, "5xx is retried");
    assert_eq!(
        a.result.unwrap_err().to_string(),
        format!(
            "querying {}/api/v1/query: http status 503: upstream down",
            unavailable.url
        )
    );
    let forbidden = FakeHttpServer::start(403, "text/plain", "no");
    let c = client(config(&forbidden.url, 3));
    let a = c.query_attempted("up", now_ms(), None).await;
    assert_eq!(a.attempts, 1, "4xx is not retried");
    assert!(matches!(a.result, Err(PromError::Http { status: 403, .. })));
    // Prometheus' error body on a 503 is an Api error, and retryable.
    let busy = FakeHttpServer::start(
        503,
        "application/json",
        r#"{"status":"error","errorType":"unavailable","error":"too many queries"}"#,
    );
    let c = client(config(&busy.url, 2));
    let a = c.query_attempted("up", now_ms(), None).await;
    assert_eq!(a.attempts, 2);
    assert!(matches!(a.result, Err(PromError::Api { status: 503, .. })));
}

#[tokio::test]
async fn requests_carry_auth_and_form() {
    let fake = FakeHttpServer::start(
        200,
        "application/json",
        r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}"#,
    );
    let mut bearer = config(&fake.url, 1);
    bearer.auth = Some(ingest::Auth::Bearer {
        token: "t0k".into(),
    });
    assert_eq!(
        client(bearer).query("up", 1_500).await.unwrap(),
        vec![(Labels::new(), 2.0)]
    );
    let mut basic = config(&format!("{}/", fake.url), 1);
    basic.auth = Some(ingest::Auth::Basic {
        username: "u".into(),
        password: "p".into(),
    });
    client(basic).query("up", 1_500).await.unwrap();
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert!(r.starts_with("POST /api/v1/query HTTP/1.1\r\n"), "{r}");
        assert!(
            r.ends_with("\r\n\r\nquery=up&time=1.500&timeout=5.000"),
            "{r}"
        );
    }
    let lower: Vec<String> = requests.iter().map(|r| r.to_lowercase()).collect();
    assert!(
        lower[0].contains("\r\nauthorization: bearer t0k\r\n"),
        "{}",
        requests[0]
    );
    // base64("u:p")
    assert!(
        lower[1].contains("\r\nauthorization: basic dtpw\r\n"),
        "{}",
        requests[1]
    );
}

// ---------------------------------------------------------------------------------------------
// The source.

fn evaluation(event: Option<SourceEvent>) -> Evaluation {
    match event {
        Some(SourceEvent::Evaluation(e)) => e,
        other => panic!("expected an evaluation, got {other:?}"),
    }
}

#[tokio::test]
async fn source_backfills_then_evaluates_at_aligned_slots() {
    let prom = Prometheus::start();
    std::thread::sleep(Duration::from_secs(2));
    let c = client(config(&prom.url, 1));
    let start = now_ms() / 1000 * 1000 + 437; // not on the grid
    let clock = FakeClock::at(start);
    let (tx, mut rx) = mpsc::channel(2);
    let shutdown = CancellationToken::new();
    let signals = vec![
        SignalQuery::new("clock", "time()"),
        SignalQuery::new("targets_up", "up"),
    ];
    let source = tokio::spawn(run_source_with_clock(
        c,
        signals,
        1_000,
        Some(5_000),
        tx,
        shutdown.clone(),
        clock,
    ));
    let last_backfilled = start / 1000 * 1000;
    match rx.recv().await.unwrap() {
        SourceEvent::Backfill { signal, series, .. } => {
            assert_eq!(signal, "clock");
            let expected: Vec<Sample> = (last_backfilled - 4_000..=last_backfilled)
                .step_by(1_000)
                .map(|ts| Sample::new(ts, ts as f64 / 1000.0))
                .collect();
            assert_eq!(series, vec![(Labels::metric("clock"), expected)]);
        }
        other => panic!("expected the clock's back-fill, got {other:?}"),
    }
    match rx.recv().await.unwrap() {
        SourceEvent::Backfill { signal, series, .. } => {
            assert_eq!(signal, "targets_up");
            assert_eq!(series.len(), 1);
            assert_eq!(series[0].0.name(), Some("targets_up"));
            assert_eq!(series[0].0.get("job"), Some("prometheus"));
            assert!(series[0]
                .1
                .iter()
                .all(|s| s.ts_ms % 1000 == 0 && s.value == 1.0));
            assert_eq!(series[0].1.last().unwrap().ts_ms, last_backfilled);
        }
        other => panic!("expected up's back-fill, got {other:?}"),
    }
    for k in 1..=5 {
        let ts = last_backfilled + k * 1000;
        let clock_eval = evaluation(rx.recv().await);
        assert_eq!(clock_eval.signal, "clock");
        assert_eq!(clock_eval.ts_ms, ts);
        assert_eq!(
            clock_eval.outcome.unwrap(),
            vec![(Labels::metric("clock"), ts as f64 / 1000.0)]
        );
        let up = evaluation(rx.recv().await);
        assert_eq!((up.signal.as_str(), up.ts_ms), ("targets_up", ts));
        let series = up.outcome.unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].0.name(), Some("targets_up"));
    }
    shutdown.cancel();
    let stats = source.await.unwrap().unwrap();
    assert!(stats.slots >= 5 && stats.failed == 0, "{stats:?}");
}

/// Prometheus is down when the source starts: every evaluation is an error (no data), the loop
/// keeps its schedule, and once Prometheus comes up on that port the next evaluations succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_keeps_running_while_prometheus_is_down_then_recovers() {
    let port = free_port();
    let c = client(config(&format!("http://127.0.0.1:{port}"), 2));
    let start = 1_700_000_000_250;
    let (tx, mut rx) = mpsc::channel(2);
    let shutdown = CancellationToken::new();
    let source = tokio::spawn(run_source_with_clock(
        c,
        vec![SignalQuery::new("clock", "time()")],
        1_000,
        Some(10_000),
        tx,
        shutdown.clone(),
        FakeClock::at(start),
    ));
    match rx.recv().await.unwrap() {
        SourceEvent::BackfillFailed { signal, error } => {
            assert_eq!(signal, "clock");
            assert!(matches!(error, PromError::Connect { .. }), "{error:?}");
        }
        other => panic!("expected a failed back-fill, got {other:?}"),
    }
    let mut expected_ts = 1_700_000_001_000;
    for _ in 0..3 {
        let e = evaluation(rx.recv().await);
        assert_eq!(e.ts_ms, expected_ts);
        assert!(matches!(e.outcome, Err(PromError::Connect { .. })), "{e:?}");
        assert_eq!(e.attempts, 2);
        expected_ts += 1000;
    }
    let prom = tokio::task::spawn_blocking(move || Prometheus::start_on(port))
        .await
        .unwrap();
    let mut recovered = None;
    for _ in 0..1000 {
        let e = evaluation(rx.recv().await);
        assert_eq!(e.ts_ms, expected_ts, "slots stay consecutive and aligned");
        expected_ts += 1000;
        if let Ok(series) = e.outcome {
            recovered = Some((e.ts_ms, series));
            break;
        }
    }
    let (ts, series) = recovered.expect("the source recovers once Prometheus is up");
    assert_eq!(series, vec![(Labels::metric("clock"), ts as f64 / 1000.0)]);
    let next = evaluation(rx.recv().await);
    assert!(next.outcome.is_ok(), "{next:?}");
    shutdown.cancel();
    let stats: SourceStats = source.await.unwrap().unwrap();
    assert!(stats.failed >= 3 && stats.skipped_slots == 0, "{stats:?}");
    drop(prom);
}

/// A consumer that does not keep up holds the source (bounded channel); the slots that passed
/// meanwhile are skipped and reported once, not evaluated late.
#[tokio::test]
async fn slow_consumer_makes_the_source_skip_slots() {
    let c = client(config(&format!("http://127.0.0.1:{}", free_port()), 1));
    let clock = FakeClock::at(10_000);
    let (tx, mut rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let source = tokio::spawn(run_source_with_clock(
        c,
        vec![SignalQuery::new("s", "up")],
        1_000,
        None,
        tx,
        shutdown.clone(),
        clock.clone(),
    ));
    // The source has sent slot 10 s (the channel is now full) and is waiting to send slot 11 s
    // once its clock reached 11 s.
    while clock.now_ms() < 11_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.set(15_500);
    assert_eq!(evaluation(rx.recv().await).ts_ms, 10_000);
    assert_eq!(evaluation(rx.recv().await).ts_ms, 11_000);
    assert_eq!(
        rx.recv().await,
        Some(SourceEvent::Skipped {
            first_ts_ms: 12_000,
            slots: 3
        })
    );
    assert_eq!(evaluation(rx.recv().await).ts_ms, 15_000);
    assert_eq!(evaluation(rx.recv().await).ts_ms, 16_000);
    shutdown.cancel();
    let stats = source.await.unwrap().unwrap();
    assert_eq!(stats.skipped_slots, 3);
}

#[tokio::test]
async fn source_stops_promptly_on_shutdown_and_when_the_receiver_is_gone() {
    // Waiting on a slow server: cancellation does not wait for the timeout.
    let fake = FakeSilentServer::start();
    let mut cfg = config(&fake.url, 1);
    cfg.timeout_ms = 60_000;
    let (tx, _rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let source = tokio::spawn(run_source_with_clock(
        client(cfg),
        vec![SignalQuery::new("s", "up")],
        1_000,
        None,
        tx,
        shutdown.clone(),
        FakeClock::at(0),
    ));
    while fake.connections.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    shutdown.cancel();
    let stats = source.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.evaluations, 0);

    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let stats = run_source_with_clock(
        client(config(&format!("http://127.0.0.1:{}", free_port()), 1)),
        vec![SignalQuery::new("s", "up")],
        1_000,
        None,
        tx,
        CancellationToken::new(),
        FakeClock::at(0),
    )
    .await
    .unwrap();
    assert_eq!(
        stats.evaluations, 1,
        "the first send finds nobody listening"
    );

    let (tx, _rx) = mpsc::channel(1);
    let e = run_source_with_clock(
        client(config("http://127.0.0.1:1", 1)),
        vec![],
        0,
        None,
        tx,
        CancellationToken::new(),
        FakeClock::at(0),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "preparing prometheus request: evaluation interval must be positive, got 0 ms"
    );
}

// ---------------------------------------------------------------------------------------------
// Test doubles.

/// A clock that jumps to whatever time it is asked to wait for (so a source under test runs as
/// fast as its requests allow), and that a test can set.
#[derive(Debug, Clone)]
struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    fn at(ms: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(ms)))
    }

    fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Timer for FakeClock {
    async fn sleep_until(&self, ts_ms: i64) {
        self.0.fetch_max(ts_ms, Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
}

/// Accepts connections and never answers; stands in for a hung server.
struct FakeSilentServer {
    url: String,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeSilentServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (connections.clone(), stop.clone());
        thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeSilentServer {
            url,
            connections,
            stop,
        }
    }
}

impl Drop for FakeSilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers every request with the same canned response and keeps each request's text; stands
/// in for a server that is not Prometheus, or a proxy in front of it.
struct FakeHttpServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeHttpServer {
    fn start(status: u16, content_type: &str, body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let seen = requests.clone();
        // Detached: the thread ends with the test process; the listener serves only this test.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Some(request) = read_request(&mut stream) {
                    seen.lock().unwrap().push(request);
                    let _ = stream.write_all(response.as_bytes());
                }
            }
        });
        FakeHttpServer { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body) as text.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some(text);
            }
        }
    }
}
