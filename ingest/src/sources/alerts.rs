//! Alertmanager's webhook as a source (`ingest::alerts`): the alerts people
//! already have become symptoms heal acts on, through the same engine,
//! guards and reports as every other signal.
//!
//! Alertmanager posts its webhook payload (`version: "4"`, a group's
//! alerts with `status`, `labels`, `annotations`, `startsAt`, `endsAt`);
//! the API edge hands the body to [`parse`] and the alerts to
//! [`AlertSignals::accept`]. A runbook signal with `alertmanager: {match}`
//! takes the alerts carrying every `match` label; at each slot it has one
//! series per alert (its labels, `alertname` included): 1 while it fires,
//! 0 once resolved (for [`RESOLVED_KEEP_MS`], at least [`RESOLVED_SLOTS`]
//! slots, then the series ends: long enough for a rule's `verify` to read
//! the resolution after its wait).
//! An alert whose `endsAt` has passed without a word (Alertmanager
//! stopped resending it) counts as resolved.
//!
//! **Bounded.** At most [`MAX_ALERTS`] alerts are held (more are counted,
//! not kept), an alert keeps at most 64 labels with Prometheus label names
//! and values cut at 1 KiB (as remote write's); a body is at most [`MAX_BODY_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::series::is_label_name;
use crate::sources::prometheus::Evaluation;
use crate::sources::remote_write::cut;
use crate::{Labels, METRIC_NAME_LABEL};

/// Largest webhook body taken.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Most alerts held.
pub const MAX_ALERTS: usize = 10_000;
/// Slots a resolved alert keeps its series (value 0) before it ends.
pub const RESOLVED_SLOTS: i64 = 3;
/// How long a resolved alert keeps its series (value 0).
pub const RESOLVED_KEEP_MS: i64 = 10 * 60 * 1000;
const MAX_LABELS: usize = 64;

/// Alertmanager's webhook payload (the fields heal reads).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WebhookPayload {
    /// `"4"` since Alertmanager 0.x.
    pub version: String,
    /// The group's alerts.
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of the payload.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels (`alertname` among them).
    pub labels: BTreeMap<String, String>,
    /// When it will be considered resolved (RFC 3339; Alertmanager's zero
    /// time `0001-01-01T00:00:00Z` when unknown).
    pub ends_at: String,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlertsError {
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("body too large: {0} bytes, at most {MAX_BODY_BYTES}")]
    TooLarge(usize),
    /// Not Alertmanager's webhook JSON.
    #[error("not an Alertmanager webhook payload: {0}")]
    Json(String),
}

/// Reads a webhook body.
///
/// # Errors
///
/// See [`AlertsError`].
pub fn parse(body: &[u8]) -> Result<WebhookPayload, AlertsError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(AlertsError::TooLarge(body.len()));
    }
    let p: WebhookPayload =
        serde_json::from_slice(body).map_err(|e| AlertsError::Json(e.to_string()))?;
    if p.alerts.iter().any(|a| !a.labels.contains_key("alertname")) {
        return Err(AlertsError::Json("an alert without `alertname`".into()));
    }
    Ok(p)
}

/// A runbook signal fed by Alertmanager.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertWatch {
    /// The signal's name (`__name__` of its series).
    pub name: String,
    /// Labels an alert must carry, with these values.
    pub matchers: BTreeMap<String, String>,
}

/// What one payload brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertsAccepted {
    /// Alerts in the payload.
    pub alerts: u64,
    /// Alerts refused: bad labels, or heal at [`MAX_ALERTS`].
    pub refused: u64,
}

#[derive(Debug, Clone)]
struct Held {
    firing: bool,
    /// `endsAt`, ms (none: unknown).
    ends_at_ms: Option<i64>,
    /// The slot at which it was first seen resolved.
    resolved_slot: Option<i64>,
}

/// Every alert heard of, read at each slot by the alert signals.
#[derive(Debug, Default)]
pub struct AlertSignals {
    watches: Vec<AlertWatch>,
    alerts: HashMap<Labels, Held>,
}

/// The shared handle: the API edge accepts into it, the slot task reads it.
pub type SharedAlerts = Arc<Mutex<AlertSignals>>;

/// `endsAt` in ms; `None` for Alertmanager's zero time or garbage.
fn ends_at_ms(s: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let ms = t.timestamp_millis();
    (ms > 0).then_some(ms)
}

impl AlertSignals {
    /// The signals to fill.
    pub fn new(watches: Vec<AlertWatch>) -> Self {
        AlertSignals {
            watches,
            alerts: HashMap::new(),
        }
    }

    /// Takes a payload's alerts.
    pub fn accept(&mut self, payload: &WebhookPayload) -> AlertsAccepted {
        let mut out = AlertsAccepted::default();
        for a in &payload.alerts {
            out.alerts += 1;
            if a.labels.len() > MAX_LABELS
                || a.labels
                    .keys()
                    .any(|k| !is_label_name(k) || k == METRIC_NAME_LABEL)
            {
                out.refused += 1;
                continue;
            }
            let labels =
                Labels::from_pairs(a.labels.iter().map(|(k, v)| (k.clone(), cut(v).to_owned())));
            if !self.alerts.contains_key(&labels) && self.alerts.len() >= MAX_ALERTS {
                out.refused += 1;
                continue;
            }
            let firing = a.status != "resolved";
            let held = self.alerts.entry(labels).or_insert(Held {
                firing,
                ends_at_ms: None,
                resolved_slot: None,
            });
            held.firing = firing;
            held.ends_at_ms = ends_at_ms(&a.ends_at);
            if firing {
                held.resolved_slot = None;
            }
        }
        out
    }

