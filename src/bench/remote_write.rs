//! `heal bench remote-write`: how many scores a second heal's scores-out
//! sink (`heal watch --remote-write URL`, [`ingest::sinks::remote_write`])
//! delivers to a real receiver.
//!
//! The sink is driven exactly as the decider drives it: one slot of
//! [`ScorePoint`]s per evaluation handed over with
//! [`ScoreSender::offer`], which never waits. The bench offers slots as
//! fast as the sink takes them (it keeps at most half the sink's queue in
//! flight, so nothing is dropped for a full queue and the figure is the
//! sink's own pace, not the bench's), then lets the sink drain. Each point
//! is three samples (score and the band's two sides).
//!
//! The receiver is a real Prometheus with its remote-write receiver on
//! (`--web.enable-remote-write-receiver`), started in a temporary
//! directory, or any receiver given with `--url` (then nothing is
//! queried back). With its own Prometheus, the bench checks what arrived:
//! every series, every sample (`count_over_time`), or it fails.
//!
//! Figures: scores (points) a second and samples a second end to end,
//! requests, failed requests and dropped samples (must be 0), and, for
//! comparison, the time to build and encode the same requests without any
//! network (protobuf and snappy only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ingest::remote_write::{encode, WriteRequest};
use ingest::sinks::remote_write::{
    remote_write_sink, series_of, ScorePoint, SinkConfig, MAX_BATCH, QUEUE_SLOTS,
};
use ingest::Labels;
use lab::http::client;
use lab::orchestrate::{Prometheus, TempDir};
use tokio_util::sync::CancellationToken;

use crate::error::Context;
use crate::labrun;
use crate::{Error, Result};

/// What `heal bench remote-write` runs.
#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    /// Watched series (points per slot).
    pub series: usize,
    /// Slots (evaluations) to send.
    pub slots: usize,
    /// A receiver of one's own; without it a real Prometheus is started.
    pub url: Option<String>,
    /// The Prometheus executable.
    pub prometheus_bin: PathBuf,
}

/// One slot's points: `series` series of `signals` signals spread over
/// services and instances, as a watch of that size produces.
fn slot(labels: &[Labels], ts_ms: i64, slot: usize) -> Vec<ScorePoint> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            // A score that moves, a band that breathes: values that do not
            // compress to nothing.
            let x = ((i * 7919 + slot * 104_729) % 1000) as f64 / 1000.0;
            ScorePoint {
                labels: l.clone(),
                ts_ms,
                score: x * 0.3,
                band: (99.0 - 10.0 * x, 101.0 + 10.0 * x),
            }
        })
        .collect()
}

fn series_labels(n: usize) -> Vec<Labels> {
    const SIGNALS: [&str; 4] = [
        "http_request_rate",
        "http_error_ratio",
        "http_latency_p99_seconds",
        "process_memory_bytes",
    ];
    (0..n)
        .map(|i| {
            let signal = SIGNALS[i % SIGNALS.len()];
            let instance = i / SIGNALS.len();
            Labels::metric(signal)
                .with("service", format!("svc-{:03}", instance / 5))
                .with(
                    "instance",
                    format!("svc-{:03}-{}", instance / 5, instance % 5),
                )
        })
        .collect()
}

/// The one number an instant query answers (`scalar` or a one-element
/// vector), or an error saying what came back.
fn query_number(prom: SocketAddr, q: &str) -> Result<f64> {
    let r = client::get(
        prom,
        &format!("/api/v1/query?query={}", stdx::text::percent_encode(q, b"")),
        Duration::from_secs(30),
    )
    .context("querying prometheus")?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| Error::msg(format!("prometheus answered {q:?} with bad JSON: {e}")))?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::msg(format!("prometheus answered {q:?} with {v}")))
}

/// A Prometheus that takes remote write, in `dir`, ready.
fn start_prometheus(bin: &std::path::Path, dir: &std::path::Path) -> Result<Prometheus> {
    labrun::check_prometheus(bin)?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n")
        .context("writing prometheus.yml")?;
    Ok(Prometheus::launch(
        bin,
        &config,
        dir,
        &["--web.enable-remote-write-receiver"],
    )?)
}

