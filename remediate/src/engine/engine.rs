//! The engine: detector verdicts in, incidents and planned steps out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use detect::{Excursion, Scored};
use serde::{Deserialize, Serialize};

use super::guards::{incident_id, Attempt, DryRunSource, Guards, InFlight, Occasion, Step};
use super::guards::{Diagnoses, Verdict};
use super::incident::{
    series_selector, Decision, EngineEvent, Incident, IncidentDiagnosis, Outcome, PlannedAction,
    SuppressReason, Verification,
};
use super::silence::{Matcher, Silence};
use crate::action::RenderedAction;
use crate::runbook::{Action, DiagnosisConfig, RecoveredWhen, Rule, RunbookSet, Severity, Signal};
use crate::template::{render, render_url, Context, Template, UnsafeLabel};
use crate::units::{format_score, format_value};

/// How the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Plan and record every step, perform none: every step that the
    /// guards would allow is recorded as `dry_run` instead (`heal replay`
    /// always; `heal watch` without `--execute`).
    pub dry_run: bool,
    /// An act stage performs the allowed steps and reports each one's end
    /// through [`Engine::action_finished`] (`heal watch --execute`). An
    /// allowed step's verification is then decided `verify.wait` after its
    /// action finished, never while it runs: a restart that takes longer
    /// than the wait is not judged half-done, and the chain does not move on
    /// to a second action beside it. Without a report (a lost one), at the
    /// latest `timeout + verify.wait` after the step was planned. Without an
    /// act stage (replay, benches), `verify.wait` after planning.
    pub await_actions: bool,
}

impl Default for EngineOptions {
    /// Dry-run: acting on production must be asked for explicitly.
    fn default() -> Self {
        EngineOptions {
            dry_run: true,
            await_actions: false,
        }
    }
}

/// A step's timeout when it gives none (the act stage's too).
pub const DEFAULT_STEP_TIMEOUT_MS: i64 = 30_000;

/// One sample of one series with the detector's verdict on it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Signal name (the series' `__name__`).
    pub signal: &'a str,
    /// Labels of the series.
    pub labels: &'a BTreeMap<String, String>,
    /// Event time of the sample, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The sample's value.
    pub value: f64,
    /// The detector's verdict.
    pub scored: Scored,
}

/// Turns detector verdicts into incidents: matches rules, plans each step of
/// a chain behind the guards, verifies it over the following samples of the
/// series, and escalates.
///
/// Architecture invariant: the engine never reads the clock and does no I/O.
/// Time is the event time of the observations, which must arrive in
/// event-time order per series; that is what lets a replay of a recorded
/// dataset and live watching make the very same decisions.
///
/// Lifecycle of an incident, per (series, rule):
/// 1. Opens on the first sample whose excursion is in the rule's direction,
///    has lasted at least `when.for` (so `for: 0s` opens on the sample that
///    fired), reaches the rule's minimum severity and matches its labels.
/// 2. Plans step 1. A step suppressed by `invalid_label_value`, `cooldown`
///    or `max_attempts` did not run, so there is nothing to verify: the next
///    step is planned at once (a chain ending in a page still pages). A step
///    held back by a reason that waits (`silenced`, `flapping`,
///    `target_busy`, `rate_limit`, `max_concurrent`, `blast_radius`: see
///    [`SuppressReason::waits`]) keeps its place and is decided again on
///    each later sample while the symptom holds, so it runs once what held
///    it back has ended. A step awaiting approval is parked until approved
///    or expired. An allowed or `dry_run` step is verified.
/// 3. Verification is decided on the first sample at or after
///    `planned + verify.wait` (live, `verify.wait` after the action
///    finished: [`EngineOptions::await_actions`]): `recovered` if `recovered_when` holds on that
///    sample (stops the chain), else `worse` if the highest peak score seen
///    during the wait is above the peak when the step was planned, else
///    `not_recovered`; both of these plan the next step.
/// 4. Resolves when the series is out of the excursion, back in the band it
///    had before the incident (on the incident's side), and no verification
///    is pending and no step parked; `resolved_ms` is the first such
///    sample. An adapting detector stops being surprised by a drift that
///    goes on (a leak): its excursion ends, but the incident stays open
///    until the series comes back. An incident whose chain is exhausted
///    stays open until then.
#[derive(Debug)]
pub struct Engine {
    options: EngineOptions,
    rules: Vec<(Rule, Signal)>,
    by_signal: HashMap<String, Vec<usize>>,
    incidents: Incidents,
    active: HashMap<(String, usize), usize>,
    /// The suppression chain and what its stages remember.
    guards: Guards,
    /// Sequence number of the next incident (ids continue across restarts
    /// through [`GuardState`]).
    next_seq: u64,
    /// Incidents with a performed step being verified: the steps in
    /// progress.
    in_progress: BTreeSet<usize>,
    /// Incidents with a parked step, by id.
    parked: HashMap<String, usize>,
    /// The runbooks' `diagnosis:`, when they ask for one.
    diagnosis: Option<DiagnosisConfig>,
}

/// One group's ranking, as the pipeline computed it (see
/// [`Engine::set_diagnosis`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDiagnosis {
    /// Its services (two or more).
    pub services: Vec<String>,
    /// Its onset.
    pub onset_ms: i64,
    /// The services, most likely cause first.
    pub ranking: Vec<detect::diagnose::Suspect>,
}

/// An open incident's anomaly, for grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAnomaly {
    /// Incident id.
    pub incident: String,
    /// Its service.
    pub service: String,
    /// When its excursion fired.
    pub onset_ms: i64,
}

/// Every incident the engine still holds, indexed by position in opening
/// order. Resolved incidents at the front can be dropped
/// ([`Engine::forget_resolved`]) without renumbering the others: indices
/// keep counting from the first incident ever opened.
#[derive(Debug, Default)]
struct Incidents {
    /// Index of `items[0]`.
    base: usize,
    items: std::collections::VecDeque<State>,
}

impl Incidents {
    /// The index the next incident gets.
    fn len(&self) -> usize {
        self.base + self.items.len()
    }

    fn push(&mut self, state: State) {
        self.items.push_back(state);
    }

    fn get(&self, idx: usize) -> Option<&State> {
        self.items.get(idx.checked_sub(self.base)?)
    }

    fn iter(&self) -> impl Iterator<Item = &State> {
        self.items.iter()
    }
}

