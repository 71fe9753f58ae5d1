//! `heal bench churn`: heal's memory while series churn.
//!
//! A churn server (a test HTTP server answering Prometheus' query API, not
//! a Prometheus: a real one would itself need gigabytes to hold 1.5 million
//! series) returns, for the evaluation at second `s`, `rate` series that
//! exist at that second only (`instance="c<s>-<k>"`): `rate` new series
//! names every second. `heal watch` (this executable) evaluates it every
//! second; its resident memory is sampled from `/proc` and its own
//! `/metrics` read (series live, evicted, refused) every `sample_every`.
//!
//! What "flat" means here: once the first staleness window has passed,
//! evictions keep up with new series, so the number of live series and the
//! resident memory stop growing. The last line compares the memory of the
//! run's second half with its first sample after warm-up.

use std::io::BufRead;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::http::client;
use lab::http::server::{self, Peer, Request, Response};
use lab::orchestrate::{self, metric_sum, ChildGuard, TempDir};

use crate::error::Context;
use crate::{Error, Result};

/// What `heal bench churn` runs.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// New series per second.
    pub rate: u32,
    /// How long heal watches.
    pub duration: Duration,
    /// How often memory and metrics are sampled.
    pub sample_every: Duration,
    /// `--series-stale` for heal watch.
    pub series_stale: String,
    /// `--max-series` for heal watch.
    pub max_series: usize,
}

/// The churn server's answer to `/api/v1/query` at second `s`.
fn vector(rate: u32, s: i64) -> String {
    let mut out = String::with_capacity(rate as usize * 96 + 64);
    out.push_str(r#"{"status":"success","data":{"resultType":"vector","result":["#);
    for k in 0..rate {
        if k > 0 {
            out.push(',');
        }
        // A value that wobbles: detectors get ordinary samples.
        let v = 10.0 + ((s * 7919 + i64::from(k) * 104_729) % 21 - 10) as f64 / 10.0;
        out.push_str(&format!(
            r#"{{"metric":{{"__name__":"churn_metric","job":"churn","instance":"c{s}-{k}"}},"value":[{s},"{v}"]}}"#
        ));
    }
    out.push_str("]}}");
    out
}

/// Starts the churn server on a free loopback port; it runs until the
/// process ends.
fn start_server(rate: u32) -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the churn server")?;
    let addr = listener.local_addr().context("binding the churn server")?;
    let handler = move |req: &Request, _: &Peer<'_>| -> Response {
        match req.path.as_str() {
            "/api/v1/query" => {
                let body = String::from_utf8_lossy(&req.body);
                let form = if req.query.is_empty() {
                    body.as_ref()
                } else {
                    req.query.as_str()
                };
                let s = server::query_param(form, "time")
                    .and_then(|t| t.parse::<f64>().ok())
                    .map_or(0, |t| t.floor() as i64);
                Response::json(200, vector(rate, s))
            }
            "/api/v1/query_range" => Response::json(
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            ),
            _ => Response::text(404, "not found"),
        }
    };
    std::thread::Builder::new()
        .name("churn-server".into())
        .spawn(move || server::serve(listener, Arc::new(handler), 64))
        .context("starting the churn server")?;
    Ok(addr)
}

const RUNBOOK: &str = "signals:
  - name: churn_metric
    query: churn_metric
rules:
  - name: churn-anomaly
    when: { signal: churn_metric, direction: up, for: 0s }
    then:
      - action: exec
        argv: ['true']
";

/// One reading.
#[derive(Debug, Clone, Copy)]
struct Reading {
    secs: f64,
    rss_mb: f64,
    live: f64,
    evicted: f64,
    refused: f64,
    evaluations: f64,
}

