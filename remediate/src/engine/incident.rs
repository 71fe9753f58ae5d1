//! What the engine records: incidents, the steps it planned, the guard
//! decision on each, and how each step was verified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::RenderedAction;
use crate::runbook::{ActionKind, Severity};

/// One anomaly of one series handled by one rule, from the moment the rule
/// matched until the anomaly ended.
///
/// Serializes (see [`crate::report`]) to one JSON object with every
/// timestamp both as RFC 3339 and as milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// `inc-000001`, `inc-000002`, ... in order of opening: the same input
    /// always gives the same ids. With an incident store the numbering goes
    /// on from the store's highest (`Engine::continue_numbering_from`).
    pub id: String,
    /// Labels of the series, `__name__` included.
    pub series: BTreeMap<String, String>,
    /// Value of the signal's service label (empty when the series has none).
    pub service: String,
    /// Signal name.
    pub signal: String,
    /// Rule name.
    pub rule: String,
    /// Rule description, for the report.
    pub description: Option<String>,
    /// Highest severity reached.
    pub severity: Severity,
    /// Whether the anomaly is above the baseline.
    pub above: bool,
    /// When the excursion fired (event time, ms).
    pub onset_ms: i64,
    /// When the rule matched (its `for` had elapsed).
    pub opened_ms: i64,
    /// Highest anomaly score seen while the incident was open.
    pub peak_score: f64,
    /// The cause, when the series' peers fired the excursion that opened
    /// the incident (signal `peer:`): the series' signed robust z-score
    /// among the instances of its service at that sample. `None` when its
    /// own detector did. The incident store keeps it (schema version 5).
    pub peer_z: Option<f64>,
    /// Number of steps in the rule's chain.
    pub chain_len: usize,
    /// Every step planned, in order, suppressed ones included.
    pub actions: Vec<PlannedAction>,
    /// When the anomaly ended (the first sample out of the excursion); `None`
    /// while open.
    pub resolved_ms: Option<i64>,
    /// For an incident still open when the input ended: that end.
    pub unresolved_at_ms: Option<i64>,
    /// With `diagnosis:`, the latest diagnosis of the group the incident
    /// belongs to (none while its service is alone).
    pub diagnosis: Option<IncidentDiagnosis>,
}

/// An incident's place in a cross-service diagnosis: its group and the
/// group's ranking of root causes, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentDiagnosis {
    /// The group's id: the id of its earliest incident.
    pub group: String,
    /// The group's services, sorted.
    pub services: Vec<String>,
    /// The group's onset (its earliest anomaly), what was ranked from.
    pub onset_ms: i64,
    /// The ranked root cause.
    pub root_cause: String,
    /// Whether this incident's service is it.
    pub is_root_cause: bool,
    /// The services, most likely cause first, with their scores, the
    /// metrics that moved and the call path.
    pub ranking: Vec<detect::diagnose::Suspect>,
    /// When this ranking was made (event time).
    pub ts_ms: i64,
}

impl Incident {
    /// What an open incident is waiting for, when its latest step is parked
    /// for approval or held back by a reason that waits: `awaiting approval
    /// of step 2 of 3 (restart deployment/web), expires at
    /// 2026-03-01T00:10:00Z`. `None` for a resolved incident or one not
    /// waiting (a step being verified, a chain used up).
    pub fn waiting(&self) -> Option<String> {
        if self.resolved_ms.is_some() {
            return None;
        }
        let last = self.actions.last()?;
        if let Some(expires) = last.decision.approval_expires() {
            return Some(format!(
                "awaiting approval of step {} of {} ({}), expires at {expires}",
                last.step, self.chain_len, last.summary
            ));
        }
        last.decision.waits().then(|| {
            format!(
                "step {} of {} ({}) is held back ({}: {}) and runs once that ends",
                last.step,
                self.chain_len,
                last.summary,
                last.decision.label(),
                last.decision.detail
            )
        })
    }
}

/// One step of a chain as the engine planned it. Serializes with
/// timestamps both as RFC 3339 and as milliseconds (see [`crate::report`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAction {
    /// 1-based position in the rule's chain.
    pub step: usize,
    /// Which kind of action.
    pub kind: ActionKind,
    /// The action with every template filled in; `None` when a label value
    /// was refused (see the decision).
    pub rendered: Option<RenderedAction>,
    /// One line for humans: `restart deployment/checkout`.
    pub summary: String,
    /// What the guards said.
    pub decision: Decision,
    /// When it was planned (event time, ms).
    pub planned_ms: i64,
    /// How it turned out; `None` for a suppressed step (nothing to verify)
    /// or while the verification wait is running.
    pub verification: Option<Verification>,
    /// The step's own `timeout:`, when the runbook sets one; executors
    /// use their default otherwise.
    pub timeout: Option<crate::Duration>,
}