impl std::ops::Index<usize> for Incidents {
    type Output = State;
    fn index(&self, idx: usize) -> &State {
        &self.items[idx - self.base]
    }
}

impl std::ops::IndexMut<usize> for Incidents {
    fn index_mut(&mut self, idx: usize) -> &mut State {
        &mut self.items[idx - self.base]
    }
}

/// An incident and what the engine needs to go on with it.
#[derive(Debug)]
struct State {
    incident: Incident,
    rule: usize,
    next_step: usize,
    pending: Option<Pending>,
    quiet_since: Option<i64>,
    /// Value of the signal's instance label.
    instance: String,
    /// A step waiting for approval: its index in `incident.actions` and
    /// when it expires.
    parked: Option<(usize, i64)>,
    /// Whether the symptom held on the latest sample: the series out of
    /// its band from before the incident (in the rule's excursion or not).
    /// Approved steps and held steps re-check it.
    symptom: bool,
    /// The series' band from before the incident, on the incident's side
    /// (the band of the excursion that opened it): the incident resolves
    /// only once a sample is back in it, however soon the (adapting)
    /// detector stops being surprised.
    band: Excursion,
    /// A step held back by a reason that waits ([`SuppressReason::waits`]):
    /// it keeps its place in the chain and is decided again on later
    /// samples.
    held: Option<Held>,
}

/// A step waiting for what held it back to end.
#[derive(Debug)]
struct Held {
    /// Why it was held back the last time it was decided (a new record is
    /// made only when that changes).
    reason: Option<SuppressReason>,
    /// Who approved it, for a step held back after its approval: it is
    /// decided again as an approval, not parked a second time.
    approved_by: Option<String>,
    /// Its latest record in `incident.actions`.
    action: usize,
    /// The detail of that decision: an inhibition is recorded again when
    /// its detail changes (awaiting the group, then a symptom of which
    /// cause), other reasons once.
    detail: String,
}

impl Held {
    /// Whether `decision` says nothing new over this hold.
    fn same(&self, decision: &Decision) -> bool {
        self.reason == decision.reason
            && (decision.reason != Some(SuppressReason::InhibitedByRootCause)
                || self.detail == decision.detail)
    }
}

/// What the guards remember, to be persisted and restored across restarts
/// of heal: attempts (cooldown, max attempts), the last minute's steps
/// (rate limit), incident openings (flap damping), silences, and the next
/// incident number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// Format version of this structure.
    pub version: u32,
    /// The next incident's sequence number (ids are `inc-NNNNNN`).
    pub next_incident_seq: u64,
    /// The next silence's sequence number.
    pub next_silence_seq: u64,
    /// Steps that counted as performed, within their guards' horizons.
    pub attempts: Vec<Attempt>,
    /// When steps ran in the last minute.
    pub performed: Vec<i64>,
    /// Incident openings per rule and series, within the flap window.
    pub opens: Vec<Opens>,
    /// Silences not yet expired.
    pub silences: Vec<Silence>,
}

/// Openings of one rule's incidents on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opens {
    /// Rule name.
    pub rule: String,
    /// Series selector.
    pub series: String,
    /// Opening times (ms).
    pub ts_ms: Vec<i64>,
}

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproveError {
    /// No incident has that id, or it has no step waiting for approval.
    #[error("incident {0} has no step waiting for approval")]
    NothingParked(String),
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matcher: a silence of everything must be explicit elsewhere.
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    /// The time range is empty.
    #[error("a silence must end after it starts")]
    EmptyRange,
    /// No silence has that id.
    #[error("no silence {0}")]
    Unknown(String),
    /// The silence had already ended: nothing to expire.
    #[error("silence {id} already ended at {at}")]
    AlreadyEnded {
        /// Its id.
        id: String,
        /// When it ended (RFC 3339).
        at: String,
    },
}

/// A step waiting for its verification.
#[derive(Debug)]
struct Pending {
    action: usize,
    /// When the verification is decided (the first sample at or after it).
    /// While the action runs ([`EngineOptions::await_actions`]), the latest
    /// it may: `timeout + verify.wait` after planning.
    deadline_ms: i64,
    /// The action has been handed to the act stage and not reported
    /// finished.
    running: bool,
    peak_at_plan: f64,
    peak_since: f64,
}