/// Runs the bench and prints the readings and the summary.
///
/// # Errors
///
/// heal watch does not start or dies; a rate of zero.
pub fn run(cfg: ChurnConfig) -> Result<()> {
    if cfg.rate == 0 {
        return Err(Error::Usage("--rate must be above zero".into()));
    }
    let dir = TempDir::new("heal-bench-churn")?;
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).context("writing the runbook")?;
    std::fs::write(runbooks.join("churn.yaml"), RUNBOOK).context("writing the runbook")?;
    let prometheus = start_server(cfg.rate)?;
    let listen = orchestrate::loopback(orchestrate::free_port()?);
    let exe = std::env::current_exe().context("finding the heal executable")?;
    let log_path: PathBuf = dir.path().join("heal.log");
    let log = std::fs::File::create(&log_path).context("creating heal's log")?;
    let child = Command::new(exe)
        .args(["watch", "--prometheus", &format!("http://{prometheus}")])
        .arg("--runbooks")
        .arg(&runbooks)
        .args([
            "--interval",
            "1s",
            "--backfill",
            "0s",
            "--query-timeout",
            "900ms",
        ])
        .args(["--listen", &listen.to_string()])
        .args(["--series-stale", &cfg.series_stale])
        .args(["--max-series", &cfg.max_series.to_string()])
        .env("HEAL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting heal watch")?;
    let mut heal = ChildGuard::new(child);
    let pid = heal.pid();
    println!(
        "heal bench churn: {} new series per second for {:?}, heal watch --interval 1s --series-stale {} --max-series {} (pid {pid})",
        cfg.rate, cfg.duration, cfg.series_stale, cfg.max_series
    );
    println!(
        "{:>7}  {:>8}  {:>9}  {:>10}  {:>9}  {:>11}",
        "t (s)", "RSS (MB)", "live", "evicted", "refused", "evaluations"
    );
    let t0 = Instant::now();
    let mut readings: Vec<Reading> = Vec::new();
    while t0.elapsed() < cfg.duration {
        std::thread::sleep(
            cfg.sample_every
                .min(cfg.duration.saturating_sub(t0.elapsed())),
        );
        if heal.exited() {
            return Err(Error::msg(format!(
                "heal watch exited during the bench; its log:\n{}",
                tail(&log_path, 20)
            )));
        }
        let rss = lab::procfs::resident_memory_bytes_of(pid).unwrap_or(0) as f64 / 1e6;
        let metrics = client::get(listen, "/metrics", Duration::from_secs(5))
            .map(|r| r.body_text())
            .unwrap_or_default();
        let r = Reading {
            secs: t0.elapsed().as_secs_f64(),
            rss_mb: rss,
            live: metric_sum(&metrics, "heal_series_live"),
            evicted: metric_sum(&metrics, "heal_series_evicted_total"),
            refused: metric_sum(&metrics, "heal_series_refused_total"),
            evaluations: metric_sum(&metrics, "heal_evaluations_total"),
        };
        println!(
            "{:>7.0}  {:>8.1}  {:>9.0}  {:>10.0}  {:>9.0}  {:>11.0}",
            r.secs, r.rss_mb, r.live, r.evicted, r.refused, r.evaluations
        );
        readings.push(r);
    }
    heal.stop(Duration::from_secs(10));
    let panics = std::fs::File::open(&log_path)
        .map(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(std::result::Result::ok)
                .filter(|l| l.contains("panicked"))
                .count()
        })
        .unwrap_or(0);
    summarise(&readings, panics);
    Ok(())
}

fn summarise(readings: &[Reading], panics: usize) {
    let Some(last) = readings.last() else {
        return;
    };
    let peak = readings.iter().map(|r| r.rss_mb).fold(0.0, f64::max);
    let half = last.secs / 2.0;
    let first_half_peak = readings
        .iter()
        .filter(|r| r.secs <= half)
        .map(|r| r.rss_mb)
        .fold(0.0, f64::max);
    let second_half_peak = readings
        .iter()
        .filter(|r| r.secs > half)
        .map(|r| r.rss_mb)
        .fold(0.0, f64::max);
    let peak_live = readings.iter().map(|r| r.live).fold(0.0, f64::max);
    println!(
        "peak RSS {peak:.1} MB; first half peak {first_half_peak:.1} MB, second half peak {second_half_peak:.1} MB ({:+.1} MB); peak live series {peak_live:.0}; series evicted {:.0}, refused {:.0}; evaluations {:.0}; panics {panics}",
        second_half_peak - first_half_peak,
        last.evicted,
        last.refused,
        last.evaluations,
    );
}

fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_churn_server_answers_a_new_set_of_series_every_second() {
        let a: serde_json::Value = serde_json::from_str(&vector(3, 100)).unwrap();
        let b: serde_json::Value = serde_json::from_str(&vector(3, 101)).unwrap();
        let names = |v: &serde_json::Value| -> Vec<String> {
            v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["metric"]["instance"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(&a), ["c100-0", "c100-1", "c100-2"]);
        assert_eq!(names(&b), ["c101-0", "c101-1", "c101-2"]);
        assert_eq!(a["data"]["result"][0]["value"][0], 100);
    }
}