/// Runs the bench and prints its figures.
///
/// # Errors
///
/// Prometheus could not be started, or something was lost: a sample
/// dropped, or (with heal's own Prometheus) fewer series or samples
/// queried back than were sent.
pub fn run(cfg: &RemoteWriteConfig) -> Result<()> {
    if cfg.series == 0 || cfg.slots == 0 {
        return Err(Error::Usage(
            "--series and --slots must be at least 1".into(),
        ));
    }
    let dir = TempDir::new("heal-bench-remote-write")?;
    let (url, prom) = match &cfg.url {
        Some(u) => (u.clone(), None),
        None => {
            let prom = start_prometheus(&cfg.prometheus_bin, dir.path())?;
            (format!("{}/api/v1/write", prom.url()), Some(prom))
        }
    };
    let labels = series_labels(cfg.series);
    // Timestamps one second apart ending now: within what Prometheus'
    // head takes.
    let now_ms = stdx::Clock::now_ms(&stdx::SystemClock);
    let first_ms = now_ms - cfg.slots as i64 * 1000;

    // Encoding alone, for comparison: the same requests, no network.
    let started = Instant::now();
    let mut encoded_bytes = 0usize;
    let mut pending = Vec::new();
    for s in 0..cfg.slots {
        for p in slot(&labels, first_ms + s as i64 * 1000, s) {
            pending.extend(series_of(&p));
        }
        while pending.len() >= MAX_BATCH {
            let rest = pending.split_off(MAX_BATCH);
            let batch = std::mem::replace(&mut pending, rest);
            encoded_bytes += encode(&WriteRequest { timeseries: batch }).len();
        }
    }
    if !pending.is_empty() {
        encoded_bytes += encode(&WriteRequest {
            timeseries: pending,
        })
        .len();
    }
    let encode_only = started.elapsed();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (elapsed, stats) = rt.block_on(async {
        let stop = CancellationToken::new();
        let (sender, stats, task) = remote_write_sink(
            SinkConfig {
                url: url.clone(),
                token: None,
                timeout: Duration::from_secs(30),
            },
            stop,
        );
        let task = tokio::spawn(task);
        let per_slot = cfg.series as u64 * 3;
        let in_flight = (QUEUE_SLOTS / 2) as u64 * per_slot;
        let started = Instant::now();
        for s in 0..cfg.slots {
            let offered = s as u64 * per_slot;
            while offered
                > stats.sent.load(Ordering::Relaxed)
                    + stats.dropped_failed.load(Ordering::Relaxed)
                    + in_flight
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sender.offer(slot(&labels, first_ms + s as i64 * 1000, s));
        }
        // Every handle gone: the sink drains and returns.
        drop(sender);
        let _ = task.await;
        (started.elapsed(), stats)
    });
    let sent = stats.sent.load(Ordering::Relaxed);
    let dropped = stats.dropped_queue_full.load(Ordering::Relaxed)
        + stats.dropped_failed.load(Ordering::Relaxed);
    let failed = stats.failed_requests.load(Ordering::Relaxed);
    let points = (cfg.series * cfg.slots) as f64;
    let secs = elapsed.as_secs_f64();
    println!(
        "remote write out: {} series x {} slots = {} scores ({} samples) to {url}",
        cfg.series,
        cfg.slots,
        cfg.series * cfg.slots,
        cfg.series * cfg.slots * 3
    );
    println!(
        "  end to end: {secs:.2} s, {:.0} scores/s ({:.0} samples/s); {} requests of at most {MAX_BATCH} samples",
        points / secs,
        points * 3.0 / secs,
        (cfg.series * cfg.slots * 3).div_ceil(MAX_BATCH)
    );
    println!(
        "  encode only (protobuf + snappy, no network): {:.3} s, {:.0} scores/s, {:.1} MB",
        encode_only.as_secs_f64(),
        points / encode_only.as_secs_f64(),
        encoded_bytes as f64 / 1e6
    );
    println!("  sent {sent} samples, dropped {dropped}, failed requests {failed}");
    if dropped > 0 || sent != (cfg.series * cfg.slots * 3) as u64 {
        return Err(Error::msg(format!(
            "{dropped} samples dropped, {sent} of {} sent",
            cfg.series * cfg.slots * 3
        )));
    }
    if let Some(prom) = prom {
        let addr = prom.addr();
        let window = format!("{}s", cfg.slots + 600);
        let series = query_number(addr, "count(heal_anomaly_score)")?;
        let samples = query_number(
            addr,
            &format!("sum(count_over_time(heal_anomaly_score[{window}]))"),
        )?;
        println!("  queried back from prometheus: {series} series, {samples} score samples");
        if series as usize != cfg.series || samples as usize != cfg.series * cfg.slots {
            return Err(Error::msg(format!(
                "prometheus holds {series} series and {samples} samples; {} and {} were sent",
                cfg.series,
                cfg.series * cfg.slots
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_hold_every_series_once_and_distinct() {
        let labels = series_labels(1000);
        let set: std::collections::BTreeSet<String> =
            labels.iter().map(ToString::to_string).collect();
        assert_eq!(set.len(), 1000);
        let s = slot(&labels, 5, 3);
        assert_eq!(s.len(), 1000);
        assert!(s.iter().all(|p| p.ts_ms == 5 && p.band.0 < p.band.1));
    }
}