fn severity_of(peak: f64, signal: &Signal) -> Severity {
    if peak >= signal.critical_score {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

impl Engine {
    /// An engine for every rule of `set`.
    pub fn new(set: &RunbookSet, options: EngineOptions) -> Engine {
        let mut rules = Vec::new();
        let mut by_signal: HashMap<String, Vec<usize>> = HashMap::new();
        for rule in set.rules() {
            // A loaded set is validated: every rule's signal exists.
            let Some(signal) = set.signal(&rule.when.signal) else {
                continue;
            };
            by_signal
                .entry(signal.name.clone())
                .or_default()
                .push(rules.len());
            rules.push((rule.clone(), signal.clone()));
        }
        let mut guards = Guards::new(set.guardrails().clone());
        guards.diagnosis = set.diagnosis().map(|d| Diagnoses {
            group_wait_ms: d.group_wait.as_millis_i64(),
            verdicts: HashMap::new(),
        });
        Engine {
            options,
            rules,
            by_signal,
            incidents: Incidents::default(),
            active: HashMap::new(),
            guards,
            next_seq: 1,
            in_progress: BTreeSet::new(),
            parked: HashMap::new(),
            diagnosis: set.diagnosis().cloned(),
        }
    }

    /// What the guards remember at `ts_ms`, for persisting (entries past
    /// every horizon are left out).
    pub fn guard_state(&self, ts_ms: i64) -> GuardState {
        let flap = self.guards.guardrails.flap_window.as_millis_i64();
        let mut opens: Vec<Opens> = self
            .guards
            .opens
            .iter()
            .filter_map(|((rule, series), ts)| {
                let ts: Vec<i64> = ts.iter().copied().filter(|t| ts_ms - t < flap).collect();
                (!ts.is_empty()).then(|| Opens {
                    rule: rule.clone(),
                    series: series.clone(),
                    ts_ms: ts,
                })
            })
            .collect();
        opens.sort_by(|a, b| (&a.rule, &a.series).cmp(&(&b.rule, &b.series)));
        GuardState {
            version: 1,
            next_incident_seq: self.next_seq,
            next_silence_seq: self.guards.next_silence,
            attempts: self.guards.attempts(),
            performed: self
                .guards
                .performed
                .iter()
                .copied()
                .filter(|t| ts_ms - t < 60_000)
                .collect(),
            opens,
            silences: self
                .guards
                .silences
                .iter()
                .filter(|s| s.ends_ms > ts_ms)
                .cloned()
                .collect(),
        }
    }

    /// Restores what a previous run of heal remembered. Call before the
    /// first observation.
    pub fn restore(&mut self, state: GuardState) {
        self.next_seq = self.next_seq.max(state.next_incident_seq);
        self.guards.next_silence = self.guards.next_silence.max(state.next_silence_seq);
        self.guards.restore_attempts(state.attempts);
        self.guards.performed.extend(state.performed);
        for o in state.opens {
            self.guards
                .opens
                .entry((o.rule, o.series))
                .or_default()
                .extend(o.ts_ms);
        }
        self.guards.silences.extend(state.silences);
    }

    /// Adds a silence (a maintenance window when it starts later); returns
    /// it with its id.
    ///
    /// # Errors
    ///
    /// No matcher, or an empty time range.
    pub fn add_silence(
        &mut self,
        matchers: Vec<Matcher>,
        starts_ms: i64,
        ends_ms: i64,
        created_by: &str,
        comment: &str,
    ) -> Result<Silence, SilenceError> {
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if ends_ms <= starts_ms {
            return Err(SilenceError::EmptyRange);
        }
        let silence = Silence {
            id: format!("sil-{:06}", self.guards.next_silence),
            matchers,
            starts_ms,
            ends_ms,
            created_by: created_by.to_owned(),
            comment: comment.to_owned(),
        };
        self.guards.next_silence += 1;
        tracing::info!(silence = %silence.describe(), "silence added");
        self.guards.silences.push(silence.clone());
        Ok(silence)
    }

    /// Ends a silence now (`ts_ms`).
    ///
    /// # Errors
    ///
    /// No silence has that id, or it had already ended.
    pub fn expire_silence(&mut self, id: &str, ts_ms: i64) -> Result<Silence, SilenceError> {
        let s = self
            .guards
            .silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| SilenceError::Unknown(id.to_owned()))?;
        if s.ends_ms <= ts_ms {
            return Err(SilenceError::AlreadyEnded {
                id: id.to_owned(),
                at: crate::time::rfc3339(s.ends_ms),
            });
        }
        s.ends_ms = s.ends_ms.min(ts_ms).max(s.starts_ms);
        tracing::info!(silence = %s.describe(), "silence expired");
        Ok(s.clone())
    }

    /// Silences not yet ended at `ts_ms`, active or scheduled.
    pub fn silences(&self, ts_ms: i64) -> Vec<Silence> {
        self.guards
            .silences
            .iter()
            .filter(|s| s.ends_ms > ts_ms)
            .cloned()
            .collect()
    }

    /// Numbers the next incident at least `next_seq` (`inc-000042` for
    /// 42), so that ids stay unique across restarts of heal: give it
    /// `store::Store::next_incident_seq` (the guard state's
    /// number, through [`Engine::restore`], does the same; the higher
    /// wins). Call it before the first observation.
    /// The runbooks' `diagnosis:`, when they ask for cross-service
    /// diagnosis.
    pub fn diagnosis(&self) -> Option<&DiagnosisConfig> {
        self.diagnosis.as_ref()
    }

    /// Every open incident's anomaly: what the pipeline groups.
    pub fn open_anomalies(&self) -> Vec<OpenAnomaly> {
        self.incidents
            .iter()
            .filter(|s| s.incident.resolved_ms.is_none())
            .map(|s| OpenAnomaly {
                incident: s.incident.id.clone(),
                service: s.incident.service.clone(),
                onset_ms: s.incident.onset_ms,
            })
            .collect()
    }

    /// Takes the pipeline's latest diagnosis of every group of two or more
    /// services. Each open incident of a grouped service records its
    /// group's ranking; a `Diagnosed` event says when an incident's group
    /// or root cause changed. The suppression chain holds back steps of
    /// symptoms (`inhibited_by_root_cause`) until the diagnosis changes or
    /// the group breaks up: a service in no group acts on its own.
    pub fn set_diagnosis(&mut self, groups: &[GroupDiagnosis], ts_ms: i64) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        let Some(d) = self.guards.diagnosis.as_mut() else {
            return events;
        };
        d.verdicts.clear();
        for g in groups {
            let Some(root) = g.ranking.first() else {
                continue;
            };
            // The group's id: its earliest open incident.
            let Some(first) = self
                .incidents
                .iter()
                .filter(|s| s.incident.resolved_ms.is_none())
                .find(|s| g.services.contains(&s.incident.service))
            else {
                continue;
            };
            let verdict = Verdict {
                group: first.incident.id.clone(),
                services: g.services.clone(),
                root_cause: root.service.clone(),
            };
            for s in &g.services {
                d.verdicts.insert(s.clone(), verdict.clone());
            }
        }
        for idx in 0..self.incidents.len() {
            let state = &mut self.incidents[idx];
            if state.incident.resolved_ms.is_some() {
                continue;
            }
            let Some(v) = d.verdicts.get(&state.incident.service) else {
                continue;
            };
            let Some(g) = groups.iter().find(|g| g.services == v.services) else {
                continue;
            };
            let changed = state.incident.diagnosis.as_ref().is_none_or(|old| {
                old.group != v.group || old.root_cause != v.root_cause || old.services != v.services
            });
            state.incident.diagnosis = Some(IncidentDiagnosis {
                group: v.group.clone(),
                services: v.services.clone(),
                onset_ms: g.onset_ms,
                root_cause: v.root_cause.clone(),
                is_root_cause: v.root_cause == state.incident.service,
                ranking: g.ranking.clone(),
                ts_ms,
            });
            if changed {
                tracing::info!(
                    incident = %state.incident.id, group = %v.group, root_cause = %v.root_cause,
                    "incident diagnosed"
                );
                events.push(EngineEvent::Diagnosed {
                    incident: state.incident.id.clone(),
                    group: v.group.clone(),
                    root_cause: v.root_cause.clone(),
                    ts_ms,
                });
            }
        }
        events
    }

    pub fn continue_numbering_from(&mut self, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// The incident `id` as it is now, if this engine holds it (opened by
    /// this run and not forgotten): what the incident store records.
    pub fn incident(&self, id: &str) -> Option<&Incident> {
        let seq: u64 = id.strip_prefix("inc-")?.parse().ok()?;
        let first = self.next_seq.checked_sub(self.incidents.len() as u64)?;
        let idx = usize::try_from(seq.checked_sub(first)?).ok()?;
        let state = self.incidents.get(idx)?;
        (state.incident.id == id).then_some(&state.incident)
    }

    /// Whether the symptom of `incident` held on its series' latest sample
    /// (in the rule's excursion and out of its band); `None` for an
    /// unknown or resolved incident.
    pub fn symptom_holds(&self, incident: &str) -> Option<bool> {
        let idx = self.index_of(incident)?;
        let state = self.incidents.get(idx)?;
        state
            .incident
            .resolved_ms
            .is_none()
            .then_some(state.symptom)
    }

    /// Position of incident `id` if this engine still holds it.
    fn index_of(&self, id: &str) -> Option<usize> {
        let seq: u64 = id.strip_prefix("inc-")?.parse().ok()?;
        let first = self.next_seq.checked_sub(self.incidents.len() as u64)?;
        let idx = usize::try_from(seq.checked_sub(first)?).ok()?;
        (self.incidents.get(idx)?.incident.id == id).then_some(idx)
    }

    /// The act stage's re-check of an allowed `step` of `incident`, just
    /// before it runs (a step may wait in line behind slow ones): the
    /// suppression chain once more, on [`Occasion::Recheck`] (the symptom
    /// must still hold on the latest sample). `None`: it may run, also for
    /// an incident this engine no longer holds or that resolved meanwhile
    /// (nothing contradicts the decision made). Changes nothing: give a
    /// suppression to [`Engine::redecide`] to record it.
    pub fn recheck(&mut self, incident: &str, step: usize, ts_ms: i64) -> Option<Decision> {
        let idx = self.index_of(incident)?;
        let state = &self.incidents[idx];
        if state.incident.resolved_ms.is_some() {
            return None;
        }
        let action = state
            .incident
            .actions
            .iter()
            .rev()
            .find(|a| a.step == step)?;
        if !action.decision.allowed {
            return None;
        }
        let target = action.rendered.as_ref().map(RenderedAction::target);
        let target = target.as_deref().ok_or("not rendered");
        let in_flight = Vec::new();
        let state = &self.incidents[idx];
        let step = Step {
            occasion: Occasion::Recheck,
            incident: &state.incident,
            idx,
            instance: &state.instance,
            rule: &self.rules[state.rule].0,
            target,
            dry_run: None,
            symptom: state.symptom,
            parked_ms: None,
            ts_ms,
        };
        self.guards.recheck(&step, &in_flight)
    }

    /// The act stage's report that the action of `step` of `incident`
    /// ended (performed, failed or timed out) at `ts_ms`: its verification
    /// is decided `verify.wait` from now (see
    /// [`EngineOptions::await_actions`]). Returns whether a running action
    /// was waiting for it; a late or repeated report changes nothing.
    pub fn action_finished(&mut self, incident: &str, step: usize, ts_ms: i64) -> bool {
        let Some(idx) = self.index_of(incident) else {
            return false;
        };
        let wait = self.rules[self.incidents[idx].rule]
            .0
            .verify
            .wait
            .as_millis_i64();
        let state = &mut self.incidents[idx];
        let Some(p) = state.pending.as_mut() else {
            return false;
        };
        if !p.running || state.incident.actions[p.action].step != step {
            return false;
        }
        p.running = false;
        p.deadline_ms = ts_ms.saturating_add(wait);
        true
    }

    /// Records `decision` (a suppression from [`Engine::recheck`]) as the
    /// decision of `step` of `incident` in place of the `allowed` it had:
    /// the step did not run, so it is the step's one decision. What the
    /// allowed step had booked is released: its verification (nothing ran
    /// to verify; a verification already made is dropped, which happens only
    /// when the act stage lagged behind the whole wait), its attempt and its
    /// slot in the rate limit. A step that did not run starts no next step
    /// (one the chain already planned stands on its own and is re-checked in
    /// turn); the incident resolves with its anomaly. Returns the
    /// [`EngineEvent::Redecided`] to record; nothing when `step` has no
    /// allowed decision to replace.
    pub fn redecide(
        &mut self,
        incident: &str,
        step: usize,
        decision: Decision,
        ts_ms: i64,
    ) -> Vec<EngineEvent> {
        let Some(idx) = self.index_of(incident) else {
            return Vec::new();
        };
        let r = self.incidents[idx].rule;
        let state = &mut self.incidents[idx];
        let Some(at) = state
            .incident
            .actions
            .iter()
            .rposition(|a| a.step == step && a.decision.allowed)
        else {
            return Vec::new();
        };
        if decision.allowed {
            return Vec::new();
        }
        let action = &mut state.incident.actions[at];
        action.decision = decision;
        action.verification = None;
        let action = action.clone();
        if state.pending.as_ref().is_some_and(|p| p.action == at) {
            state.pending = None;
            self.in_progress.remove(&idx);
        }
        if let Some(target) = action.rendered.as_ref().map(RenderedAction::target) {
            let rule = &self.rules[r].0.name;
            self.guards
                .unbook(rule, &target, incident, action.planned_ms);
        }
        tracing::info!(
            incident, step, action = %action.summary, decision = action.decision.label(),
            "step re-decided before it ran"
        );
        vec![EngineEvent::Redecided {
            incident: incident.to_owned(),
            action,
            ts_ms,
        }]
    }

    /// Drops resolved incidents that resolved before `before_ms`, oldest
    /// first, stopping at the first one still open (or resolved later):
    /// live watching calls this so memory stays bounded, the incidents
    /// having been logged and stored already. Returns how many were
    /// dropped. Replay never calls it: its summary needs every incident.
    pub fn forget_resolved(&mut self, before_ms: i64) -> usize {
        let mut n = 0;
        while let Some(front) = self.incidents.items.front() {
            let done = front.incident.resolved_ms.is_some_and(|t| t < before_ms);
            if !done {
                break;
            }
            self.incidents.items.pop_front();
            self.incidents.base += 1;
            n += 1;
        }
        n
    }

    /// How many incidents the engine holds (open ones and resolved ones not
    /// yet forgotten).
    pub fn incidents_held(&self) -> usize {
        self.incidents.items.len()
    }

    /// Ids of incidents with a step waiting for approval.
    pub fn awaiting_approval(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.parked.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Approves the parked step of `incident` at `ts_ms`. The symptom is
    /// re-checked first (on the latest sample of the series): if it no
    /// longer holds the step is recorded as `symptom_resolved` and not
    /// performed; otherwise it goes through every guard again, like a step
    /// planned now.
    ///
    /// # Errors
    ///
    /// The incident has no parked step.
    pub fn approve(
        &mut self,
        incident: &str,
        ts_ms: i64,
        by: &str,
    ) -> Result<Vec<EngineEvent>, ApproveError> {
        let idx = self
            .parked
            .remove(incident)
            .ok_or_else(|| ApproveError::NothingParked(incident.to_owned()))?;
        let mut events = Vec::new();
        let Some((action, _)) = self.incidents[idx].parked.take() else {
            return Err(ApproveError::NothingParked(incident.to_owned()));
        };
        let parked = self.incidents[idx].incident.actions[action].clone();
        let target = parked.rendered.as_ref().map(RenderedAction::target);
        let target = target.as_deref().ok_or("the parked step was not rendered");
        let decision = self.decide(
            idx,
            Occasion::Approve { by },
            target,
            None,
            ts_ms,
            Some(parked.planned_ms),
        );
        let peak = self.incidents[idx].incident.peak_score;
        let waits = decision.waits().then_some(decision.reason);
        let detail = decision.detail.clone();
        self.record_step(idx, parked.clone(), decision, ts_ms, peak, &mut events);
        if let Some(reason) = waits {
            let state = &mut self.incidents[idx];
            state.held = Some(Held {
                reason,
                approved_by: Some(by.to_owned()),
                action: state.incident.actions.len() - 1,
                detail,
            });
        }
        Ok(events)
    }

    /// Decides a held step again (see [`State::held`]): a new record only
    /// when the decision changed (allowed, or held back for another reason).
    fn retry_held(&mut self, idx: usize, obs: &Observation<'_>, events: &mut Vec<EngineEvent>) {
        let Some(held) = self.incidents[idx].held.take() else {
            return;
        };
        let Some(by) = held.approved_by.clone() else {
            // Held at planning: plan it again (its place was kept).
            let peak = self.incidents[idx].incident.peak_score;
            self.incidents[idx].held = Some(held);
            self.plan(idx, obs, peak, events);
            return;
        };
        let record = self.incidents[idx].incident.actions[held.action].clone();
        let target = record.rendered.as_ref().map(RenderedAction::target);
        let target = target.as_deref().ok_or("the held step was not rendered");
        let decision = self.decide(
            idx,
            Occasion::Approve { by: &by },
            target,
            None,
            obs.ts_ms,
            Some(record.planned_ms),
        );
        if decision.waits() && held.same(&decision) {
            self.incidents[idx].held = Some(held);
            return;
        }
        let waits = decision.waits().then_some(decision.reason);
        let detail = decision.detail.clone();
        let peak = self.incidents[idx].incident.peak_score;
        self.record_step(idx, record, decision, obs.ts_ms, peak, events);
        if let Some(reason) = waits {
            let state = &mut self.incidents[idx];
            state.held = Some(Held {
                reason,
                approved_by: Some(by),
                action: state.incident.actions.len() - 1,
                detail,
            });
        }
    }

    /// Feeds one sample; returns what the engine did because of it.
    pub fn observe(&mut self, obs: &Observation<'_>) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        let Some(rule_ids) = self.by_signal.get(obs.signal).cloned() else {
            return events;
        };
        let key = series_selector(obs.labels);
        if let Some((_, signal)) = rule_ids.first().map(|&r| &self.rules[r]) {
            if let (Some(service), Some(instance)) = (
                obs.labels.get(&signal.service_label),
                obs.labels.get(&signal.instance_label),
            ) {
                let known = self.guards.instances.entry(service.clone()).or_default();
                if !known.contains(instance) {
                    known.insert(instance.clone());
                }
            }
        }
        for r in rule_ids {
            match self.active.get(&(key.clone(), r)) {
                Some(&idx) => {
                    if self.update(idx, obs, &mut events) {
                        self.active.remove(&(key.clone(), r));
                    }
                }
                None => {
                    if let Some(ex) = self.matches(r, obs) {
                        let idx = self.open(r, obs, ex, &mut events);
                        self.active.insert((key.clone(), r), idx);
                    }
                }
            }
        }
        events
    }

    /// A series of `signal` stopped reporting and the live loop forgot it
    /// (stale, evicted): its open incidents resolve at `ts_ms`, a step
    /// waiting for its verification is decided `not_recovered` ("the
    /// series stopped reporting"), a parked step is dropped, and its
    /// instance leaves the blast-radius memory. Left alone, an incident of
    /// a vanished series would never resolve: it would hold a
    /// `max_concurrent` place for ever, and keep every later incident from
    /// being forgotten ([`Engine::forget_resolved`] goes in order).
    pub fn series_gone(
        &mut self,
        signal: &str,
        labels: &BTreeMap<String, String>,
        ts_ms: i64,
    ) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        let Some(rule_ids) = self.by_signal.get(signal).cloned() else {
            return events;
        };
        let key = series_selector(labels);
        if let Some((_, sig)) = rule_ids.first().map(|&r| &self.rules[r]) {
            if let (Some(service), Some(instance)) = (
                labels.get(&sig.service_label),
                labels.get(&sig.instance_label),
            ) {
                if let Some(known) = self.guards.instances.get_mut(service) {
                    known.remove(instance);
                    if known.is_empty() {
                        self.guards.instances.remove(service);
                    }
                }
            }
        }
        for r in rule_ids {
            let Some(idx) = self.active.remove(&(key.clone(), r)) else {
                continue;
            };
            self.in_progress.remove(&idx);
            let state = &mut self.incidents[idx];
            if let Some(p) = state.pending.take() {
                let verification = Verification {
                    outcome: Outcome::NotRecovered,
                    decided_ms: ts_ms,
                    detail: "the series stopped reporting before the wait was over".into(),
                };
                let action = &mut state.incident.actions[p.action];
                action.verification = Some(verification.clone());
                events.push(EngineEvent::Verified {
                    incident: state.incident.id.clone(),
                    step: action.step,
                    verification,
                });
            }
            if state.parked.take().is_some() {
                self.parked.remove(&state.incident.id);
            }
            state.held = None;
            state.next_step = usize::MAX;
            state.incident.resolved_ms = Some(ts_ms);
            tracing::info!(incident = %state.incident.id, "series stopped reporting: incident resolved");
            events.push(EngineEvent::Resolved {
                incident: state.incident.id.clone(),
                ts_ms,
            });
        }
        events
    }

    /// Every incident in order of opening; those still open are marked
    /// unresolved at `end_ms`.
    pub fn finish(&self, end_ms: i64) -> Vec<Incident> {
        self.incidents
            .iter()
            .map(|s| {
                let mut incident = s.incident.clone();
                if incident.resolved_ms.is_none() {
                    incident.unresolved_at_ms = Some(end_ms);
                }
                incident
            })
            .collect()
    }

    /// The excursion if rule `r` matches this sample.
    fn matches(&self, r: usize, obs: &Observation<'_>) -> Option<Excursion> {
        let (rule, signal) = &self.rules[r];
        let ex = obs.scored.excursion?;
        let when = &rule.when;
        let ok = when.direction.watches(ex.above)
            && obs.ts_ms.saturating_sub(ex.onset_ms) >= when.for_.as_millis_i64()
            && severity_of(ex.peak_score, signal) >= when.severity
            && when
                .matchers
                .iter()
                .all(|(k, v)| obs.labels.get(k) == Some(v));
        ok.then_some(ex)
    }

    fn open(
        &mut self,
        r: usize,
        obs: &Observation<'_>,
        ex: Excursion,
        events: &mut Vec<EngineEvent>,
    ) -> usize {
        let (rule, signal) = &self.rules[r];
        let idx = self.incidents.len();
        let incident = Incident {
            id: incident_id(self.next_seq),
            series: obs.labels.clone(),
            service: obs
                .labels
                .get(&signal.service_label)
                .cloned()
                .unwrap_or_default(),
            signal: signal.name.clone(),
            rule: rule.name.clone(),
            description: rule
                .description
                .as_deref()
                .map(str::trim)
                .map(str::to_owned),
            severity: severity_of(ex.peak_score, signal),
            above: ex.above,
            onset_ms: ex.onset_ms,
            opened_ms: obs.ts_ms,
            peak_score: ex.peak_score,
            peer_z: ex.peer_z,
            chain_len: rule.then.len(),
            actions: Vec::new(),
            resolved_ms: None,
            unresolved_at_ms: None,
            diagnosis: None,
        };
        tracing::info!(
            incident = %incident.id, rule = %incident.rule, series = %series_selector(obs.labels),
            severity = %incident.severity, "incident opened"
        );
        events.push(EngineEvent::Opened {
            incident: incident.id.clone(),
            rule: incident.rule.clone(),
            series: series_selector(obs.labels),
            severity: incident.severity,
            ts_ms: obs.ts_ms,
        });
        self.next_seq += 1;
        let instance = obs
            .labels
            .get(&signal.instance_label)
            .cloned()
            .unwrap_or_default();
        // Flap damping: remember when this rule opened on this series.
        let window = self.guards.guardrails.flap_window.as_millis_i64();
        let opens = self
            .guards
            .opens
            .entry((rule.name.clone(), series_selector(obs.labels)))
            .or_default();
        opens.push_back(obs.ts_ms);
        while opens.front().is_some_and(|&t| obs.ts_ms - t >= window) {
            opens.pop_front();
        }
        self.incidents.push(State {
            incident,
            rule: r,
            next_step: 0,
            pending: None,
            quiet_since: None,
            instance,
            parked: None,
            symptom: !ex.in_band,
            band: ex,
            held: None,
        });
        self.plan(idx, obs, ex.peak_score, events);
        idx
    }

    /// Follows an open incident; returns whether it resolved.
    fn update(&mut self, idx: usize, obs: &Observation<'_>, events: &mut Vec<EngineEvent>) -> bool {
        let r = self.incidents[idx].rule;
        let (rule, signal) = &self.rules[r];
        let watched = obs
            .scored
            .excursion
            .filter(|ex| rule.when.direction.watches(ex.above));
        let recovered_when = rule.verify.recovered_when;
        let wait = rule.verify.wait;
        let state = &mut self.incidents[idx];
        // Back where it was before the incident: the detector's verdict
        // alone is not enough, an adapting detector stops being surprised
        // by a drift that goes on.
        let back = state.band.back_in_band(obs.value);
        state.symptom = watched.map_or(!back, |ex| !ex.in_band);
        match watched {
            Some(ex) => {
                state.quiet_since = None;
                let inc = &mut state.incident;
                inc.peak_score = inc.peak_score.max(ex.peak_score);
                inc.severity = inc.severity.max(severity_of(ex.peak_score, signal));
                if let Some(p) = &mut state.pending {
                    p.peak_since = p.peak_since.max(ex.peak_score);
                }
            }
            None if back => {
                state.quiet_since.get_or_insert(obs.ts_ms);
            }
            None => state.quiet_since = None,
        }

        if state
            .pending
            .as_ref()
            .is_some_and(|p| obs.ts_ms >= p.deadline_ms)
        {
            let p = state.pending.take().expect("checked just above");
            self.in_progress.remove(&idx);
            let metric = self.rules[r].1.name.clone();
            let state = &mut self.incidents[idx];
            let fmt = |v: f64| format_value(v, &metric);
            let (recovered, why) = match recovered_when {
                // Cleared: out of the excursion, or back in the band the
                // series had before it (the excursion's hysteresis keeps it
                // open a while longer).
                RecoveredWhen::Cleared => match watched {
                    None if back => (true, "anomaly cleared".to_owned()),
                    None => (
                        false,
                        format!(
                            "the detector no longer flags it, but value {} is still out of its band \
                             from before the anomaly",
                            fmt(obs.value)
                        ),
                    ),
                    Some(ex) if ex.in_band => {
                        (true, "back in its band from before the anomaly".to_owned())
                    }
                    Some(_) => (
                        false,
                        format!("still anomalous (value {}, out of its band)", fmt(obs.value)),
                    ),
                },
                RecoveredWhen::ValueBelow(x) => (
                    obs.value < x,
                    format!(
                        "value {} {} {}",
                        fmt(obs.value),
                        if obs.value < x { "below" } else { "not below" },
                        fmt(x)
                    ),
                ),
                RecoveredWhen::ValueAbove(x) => (
                    obs.value > x,
                    format!(
                        "value {} {} {}",
                        fmt(obs.value),
                        if obs.value > x { "above" } else { "not above" },
                        fmt(x)
                    ),
                ),
            };
            let outcome = if recovered {
                Outcome::Recovered
            } else if p.peak_since > p.peak_at_plan {
                Outcome::Worse
            } else {
                Outcome::NotRecovered
            };
            let mut detail = format!("{why} after the {wait} wait");
            // Three decimals, or as many as it takes to show the rise.
            let rise = if format_score(p.peak_at_plan) == format_score(p.peak_since) {
                (p.peak_at_plan.to_string(), p.peak_since.to_string())
            } else {
                (format_score(p.peak_at_plan), format_score(p.peak_since))
            };
            if outcome == Outcome::Worse {
                detail.push_str(&format!("; peak score rose from {} to {}", rise.0, rise.1));
            }
            let verification = Verification {
                outcome,
                decided_ms: obs.ts_ms,
                detail,
            };
            let action = &mut state.incident.actions[p.action];
            tracing::info!(incident = %state.incident.id, step = action.step, outcome = outcome.as_str(), "step verified");
            action.verification = Some(verification.clone());
            events.push(EngineEvent::Verified {
                incident: state.incident.id.clone(),
                step: action.step,
                verification,
            });
            if recovered {
                // The chain stops here; the incident closes with the anomaly.
                state.next_step = usize::MAX;
            } else {
                let peak = watched.map_or(p.peak_since, |ex| ex.peak_score);
                self.plan(idx, obs, peak, events);
            }
        }

        // A parked step nobody approved in time expires; the chain moves on.
        if let Some((action, expires_ms)) = self.incidents[idx].parked {
            if obs.ts_ms >= expires_ms {
                let state = &mut self.incidents[idx];
                state.parked = None;
                self.parked.remove(&state.incident.id);
                let parked = state.incident.actions[action].clone();
                let decision = self.decide(
                    idx,
                    Occasion::Expire,
                    Ok(""),
                    None,
                    obs.ts_ms,
                    Some(parked.planned_ms),
                );
                let state = &self.incidents[idx];
                let peak = state.incident.peak_score;
                self.record_step(idx, parked, decision, obs.ts_ms, peak, events);
                if self.incidents[idx].pending.is_none() && self.incidents[idx].parked.is_none() {
                    self.plan(idx, obs, peak, events);
                }
            }
        }

        // A step held back waits for what held it back to end; it is tried
        // again while the symptom holds.
        let state = &self.incidents[idx];
        if state.held.is_some()
            && state.pending.is_none()
            && state.parked.is_none()
            && state.symptom
        {
            self.retry_held(idx, obs, events);
        }

        let resolve_after = self.guards.guardrails.resolve_after.as_millis_i64();
        let state = &mut self.incidents[idx];
        let settled = state.pending.is_none() && state.parked.is_none();
        match (settled, state.quiet_since) {
            (true, Some(ended)) if obs.ts_ms - ended >= resolve_after => {
                state.incident.resolved_ms = Some(ended);
                tracing::info!(incident = %state.incident.id, "incident resolved");
                events.push(EngineEvent::Resolved {
                    incident: state.incident.id.clone(),
                    ts_ms: ended,
                });
                true
            }
            _ => false,
        }
    }

    /// The decision on a step of incident `idx`: the suppression chain
    /// (`guards.rs`), on `occasion`, with the steps in progress.
    fn decide(
        &mut self,
        idx: usize,
        occasion: Occasion<'_>,
        target: Result<&str, &str>,
        dry_run: Option<DryRunSource>,
        ts_ms: i64,
        parked_ms: Option<i64>,
    ) -> Decision {
        let in_flight: Vec<InFlight<'_>> = self
            .in_progress
            .iter()
            .filter_map(|&i| {
                let s = &self.incidents[i];
                let p = s.pending.as_ref()?;
                let a = &s.incident.actions[p.action];
                Some(InFlight {
                    idx: i,
                    incident: &s.incident.id,
                    step: a.step,
                    rendered: a.rendered.as_ref(),
                    service: &s.incident.service,
                    instance: &s.instance,
                    deadline_ms: p.deadline_ms,
                })
            })
            .collect();
        let state = &self.incidents[idx];
        let step = Step {
            occasion,
            incident: &state.incident,
            idx,
            instance: &state.instance,
            rule: &self.rules[state.rule].0,
            target,
            dry_run,
            symptom: state.symptom,
            parked_ms,
            ts_ms,
        };
        self.guards.decide(&step, &in_flight)
    }

    /// Records a step with its decision; a step that counts as performed
    /// starts its verification wait (and the chain stops there for now), a
    /// parked one waits for approval.
    fn record_step(
        &mut self,
        idx: usize,
        mut planned: PlannedAction,
        decision: Decision,
        ts_ms: i64,
        peak: f64,
        events: &mut Vec<EngineEvent>,
    ) {
        let r = self.incidents[idx].rule;
        let (rule, _) = &self.rules[r];
        planned.decision = decision;
        planned.planned_ms = ts_ms;
        planned.verification = None;
        let performed = planned.decision.counts_as_performed();
        let parks = planned.decision.reason == Some(SuppressReason::AwaitingApproval);
        let state = &mut self.incidents[idx];
        tracing::info!(
            incident = %state.incident.id, step = planned.step, action = %planned.summary,
            decision = planned.decision.label(), "step planned"
        );
        events.push(EngineEvent::Planned {
            incident: state.incident.id.clone(),
            action: planned.clone(),
        });
        state.incident.actions.push(planned);
        let action = state.incident.actions.len() - 1;
        if performed {
            let wait = rule.verify.wait.as_millis_i64();
            let planned = &state.incident.actions[action];
            let running = self.options.await_actions && planned.decision.allowed;
            let deadline_ms = if running {
                let timeout = planned
                    .timeout
                    .map_or(DEFAULT_STEP_TIMEOUT_MS, |t| t.as_millis_i64());
                ts_ms.saturating_add(timeout).saturating_add(wait)
            } else {
                ts_ms.saturating_add(wait)
            };
            state.pending = Some(Pending {
                action,
                deadline_ms,
                running,
                peak_at_plan: peak,
                peak_since: peak,
            });
            self.in_progress.insert(idx);
            self.guards.performed.push_back(ts_ms);
        } else if parks {
            let expires = ts_ms.saturating_add(rule.guards.approval_timeout.as_millis_i64());
            state.parked = Some((action, expires));
            self.parked.insert(state.incident.id.clone(), idx);
        }
    }

    /// Plans steps from `next_step` on until one counts as performed (and is
    /// then verified), one is parked for approval, or the chain is
    /// exhausted.
    fn plan(
        &mut self,
        idx: usize,
        obs: &Observation<'_>,
        peak: f64,
        events: &mut Vec<EngineEvent>,
    ) {
        let r = self.incidents[idx].rule;
        while self.incidents[idx].next_step < self.rules[r].0.then.len() {
            let (rule, signal) = &self.rules[r];
            let step = self.incidents[idx].next_step;
            self.incidents[idx].next_step += 1;
            let action = &rule.then[step];
            let ctx = Context {
                labels: obs.labels,
                service_label: &signal.service_label,
                instance_label: &signal.instance_label,
                signal: &signal.name,
                rule: &rule.name,
            };
            let kind = action.kind();
            let action_timeout = action.timeout();
            let rendered = render_action(action, &ctx);
            let dry_run = if self.options.dry_run {
                Some(DryRunSource::Engine)
            } else if rule.guards.dry_run {
                Some(DryRunSource::Rule)
            } else if action.dry_run() {
                Some(DryRunSource::Step)
            } else {
                None
            };
            let (rendered, summary, decision) = match rendered {
                Err(e) => {
                    let why = e.to_string();
                    let decision =
                        self.decide(idx, Occasion::Plan, Err(&why), dry_run, obs.ts_ms, None);
                    (None, format!("{kind} (not rendered)"), decision)
                }
                Ok(rendered) => {
                    let target = rendered.target();
                    let summary = rendered.summary();
                    let decision =
                        self.decide(idx, Occasion::Plan, Ok(&target), dry_run, obs.ts_ms, None);
                    (Some(rendered), summary, decision)
                }
            };
            let planned = PlannedAction {
                step: step + 1,
                kind,
                rendered,
                summary,
                decision: Decision::allowed(String::new()),
                planned_ms: obs.ts_ms,
                verification: None,
                timeout: action_timeout,
            };
            if decision.waits() {
                // Held back by something that ends by itself: the step keeps
                // its place and is decided again on later samples. Recorded
                // once per reason, not once per sample.
                let state = &mut self.incidents[idx];
                state.next_step = step;
                let same = state.held.as_ref().is_some_and(|h| h.same(&decision));
                if !same {
                    let reason = decision.reason;
                    let detail = decision.detail.clone();
                    self.record_step(idx, planned, decision, obs.ts_ms, peak, events);
                    let state = &mut self.incidents[idx];
                    state.held = Some(Held {
                        reason,
                        approved_by: None,
                        action: state.incident.actions.len() - 1,
                        detail,
                    });
                }
                return;
            }
            self.incidents[idx].held = None;
            self.record_step(idx, planned, decision, obs.ts_ms, peak, events);
            let state = &self.incidents[idx];
            if state.pending.is_some() || state.parked.is_some() {
                return;
            }
        }
    }
}