/// Why a step was not performed. One list for every mechanism that holds an
/// action back, so reports and counters name them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// The rule acted on the same target in another incident too recently.
    Cooldown,
    /// The rule already acted on the target `max_attempts` times in `window`.
    MaxAttempts,
    /// Dry-run (engine option, rule or step): planned and recorded only.
    DryRun,
    /// A label value substituted into the action is missing or unsafe.
    InvalidLabelValue,
    /// Another incident's step on the same target is still being verified:
    /// two rules seeing one fault (a crash is also a drop in request rate)
    /// must not both act on it, the second undoing the first.
    TargetBusy,
    /// An active silence or maintenance window matches the series.
    Silenced,
    /// The rule's incidents on this series opened too often lately
    /// (`guardrails.flap_max_opens` in `flap_window`).
    Flapping,
    /// `guardrails.max_actions_per_minute` steps already ran in the last
    /// minute.
    RateLimit,
    /// `guardrails.max_concurrent` steps are already in progress.
    MaxConcurrent,
    /// Acting would put more instances of the service under a step at once
    /// than `guardrails.max_instances_per_service` or
    /// `max_percent_per_service` allow.
    BlastRadius,
    /// The rule has `require_approval`: parked until a human approves it.
    AwaitingApproval,
    /// Nobody approved the parked step within `approval_timeout`.
    ApprovalExpired,
    /// Re-checked on approval or just before acting: the symptom no longer
    /// holds.
    SymptomResolved,
    /// With `diagnosis:`: the incident's group is still forming
    /// (`group_wait`), or its service is a symptom of another service's
    /// fault (the group's ranked root cause), or the rule acts on symptoms
    /// only (`root_cause: false`) and this service is the cause.
    InhibitedByRootCause,
}

impl SuppressReason {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::Cooldown => "cooldown",
            SuppressReason::MaxAttempts => "max_attempts",
            SuppressReason::DryRun => "dry_run",
            SuppressReason::InvalidLabelValue => "invalid_label_value",
            SuppressReason::TargetBusy => "target_busy",
            SuppressReason::Silenced => "silenced",
            SuppressReason::Flapping => "flapping",
            SuppressReason::RateLimit => "rate_limit",
            SuppressReason::MaxConcurrent => "max_concurrent",
            SuppressReason::BlastRadius => "blast_radius",
            SuppressReason::AwaitingApproval => "awaiting_approval",
            SuppressReason::ApprovalExpired => "approval_expired",
            SuppressReason::SymptomResolved => "symptom_resolved",
            SuppressReason::InhibitedByRootCause => "inhibited_by_root_cause",
        }
    }

    /// Whether a step held back for this reason waits and is tried again
    /// (on each later sample of its series while the symptom holds) rather
    /// than using up its place in the chain: what holds it back ends by
    /// itself (the silence expires, the target's other step is verified,
    /// the rate window, the concurrency slots and the blast radius free up,
    /// the flap window passes). The others move the chain on:
    /// `invalid_label_value` can never run, `cooldown` and `max_attempts`
    /// are the rule's own budget (the chain goes on to its next step, e.g.
    /// a page), `approval_expired` hands over to the next step,
    /// `symptom_resolved` ends the need. `awaiting_approval` parks the
    /// step until it is approved or expires; `dry_run` counts as performed.
    pub fn waits(self) -> bool {
        matches!(
            self,
            SuppressReason::Silenced
                | SuppressReason::Flapping
                | SuppressReason::TargetBusy
                | SuppressReason::RateLimit
                | SuppressReason::MaxConcurrent
                | SuppressReason::BlastRadius
                | SuppressReason::InhibitedByRootCause
        )
    }
}

/// The guards' verdict on one step; every step gets one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the step may be performed.
    pub allowed: bool,
    /// Why not, when not.
    pub reason: Option<SuppressReason>,
    /// The facts behind the verdict, for humans.
    pub detail: String,
}

