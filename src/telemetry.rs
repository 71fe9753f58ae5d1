//! heal's own metrics, exported in the Prometheus text format on `/metrics`.
//!
//! A small registry rather than a metrics crate: heal has a dozen series
//! whose label values are all bounded (signal and rule names from the
//! runbooks, reasons and kinds from enums), updated at most once per
//! evaluation per signal, so a mutex-guarded map is cheap and keeps the
//! exposition format under our control.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    values: BTreeMap<Vec<(&'static str, String)>, f64>,
}

/// The registry. Every family is declared up front so `/metrics` shows it
/// (with no samples) before the first event.
#[derive(Debug)]
pub struct Telemetry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "heal_evaluations_total",
        Kind::Counter,
        "Signal evaluations attempted, by signal.",
    ),
    (
        "heal_evaluation_failures_total",
        Kind::Counter,
        "Evaluations that returned no data because the query failed, by signal and reason.",
    ),
    (
        "heal_evaluation_slots_skipped_total",
        Kind::Counter,
        "Evaluation slots skipped because heal fell behind.",
    ),
    (
        "heal_samples_total",
        Kind::Counter,
        "Samples received from sources, by signal.",
    ),
    (
        "heal_samples_dropped_total",
        Kind::Counter,
        "Samples dropped by the sample policy, by reason.",
    ),
    (
        "heal_anomalies_total",
        Kind::Counter,
        "Anomalous excursions that fired, by signal.",
    ),
    (
        "heal_incidents_total",
        Kind::Counter,
        "Incidents opened, by rule.",
    ),
    (
        "heal_diagnoses_total",
        Kind::Counter,
        "Times an incident's group or its ranked root cause changed (runbooks with `diagnosis:`).",
    ),
    (
        "heal_actions_total",
        Kind::Counter,
        "Actions performed, by kind and outcome.",
    ),
    (
        "heal_actions_suppressed_total",
        Kind::Counter,
        "Actions held back by a guard, by reason.",
    ),
    (
        "heal_actions_interrupted_total",
        Kind::Counter,
        "Actions an earlier run began and never finished (found in the incident store at start).",
    ),
    (
        "heal_loop_lag_seconds",
        Kind::Gauge,
        "Time from an evaluation's timestamp to the end of its processing.",
    ),
    (
        "heal_series",
        Kind::Gauge,
        "Series currently watched, by signal.",
    ),
    (
        "heal_series_live",
        Kind::Gauge,
        "Series whose detector state heal holds, by signal (evicted once stale, see --series-stale).",
    ),
    (
        "heal_series_evicted_total",
        Kind::Counter,
        "Series evicted after not reporting for --series-stale, with their detector state and evidence, by signal.",
    ),
    (
        "heal_series_refused_total",
        Kind::Counter,
        "New series not watched because their signal was at --max-series live series, by signal.",
    ),
    (
        "heal_series_truncated_total",
        Kind::Counter,
        "Series an evaluation dropped over the Prometheus source's max_series_per_signal, by signal.",
    ),
    (
        "heal_incidents_closed_at_start_total",
        Kind::Counter,
        "Incidents an earlier run left open, closed at start with a recorded reason.",
    ),
    (
        "heal_incidents_held",
        Kind::Gauge,
        "Incidents the engine holds in memory (open, or resolved within the last hour).",
    ),
    // Alertmanager in (`POST /api/v1/alerts`).
    (
        "heal_alertmanager_requests_total",
        Kind::Counter,
        "Alertmanager webhook requests received, by the status answered (200 taken; 400, 413 refused bodies; 401, 403 the token; 404 no alertmanager signal).",
    ),
    (
        "heal_alerts_received_total",
        Kind::Counter,
        "Alerts received from Alertmanager: taken, or refused (bad labels, or 10,000 alerts held).",
    ),
    // Remote write in (`POST /api/v1/write`).
    (
        "heal_remote_write_requests_total",
        Kind::Counter,
        "Remote-write requests received, by the status answered (204 taken; 400, 413 refused bodies; 401, 403 the token; 404 no remote_write signal).",
    ),
    (
        "heal_ingest_samples_total",
        Kind::Counter,
        "Samples heal ingest produced to the samples topic, by outcome: acknowledged by the broker, failed (not acknowledged after librdkafka's retries) or refused (by the client).",
    ),
    (
        "heal_remote_write_samples_total",
        Kind::Counter,
        "Samples received by remote write: matched (taken by a remote_write signal) or unmatched (no signal's, or late for their slot).",
    ),
    (
        "heal_remote_write_out_samples_total",
        Kind::Counter,
        "Score and band samples for --remote-write: sent, dropped_queue_full (the sender fell behind) or dropped_failed (a 4xx, or every retry failed).",
    ),
    (
        "heal_remote_write_out_failed_requests_total",
        Kind::Counter,
        "Tries of --remote-write requests that failed (each retry counted).",
    ),
    (
        "heal_remote_write_series_refused_total",
        Kind::Counter,
        "Pushed series a remote_write signal refused: over 64 labels, a bad label name, or the signal at its 10,000 series.",
    ),
    (
        "heal_probes_total",
        Kind::Counter,
        "HTTP probes run by heal, by signal and result (ok, timeout, refused, http_error, invalid_target).",
    ),
    // Log sources (`ingest::log_source`), set after every slot; the line
    // counters are kept with the offsets, so they continue across restarts.
    (
        "heal_log_lines_total",
        Kind::Counter,
        "Lines (events) read from a log source, over every run of heal (kept with the file offsets), by source.",
    ),
    (
        "heal_log_lines_unparsed_total",
        Kind::Counter,
        "Lines the source's format could not read (mined whole), over every run, by source.",
    ),
    (
        "heal_log_late_lines_total",
        Kind::Counter,
        "Lines whose event time was older than the source's late_after before the slot they were read in: mined, counted in no signal (since heal started), by source.",
    ),
    (
        "heal_log_bytes_total",
        Kind::Counter,
        "Bytes read from a log source's files since heal started, by source.",
    ),
    (
        "heal_log_templates",
        Kind::Gauge,
        "Templates a log source's miner holds, by source.",
    ),
    (
        "heal_log_template_bytes",
        Kind::Gauge,
        "Memory of a log source's templates (estimate), by source.",
    ),
    (
        "heal_log_templates_evicted_total",
        Kind::Counter,
        "Templates evicted by the source's max_templates, over every run, by source.",
    ),
    (
        "heal_log_files",
        Kind::Gauge,
        "Files a log source follows, by source.",
    ),
    (
        "heal_log_rotations_total",
        Kind::Counter,
        "Files that left their path (rotated or deleted) and were read to their end, by source.",
    ),
    (
        "heal_log_truncations_total",
        Kind::Counter,
        "Files found truncated or rewritten in place (copytruncate) and read again from the start, by source.",
    ),
    (
        "heal_log_cut_lines_total",
        Kind::Counter,
        "Lines longer than the limit, cut, by source.",
    ),
    (
        "heal_log_read_errors_total",
        Kind::Counter,
        "Failed reads of a log source's files (retried at the next slot), by source.",
    ),
    (
        "heal_log_kafka_lag",
        Kind::Gauge,
        "Messages of a Kafka log source's partition not yet read (high watermark minus the next offset), after each commit, by source, topic and partition.",
    ),
    (
        "heal_log_kafka_errors_total",
        Kind::Counter,
        "Errors a Kafka log source's consumer reported (librdkafka reconnects by itself), by source.",
    ),
    (
        "heal_log_kafka_commit_failures_total",
        Kind::Counter,
        "Offset commits of a Kafka log source that failed (retried with the next slot's), by source.",
    ),
    // Learning from outcomes (`live::decide`, `Decider::apply_offset`).
    (
        "heal_signal_threshold_offset",
        Kind::Gauge,
        "Learned threshold offset of a signal (learning from outcomes), by signal.",
    ),
];