/// Fills in every template of a step; refuses missing or unsafe label values.
fn render_action(action: &Action, ctx: &Context<'_>) -> Result<RenderedAction, UnsafeLabel> {
    let r = |t: &Template| -> Result<String, UnsafeLabel> {
        // Invariant: templates of a loaded RunbookSet were validated.
        let parts = t
            .parse()
            .expect("templates of a validated runbook set parse");
        render(&parts, ctx)
    };
    // A URL is rendered with its shape checked: a value fills its own
    // component (host, port, path segment) and never moves the request.
    let url = |t: &Template| -> Result<String, UnsafeLabel> {
        let parts = t
            .parse()
            .expect("templates of a validated runbook set parse");
        render_url(&parts, ctx)
    };
    Ok(match action {
        Action::Restart(a) => RenderedAction::Restart {
            target: r(&a.target)?,
        },
        Action::Scale(a) => RenderedAction::Scale {
            target: r(&a.target)?,
            replicas: a.replicas,
        },
        Action::Rollback(a) => RenderedAction::Rollback {
            target: r(&a.target)?,
            to: a.to.as_ref().map(r).transpose()?,
        },
        Action::Reroute(a) => RenderedAction::Reroute {
            target: r(&a.target)?,
            backend: r(&a.backend)?,
            state: a.state,
            api: a.api.clone(),
            weight: a.weight,
        },
        Action::Exec(a) => RenderedAction::Exec {
            argv: a.argv.iter().map(r).collect::<Result<_, _>>()?,
        },
        Action::Webhook(a) => RenderedAction::Webhook {
            url: url(&a.url)?,
            method: a.method,
            headers: a
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), r(v)?)))
                .collect::<Result<_, _>>()?,
            body: a.body.as_ref().map(|b| render_json(b, &r)).transpose()?,
        },
        Action::Agent(a) => RenderedAction::Agent {
            url: url(&a.url)?,
            name: a.name.clone(),
            params: a
                .params
                .iter()
                .map(|(k, v)| Ok((k.clone(), r(v)?)))
                .collect::<Result<_, _>>()?,
            key_env: a.key_env.clone(),
        },
        Action::Docker(a) => RenderedAction::Docker {
            op: a.op,
            target: r(&a.target)?,
            signal: a.signal.clone(),
            replicas: a.replicas,
            image: a.image.as_ref().map(r).transpose()?,
            rollout: a.rollout.clone(),
        },
    })
}

/// Renders every string of a JSON body.
fn render_json(
    value: &serde_json::Value,
    r: &impl Fn(&Template) -> Result<String, UnsafeLabel>,
) -> Result<serde_json::Value, UnsafeLabel> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => Value::String(r(&Template(s.clone()))?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, r))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, r)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}