impl Decision {
    /// The step may run.
    pub fn allowed(detail: String) -> Decision {
        Decision {
            allowed: true,
            reason: None,
            detail,
        }
    }

    /// The step is held back.
    pub fn suppressed(reason: SuppressReason, detail: String) -> Decision {
        Decision {
            allowed: false,
            reason: Some(reason),
            detail,
        }
    }

    /// Whether the engine goes on as if the step ran (allowed, or dry-run:
    /// a dry run is verified like a real step so a replay tells the same
    /// story live mode would).
    pub fn counts_as_performed(&self) -> bool {
        self.allowed || self.reason == Some(SuppressReason::DryRun)
    }

    /// Whether the step is held back by a reason that waits (see
    /// [`SuppressReason::waits`]): it is tried again later.
    pub fn waits(&self) -> bool {
        self.reason.is_some_and(SuppressReason::waits)
    }

    /// For a step parked for approval, when the approval expires (RFC 3339,
    /// as the decision's detail states it).
    pub fn approval_expires(&self) -> Option<&str> {
        if self.reason != Some(SuppressReason::AwaitingApproval) {
            return None;
        }
        let rest = self.detail.rsplit_once("(expires at ")?.1;
        rest.strip_suffix(')')
    }

    /// `allowed` or the reason, for reports.
    pub fn label(&self) -> &'static str {
        match self.reason {
            None => "allowed",
            Some(reason) => reason.as_str(),
        }
    }
}

/// How a step turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The rule's `recovered_when` held at the end of the wait.
    Recovered,
    /// It did not; the next step is planned.
    NotRecovered,
    /// It did not, and the anomaly's peak score rose during the wait: the
    /// step may have hurt. The next step is planned, as for `not_recovered`.
    Worse,
}

impl Outcome {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recovered => "recovered",
            Outcome::NotRecovered => "not_recovered",
            Outcome::Worse => "worse",
        }
    }
}

/// The verdict on a step at the end of its verification wait. Serializes
/// with `decided` (RFC 3339) and `decided_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The verdict.
    pub outcome: Outcome,
    /// When it was decided (event time of the first sample at or after the
    /// end of the wait).
    pub decided_ms: i64,
    /// The facts behind it, for humans.
    pub detail: String,
}

/// Prometheus-style name of a series: `metric{a="1", b="2"}`.
pub fn series_selector(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map(String::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// Something the engine did while observing, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A rule matched a series: a new incident.
    Opened {
        /// Incident id.
        incident: String,
        /// Rule name.
        rule: String,
        /// Series selector.
        series: String,
        /// Severity at opening.
        severity: Severity,
        /// Event time.
        ts_ms: i64,
    },
    /// A step was planned (and its guard decision made).
    Planned {
        /// Incident id.
        incident: String,
        /// The step.
        action: PlannedAction,
    },
    /// The act stage's re-check found, just before an allowed step ran,
    /// that a stage of the suppression chain now mutes it (the symptom is
    /// gone): the step did not run, and this decision replaces its
    /// `allowed` (see `Engine::redecide`).
    Redecided {
        /// Incident id.
        incident: String,
        /// The step with its new decision.
        action: PlannedAction,
        /// When it was re-decided (wall time of the re-check).
        ts_ms: i64,
    },
    /// A step's verification wait ended.
    Verified {
        /// Incident id.
        incident: String,
        /// 1-based step.
        step: usize,
        /// The verdict.
        verification: Verification,
    },
    /// The incident's group was diagnosed anew: its root cause or its
    /// services changed.
    Diagnosed {
        /// Incident id.
        incident: String,
        /// The group's id.
        group: String,
        /// The group's ranked root cause.
        root_cause: String,
        /// Event time.
        ts_ms: i64,
    },
    /// The anomaly ended and nothing is pending: the incident is closed.
    Resolved {
        /// Incident id.
        incident: String,
        /// When the anomaly ended.
        ts_ms: i64,
    },
}

impl EngineEvent {
    /// The incident the event is about.
    pub fn incident(&self) -> &str {
        match self {
            EngineEvent::Opened { incident, .. }
            | EngineEvent::Planned { incident, .. }
            | EngineEvent::Redecided { incident, .. }
            | EngineEvent::Verified { incident, .. }
            | EngineEvent::Diagnosed { incident, .. }
            | EngineEvent::Resolved { incident, .. } => incident,
        }
    }
}
