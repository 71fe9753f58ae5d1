//! What a caller asks the store for and gets back, whatever the backend:
//! the report feed's filter and pages, and one incident with everything
//! known about it.

use remediate::engine::Incident;
use remediate::runbook::Severity;
use serde::Serialize;

use crate::{ActionRecord, AnomalyRecord, IncidentOutcome, IncidentStatus};

/// Page size when the filter gives none.
pub const DEFAULT_LIMIT: usize = 50;

/// Largest page served, whatever the filter asks.
pub(crate) const MAX_LIMIT: usize = 1000;

/// Which incidents to list. Every field left `None` matches everything;
/// incidents come newest first (by when they opened).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only this service (exact match).
    pub service: Option<String>,
    /// Only this signal (exact match).
    pub signal: Option<String>,
    /// Only this rule (exact match).
    pub rule: Option<String>,
    /// Only incidents opened at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Only incidents opened before this time (ms).
    pub until_ms: Option<i64>,
    /// Only open or only resolved incidents.
    pub status: Option<IncidentStatus>,
    /// Only incidents with this outcome.
    pub outcome: Option<IncidentOutcome>,
    /// Page size; 0 means [`DEFAULT_LIMIT`]; at most 1,000.
    pub limit: usize,
    /// Where to go on: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentPage {
    /// The incidents, newest first.
    pub incidents: Vec<IncidentSummary>,
    /// Give this back as [`IncidentFilter::cursor`] for the next page;
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The values the incidents carry, for a filter's choices: every
/// service, signal and rule named by an incident (at most
/// [`MAX_FACET_VALUES`] of each, in order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facets {
    /// Services (the empty service left out).
    pub services: Vec<String>,
    /// Signals.
    pub signals: Vec<String>,
    /// Rules.
    pub rules: Vec<String>,
}

/// Most values of one facet listed.
pub const MAX_FACET_VALUES: usize = 500;

/// One incident in a list: what a table row or a feed entry shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentSummary {
    /// Incident id.
    pub id: String,
    /// Service (empty when the series has no service label).
    pub service: String,
    /// Signal name.
    pub signal: String,
    /// Rule name.
    pub rule: String,
    /// Highest severity reached.
    pub severity: Severity,
    /// Series selector.
    pub selector: String,
    /// Open or resolved.
    pub status: IncidentStatus,
    /// What the steps achieved.
    pub outcome: IncidentOutcome,
    /// When the anomaly began (event time, ms).
    pub onset_ms: i64,
    /// When the incident opened.
    pub opened_ms: i64,
    /// When the anomaly ended, if it did.
    pub resolved_ms: Option<i64>,
    /// For an incident open when its input ended or heal stopped: then.
    pub unresolved_at_ms: Option<i64>,
    /// Highest anomaly score.
    pub peak_score: f64,
    /// Steps planned.
    pub steps: usize,
    /// Steps the guards allowed (performed, not dry-run).
    pub performed: usize,
    /// Steps in the rule's chain.
    pub chain_len: usize,
}

/// One incident with everything the store knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    /// The incident as the engine last reported it.
    pub incident: Incident,
    /// Open or resolved.
    pub status: IncidentStatus,
    /// What the steps achieved.
    pub outcome: IncidentOutcome,
    /// Its anomaly (one per incident today).
    pub anomalies: Vec<AnomalyRecord>,
    /// Every execution of its steps, by step then attempt, interrupted ones
    /// included.
    pub executions: Vec<ActionRecord>,
    /// Why heal closed it (status `closed`): recorded at the restart that
    /// found it left open by an earlier run.
    pub closed_reason: Option<String>,
}

/// A cursor is `opened_ms:pk` of the last row of a page: keyset pagination,
/// so a page is as fast deep in the list as at its top and rows written
/// meanwhile neither repeat nor go missing.
pub(crate) fn parse_cursor(s: &str) -> Option<(i64, i64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
