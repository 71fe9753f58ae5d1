//! How a replay's incidents compare with a dataset's labelled windows.

use std::collections::BTreeMap;

use remediate::Incident;

/// A labelled anomaly window: the series' labels and an inclusive time range (ms).
pub type TruthWindow = (BTreeMap<String, String>, i64, i64);

/// Precision, recall and delay of incidents against labelled windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Labelled windows.
    pub windows: usize,
    /// Windows with at least one incident whose onset lies inside them.
    pub detected_windows: usize,
    /// Incidents whose onset lies inside a window of their series.
    pub true_incidents: usize,
    /// Incidents outside every window of their series.
    pub false_incidents: usize,
    /// `true_incidents / incidents` (1 when there are no incidents).
    pub precision: f64,
    /// `detected_windows / windows` (1 when there are no windows).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Mean time from a detected window's start to its first incident's onset.
    pub mean_delay_ms: Option<i64>,
    /// Longest such delay.
    pub max_delay_ms: Option<i64>,
}

/// Scores incidents against windows. An incident matches a window when it
/// is on the same series (equal label sets) and its onset (when the anomaly
/// fired) lies inside the window; the first matching incident of a window
/// gives its detection delay.
pub fn evaluate(incidents: &[Incident], windows: &[TruthWindow]) -> Evaluation {
    let inside = |inc: &Incident, w: &TruthWindow| {
        inc.series == w.0 && inc.onset_ms >= w.1 && inc.onset_ms <= w.2
    };
    let true_incidents = incidents
        .iter()
        .filter(|i| windows.iter().any(|w| inside(i, w)))
        .count();
    let delays: Vec<i64> = windows
        .iter()
        .filter_map(|w| {
            incidents
                .iter()
                .filter(|i| inside(i, w))
                .map(|i| i.onset_ms - w.1)
                .min()
        })
        .collect();
    let precision = if incidents.is_empty() {
        1.0
    } else {
        true_incidents as f64 / incidents.len() as f64
    };
    let recall = if windows.is_empty() {
        1.0
    } else {
        delays.len() as f64 / windows.len() as f64
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Evaluation {
        windows: windows.len(),
        detected_windows: delays.len(),
        true_incidents,
        false_incidents: incidents.len() - true_incidents,
        precision,
        recall,
        f1,
        mean_delay_ms: (!delays.is_empty())
            .then(|| delays.iter().sum::<i64>() / delays.len() as i64),
        max_delay_ms: delays.iter().copied().max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remediate::runbook::Severity;

    fn labels(svc: &str) -> BTreeMap<String, String> {
        [("__name__", "m"), ("service", svc)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn incident(svc: &str, onset_ms: i64) -> Incident {
        Incident {
            id: format!("inc-{onset_ms}"),
            series: labels(svc),
            service: svc.into(),
            signal: "m".into(),
            rule: "r".into(),
            description: None,
            severity: Severity::Warning,
            above: true,
            onset_ms,
            opened_ms: onset_ms,
            peak_score: 1.0,
            peer_z: None,
            chain_len: 0,
            actions: vec![],
            resolved_ms: None,
            unresolved_at_ms: None,
            diagnosis: None,
        }
    }

    #[test]
    fn matches_by_series_and_onset_inside_the_window() {
        let windows = vec![
            (labels("a"), 100, 200),
            (labels("b"), 100, 200),
            (labels("c"), 500, 600),
        ];
        let incidents = vec![
            incident("a", 150), // true, delay 50
            incident("a", 170), // true, same window
            incident("b", 250), // after b's window: false
            incident("c", 500), // true, delay 0
            incident("d", 150), // no window for d: false
        ];
        let e = evaluate(&incidents, &windows);
        assert_eq!(
            (e.true_incidents, e.false_incidents, e.detected_windows),
            (3, 2, 2)
        );
        assert!((e.precision - 0.6).abs() < 1e-12);
        assert!((e.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((e.f1 - 2.0 * 0.6 * (2.0 / 3.0) / (0.6 + 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!((e.mean_delay_ms, e.max_delay_ms), (Some(25), Some(50)));
    }

    #[test]
    fn nothing_found_and_nothing_labelled() {
        let e = evaluate(&[], &[(labels("a"), 0, 10)]);
        assert_eq!((e.precision, e.recall, e.f1), (1.0, 0.0, 0.0));
        assert_eq!(e.mean_delay_ms, None);
        let e = evaluate(&[incident("a", 5)], &[]);
        assert_eq!((e.precision, e.recall), (0.0, 1.0));
    }
}
