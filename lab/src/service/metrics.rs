//! A service's metrics and their rendering in the Prometheus text exposition
//! format 0.0.4 (<https://prometheus.io/docs/instrumenting/exposition_formats/>).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::fault::KINDS;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency histogram, 5 ms to 10 s: client_golang's
/// default buckets, whose range covers both a healthy service (a few ms) and
/// the latency fault's seconds.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters and the histogram of the work endpoint `/`.
///
/// One mutex over both: a request updates them together, contention is
/// irrelevant at lab rates, and a scrape sees a consistent pair (the
/// histogram's `_count` equals the sum of the counters).
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Requests to `/` being handled right now (`http_requests_in_flight`,
    /// as client_golang's `InstrumentHandlerInFlight` exports it). A hang
    /// shows here at the first scrape: requests pile up and none complete.
    in_flight: AtomicU64,
}

/// Counts one request as in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Answers by status code. 200 and 500 exist from the start so that
    /// `rate()` over either is defined before the first error.
    requests: BTreeMap<u16, u64>,
    /// Non-cumulative bucket counts (the last one is +Inf).
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
    /// Calls to dependencies by (callee, status; 0 when no answer came).
    calls: BTreeMap<(String, u16), u64>,
}

/// The process figures a scrape reports next to the request metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<'a> {
    /// `service` label value.
    pub service: &'a str,
    /// `process_resident_memory_bytes`.
    pub resident_memory_bytes: u64,
    /// `process_start_time_seconds`.
    pub start_time_seconds: f64,
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// The active fault's kind, if any.
    pub fault: Option<&'static str>,
    /// `lab_leaked_bytes`.
    pub leaked_bytes: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut inner = Inner::default();
        inner.requests.insert(200, 0);
        inner.requests.insert(500, 0);
        Metrics {
            inner: Mutex::new(inner),
            in_flight: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Marks a request to `/` as in flight until the guard is dropped
    /// (answered, or abandoned by its client).
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Records one call to a dependency (`status` 0: no answer).
    pub fn call(&self, callee: &str, status: u16) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.calls.entry((callee.to_owned(), status)).or_default() += 1;
    }

    /// Records one answered request to `/`.
    pub fn observe(&self, code: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.requests.entry(code).or_default() += 1;
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        inner.buckets[bucket] += 1;
        inner.sum += seconds;
        inner.count += 1;
    }

    /// The exposition text for a scrape.
    pub fn render(&self, p: &Snapshot<'_>) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let service = escape_label(p.service);
        let mut out = String::with_capacity(3072);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "http_requests_total",
            "counter",
            "Answers of the work endpoint / by status code.",
        );
        for (code, n) in &inner.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{service}\",code=\"{code}\"}} {n}"
            );
        }
        family(
            &mut out,
            "http_request_duration_seconds",
            "histogram",
            "Time to answer the work endpoint /.",
        );
        let mut cumulative = 0;
        for (i, n) in inner.buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_float(*b));
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{service=\"{service}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{service=\"{service}\"}} {}",
            format_float(inner.sum)
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{service=\"{service}\"}} {}",
            inner.count
        );
        if !inner.calls.is_empty() {
            family(
                &mut out,
                "lab_dependency_requests_total",
                "counter",
                "Calls to other lab services by callee and status (0: no answer).",
            );
            for ((callee, code), n) in &inner.calls {
                let _ = writeln!(
                    out,
                    "lab_dependency_requests_total{{service=\"{service}\",callee=\"{}\",code=\"{code}\"}} {n}",
                    escape_label(callee)
                );
            }
        }
        drop(inner);
        family(
            &mut out,
            "http_requests_in_flight",
            "gauge",
            "Requests to the work endpoint / being handled.",
        );
        let _ = writeln!(
            out,
            "http_requests_in_flight{{service=\"{service}\"}} {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(
            out,
            "process_resident_memory_bytes {}",
            p.resident_memory_bytes
        );
        family(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            format_float(p.start_time_seconds)
        );
        family(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(
            out,
            "process_cpu_seconds_total {}",
            format_float(p.cpu_seconds)
        );
        family(
            &mut out,
            "lab_fault",
            "gauge",
            "1 for the fault kind the lab service is running with, 0 for the others.",
        );
        for kind in KINDS {
            let _ = writeln!(
                out,
                "lab_fault{{kind=\"{kind}\"}} {}",
                u8::from(p.fault == Some(kind))
            );
        }
        family(
            &mut out,
            "lab_leaked_bytes",
            "gauge",
            "Bytes allocated and held by the leak fault.",
        );
        let _ = writeln!(out, "lab_leaked_bytes {}", p.leaked_bytes);
        out
    }
}