impl Default for Telemetry {
    fn default() -> Self {
        let families = FAMILIES
            .iter()
            .map(|&(name, kind, help)| {
                (
                    name,
                    Family {
                        help,
                        kind,
                        values: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Telemetry {
            families: Mutex::new(families),
        }
    }
}

impl Telemetry {
    fn update(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        f: impl FnOnce(&mut f64),
    ) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let Some(family) = families.get_mut(name) else {
            debug_assert!(false, "undeclared metric {name}");
            return;
        };
        let key = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        f(family.values.entry(key).or_insert(0.0));
    }

    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        self.update(name, labels, |v| *v += by);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.update(name, labels, |v| *v = value);
    }

    /// Current value of one series.
    #[cfg(test)]
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let key: Vec<(&'static str, String)> =
            labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        families
            .get(name)
            .and_then(|f| f.values.get(&key))
            .copied()
            .unwrap_or(0.0)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, f) in families.iter() {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", f.help);
            for (labels, v) in &f.values {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape(val));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {v}");
            }
        }
        out
    }
}

/// Label value escaping of the text format: backslash, quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_counted_by_signal_and_result() {
        let t = Telemetry::default();
        assert!(t.render().contains("# TYPE heal_probes_total counter\n"));
        for result in ingest::ProbeResult::ALL {
            t.add(
                "heal_probes_total",
                &[("signal", "probe_success"), ("result", result.as_str())],
                1.0,
            );
        }
        let text = t.render();
        for result in ["ok", "timeout", "refused", "http_error", "invalid_target"] {
            let line =
                format!("heal_probes_total{{signal=\"probe_success\",result=\"{result}\"}} 1\n");
            assert!(text.contains(&line), "{line} not in {text}");
        }
    }

    #[test]
    fn renders_declared_families_and_values() {
        let t = Telemetry::default();
        t.add("heal_evaluations_total", &[("signal", "up")], 1.0);
        t.add("heal_evaluations_total", &[("signal", "up")], 2.0);
        t.set("heal_loop_lag_seconds", &[], 0.25);
        t.add(
            "heal_samples_dropped_total",
            &[("reason", "a\"b\\c\nd")],
            1.0,
        );
        let text = t.render();
        assert!(
            text.contains(
                "# TYPE heal_evaluations_total counter\nheal_evaluations_total{signal=\"up\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE heal_loop_lag_seconds gauge\nheal_loop_lag_seconds 0.25\n"),
            "{text}"
        );
        assert!(
            text.contains("heal_samples_dropped_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        // Families with no value yet are still announced.
        assert!(text.contains("# TYPE heal_actions_total counter\n"));
        assert_eq!(t.get("heal_evaluations_total", &[("signal", "up")]), 3.0);
    }
}