    /// The evaluations of slot `ts_ms`, one per signal.
    pub fn evaluate(&mut self, ts_ms: i64, interval_ms: i64) -> Vec<Evaluation> {
        // Resolution: said so, or an `endsAt` gone by.
        for held in self.alerts.values_mut() {
            let over = !held.firing || held.ends_at_ms.is_some_and(|e| e <= ts_ms);
            if over && held.resolved_slot.is_none() {
                held.resolved_slot = Some(ts_ms);
            }
        }
        self.alerts.retain(|_, h| {
            h.resolved_slot
                .is_none_or(|r| ts_ms - r < (RESOLVED_SLOTS * interval_ms).max(RESOLVED_KEEP_MS))
        });
        self.watches
            .iter()
            .map(|w| {
                let mut series: Vec<(Labels, f64)> = self
                    .alerts
                    .iter()
                    .filter(|(labels, _)| {
                        w.matchers
                            .iter()
                            .all(|(k, v)| labels.get(k) == Some(v.as_str()))
                    })
                    .map(|(labels, h)| {
                        let value = if h.resolved_slot.is_some() { 0.0 } else { 1.0 };
                        (
                            labels.clone().with(METRIC_NAME_LABEL, w.name.clone()),
                            value,
                        )
                    })
                    .collect();
                series.sort_by(|a, b| a.0.cmp(&b.0));
                Evaluation::of(w.name.clone(), ts_ms, series)
            })
            .collect()
    }
}

impl crate::remote_write::SlotSignals for AlertSignals {
    fn evaluate(&mut self, ts_ms: i64, interval_ms: i64) -> Vec<Evaluation> {
        AlertSignals::evaluate(self, ts_ms, interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::remote_write::{values, MAX_VALUE_BYTES};

    const PAYLOAD: &str = r#"{
      "receiver": "heal", "status": "firing", "version": "4",
      "groupKey": "{}:{alertname=\"LabDown\"}", "externalURL": "http://am:9093",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "LabDown", "job": "lab", "instance": "a:1"},
         "annotations": {"summary": "down"}, "startsAt": "2026-12-06T07:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "x", "fingerprint": "f1"},
        {"status": "firing", "labels": {"alertname": "DiskFull", "job": "db"},
         "startsAt": "2026-12-06T07:00:00Z", "endsAt": "2026-12-06T07:10:00Z"}
      ]
    }"#;

    #[test]
    fn alerts_fire_resolve_and_end() {
        let mut a = AlertSignals::new(vec![AlertWatch {
            name: "alerts".into(),
            matchers: BTreeMap::from([("job".into(), "lab".into())]),
        }]);
        let p = parse(PAYLOAD.as_bytes()).unwrap();
        assert_eq!(a.accept(&p).alerts, 2);
        let t0 = 1_796_540_000_000; // after DiskFull's endsAt
        assert_eq!(
            values(&a.evaluate(t0, 1_000)),
            [r#"alerts{alertname="LabDown",instance="a:1",job="lab"} 1"#]
        );
        let resolved = PAYLOAD.replace(
            r#""status": "firing", "labels": {"alertname": "LabDown""#,
            r#""status": "resolved", "labels": {"alertname": "LabDown""#,
        );
        a.accept(&parse(resolved.as_bytes()).unwrap());
        for i in 1..=RESOLVED_SLOTS {
            assert_eq!(
                values(&a.evaluate(t0 + i * 1_000, 1_000)),
                [r#"alerts{alertname="LabDown",instance="a:1",job="lab"} 0"#]
            );
        }
        assert_eq!(values(&a.evaluate(t0 + RESOLVED_KEEP_MS, 1_000)).len(), 1);
        assert!(values(&a.evaluate(t0 + RESOLVED_KEEP_MS + 2_000, 1_000)).is_empty());
    }

    #[test]
    fn bad_bodies_and_labels_are_refused() {
        assert!(matches!(parse(b"nope"), Err(AlertsError::Json(_))));
        assert!(matches!(
            parse(br#"{"alerts": [{"labels": {"job": "x"}}]}"#),
            Err(AlertsError::Json(_))
        ));
        let mut a = AlertSignals::new(vec![]);
        let p = parse(
            br#"{"alerts": [{"status": "firing", "labels": {"alertname": "A", "bad-name": "v"}}]}"#,
        )
        .unwrap();
        assert_eq!(a.accept(&p).refused, 1);
        let long = "x".repeat(5000);
        let body = format!(
            r#"{{"alerts": [{{"status": "firing", "labels": {{"alertname": "{long}"}}}}]}}"#
        );
        let mut a = AlertSignals::new(vec![AlertWatch {
            name: "s".into(),
            matchers: BTreeMap::new(),
        }]);
        a.accept(&parse(body.as_bytes()).unwrap());
        let e = a.evaluate(1_000, 1_000);
        let (labels, _) = &e[0].outcome.as_ref().unwrap()[0];
        assert_eq!(labels.get("alertname").unwrap().len(), MAX_VALUE_BYTES);
    }
}