/// Appends `lab_extra{id="I"}` for `I` in `0..k` at time `t` (seconds): a
/// sine of a ten-minute period, a phase of its own per series, plus a
/// deterministic wobble of up to one unit that changes every second, so
/// each series has some spread without ever being anomalous.
pub fn render_extra(out: &mut String, k: u32, t: f64) {
    let _ = writeln!(
        out,
        "# HELP lab_extra Extra gauge series for benchmarks (--extra-series).\n# TYPE lab_extra gauge"
    );
    let second = t.floor() as u64;
    for i in 0..k {
        let phase = f64::from(i) * 0.618;
        let wave = 10.0 * (std::f64::consts::TAU * t / 600.0 + phase).sin();
        let draw = crate::rng::nth(second.wrapping_mul(1_000_003).wrapping_add(u64::from(i)));
        let wobble = (draw >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let _ = writeln!(
            out,
            "lab_extra{{id=\"{i}\"}} {}",
            format_float(100.0 + wave + wobble)
        );
    }
}

/// Formats a float the way Prometheus reads it back (`+Inf`, `NaN`,
/// otherwise Rust's shortest round-trip decimal).
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot<'static> {
        Snapshot {
            service: "web",
            resident_memory_bytes: 4096,
            start_time_seconds: 1_700_000_000.5,
            cpu_seconds: 0.25,
            fault: Some("latency"),
            leaked_bytes: 0,
        }
    }

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.observe(200, Duration::from_millis(3));
        m.observe(200, Duration::from_millis(30));
        m.observe(500, Duration::from_secs(20));
        let a = m.in_flight();
        let b = m.in_flight();
        drop(a);
        let text = m.render(&snapshot());
        drop(b);
        assert!(m
            .render(&snapshot())
            .contains("http_requests_in_flight{service=\"web\"} 0\n"));
        for line in [
            "# TYPE http_requests_in_flight gauge",
            "http_requests_in_flight{service=\"web\"} 1",
            "# TYPE http_requests_total counter",
            "http_requests_total{service=\"web\",code=\"200\"} 2",
            "http_requests_total{service=\"web\",code=\"500\"} 1",
            "# TYPE http_request_duration_seconds histogram",
            "http_request_duration_seconds_bucket{service=\"web\",le=\"0.005\"} 1",
            "http_request_duration_seconds_bucket{service=\"web\",le=\"0.025\"} 1",
            "http_request_duration_seconds_bucket{service=\"web\",le=\"0.05\"} 2",
            "http_request_duration_seconds_bucket{service=\"web\",le=\"10\"} 2",
            "http_request_duration_seconds_bucket{service=\"web\",le=\"+Inf\"} 3",
            "http_request_duration_seconds_sum{service=\"web\"} 20.033",
            "http_request_duration_seconds_count{service=\"web\"} 3",
            "process_resident_memory_bytes 4096",
            "process_start_time_seconds 1700000000.5",
            "process_cpu_seconds_total 0.25",
            "lab_fault{kind=\"latency\"} 1",
            "lab_fault{kind=\"hang\"} 0",
            "lab_leaked_bytes 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn extra_series_are_numbered_gauges() {
        let mut text = String::new();
        render_extra(&mut text, 3, 1_700_000_000.0);
        assert!(text.contains("# TYPE lab_extra gauge\n"));
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("lab_extra{id=\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(values.len(), 3);
        assert!(
            values.iter().all(|v| (89.0..=111.0).contains(v)),
            "{values:?}"
        );
    }

    #[test]
    fn error_counter_exists_before_the_first_error() {
        let text = Metrics::default().render(&snapshot());
        assert!(text.contains("http_requests_total{service=\"web\",code=\"500\"} 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(2.5), "2.5");
        assert_eq!(format_float(10.0), "10");
    }
}
