//! The one ordered suppression chain: every decision on a step, whenever it
//! is made (planned, approved, expired, re-checked just before it runs),
//! goes through [`CHAIN`] in that order, and the first stage that mutes
//! the step decides it, with its named [`SuppressReason`] and the facts
//! behind it. A step no stage mutes is allowed.
//!
//! Alertmanager is the model: its notification pipeline is one list of
//! stages (`MultiStage{ms, is, tas, tms, ss, st}` in notify/notify.go's
//! `PipelineBuilder.New`), each muter (notify/mute.go) names its reason,
//! and every suppression is counted under one metric labelled by reason.
//! Here the list is [`CHAIN`]; each stage applies on the occasions
//! [`Stage::applies`] says (an approval re-checks the symptom, a plan does
//! not), so the order is the same wherever a decision is made.
//!
//! What the stages remember lives here too ([`Guards`]): attempts per rule
//! and target (cooldown, max attempts), the last minute's steps (rate
//! limit), incident openings (flap damping), the instances seen per service
//! (blast radius) and silences. The engine gives each decision the facts
//! of the step ([`Step`]) and of the steps in progress ([`InFlight`]).

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::incident::{series_selector, Decision, Incident, SuppressReason};
use super::silence::Silence;
use crate::action::RenderedAction;
use crate::runbook::{Guardrails, Rule};
use crate::time::{human, rfc3339};

/// A stage of the chain, named by the reason it suppresses with.
pub type Stage = SuppressReason;

/// The suppression chain, in order. ARCHITECTURE.md lists it in this order.
pub const CHAIN: [Stage; 14] = [
    SuppressReason::ApprovalExpired,
    SuppressReason::SymptomResolved,
    SuppressReason::InvalidLabelValue,
    SuppressReason::InhibitedByRootCause,
    SuppressReason::Silenced,
    SuppressReason::Flapping,
    SuppressReason::TargetBusy,
    SuppressReason::RateLimit,
    SuppressReason::MaxConcurrent,
    SuppressReason::BlastRadius,
    SuppressReason::AwaitingApproval,
    SuppressReason::Cooldown,
    SuppressReason::MaxAttempts,
    SuppressReason::DryRun,
];

/// When a decision on a step is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occasion<'a> {
    /// The step is planned (a rule matched, or the step before it was
    /// verified as not having helped).
    Plan,
    /// A person approved the parked step.
    Approve {
        /// Who.
        by: &'a str,
    },
    /// Nobody approved the parked step in time.
    Expire,
    /// The act stage asks once more, just before the allowed step runs.
    Recheck,
}

impl Stage {
    /// Whether this stage has a say on `occasion`. A plan checks everything
    /// but the symptom (the rule just matched on it) and the expiry; an
    /// approval re-checks the symptom and every guard, but needs no second
    /// approval; an expiry only expires; the act stage's re-check asks
    /// whether the symptom still holds.
    pub(crate) fn applies(self, occasion: Occasion<'_>) -> bool {
        use SuppressReason as R;
        match occasion {
            Occasion::Expire => self == R::ApprovalExpired,
            Occasion::Recheck => self == R::SymptomResolved,
            Occasion::Plan => !matches!(self, R::ApprovalExpired | R::SymptomResolved),
            Occasion::Approve { .. } => !matches!(self, R::ApprovalExpired | R::AwaitingApproval),
        }
    }
}

/// Where a dry-run comes from, for the decision detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DryRunSource {
    /// The engine runs in dry-run mode.
    Engine,
    /// The rule's `guards.dry_run`.
    Rule,
    /// The step's `dry_run`.
    Step,
}

/// The facts of the step being decided.
#[derive(Debug)]
pub(crate) struct Step<'a> {
    /// When, and with what the decision is made.
    pub occasion: Occasion<'a>,
    /// Its incident.
    pub incident: &'a Incident,
    /// Position of the incident in the engine (`in_flight` entries of the
    /// same incident are its own, not another's).
    pub idx: usize,
    /// The value of the signal's instance label.
    pub instance: &'a str,
    /// Its rule.
    pub rule: &'a Rule,
    /// What the step acts on, or why its action could not be rendered.
    pub target: Result<&'a str, &'a str>,
    /// Where a dry run comes from, if the step is one.
    pub dry_run: Option<DryRunSource>,
    /// Whether the symptom held on the series' latest sample.
    pub symptom: bool,
    /// When a parked step was parked.
    pub parked_ms: Option<i64>,
    /// When the decision is made (event time, or wall time for commands).
    pub ts_ms: i64,
}

/// A step in progress: performed (or dry-run) and waiting for its
/// verification.
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    /// Position of its incident in the engine.
    pub idx: usize,
    /// Its incident's id.
    pub incident: &'a str,
    /// Its 1-based step.
    pub step: usize,
    /// What it acted on (its target is computed only when a step needs
    /// it: most decisions never ask).
    pub rendered: Option<&'a RenderedAction>,
    /// Its incident's service.
    pub service: &'a str,
    /// Its incident's instance.
    pub instance: &'a str,
    /// When its verification is decided.
    pub deadline_ms: i64,
}

/// One step that ran (or would have, in dry-run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Rule name.
    pub rule: String,
    /// What the step acted on.
    pub target: String,
    /// When (event time, ms).
    pub ts_ms: i64,
    /// The incident it belonged to.
    pub incident: String,
}

/// What the stages remember. Attempts are keyed by names, not indices, so
/// the history survives a restart of heal with runbooks that changed in
/// between.
#[derive(Debug)]
pub(crate) struct Guards {
    pub(crate) guardrails: Guardrails,
    /// Attempts per (rule, target), in event-time order.
    attempts: HashMap<(String, String), Vec<Attempt>>,
    /// When steps counted as performed ran, over the last minute.
    pub(crate) performed: VecDeque<i64>,
    /// When incidents opened, per (rule name, series): flap damping.
    pub(crate) opens: HashMap<(String, String), VecDeque<i64>>,
    /// Instances seen per service: the denominator of the blast radius.
    pub(crate) instances: HashMap<String, BTreeSet<String>>,
    pub(crate) silences: Vec<Silence>,
    pub(crate) next_silence: u64,
    /// With `diagnosis:`: how long a new incident waits for its group, and
    /// each grouped service's verdict.
    pub(crate) diagnosis: Option<Diagnoses>,
}

/// The latest cross-service diagnosis, per service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Diagnoses {
    /// `diagnosis.group_wait`.
    pub(crate) group_wait_ms: i64,
    /// Services in a group of two or more: the group's id, services and
    /// ranked root cause.
    pub(crate) verdicts: HashMap<String, Verdict>,
}

/// A grouped service's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) group: String,
    pub(crate) services: Vec<String>,
    pub(crate) root_cause: String,
}

impl Guards {
    pub(crate) fn new(guardrails: Guardrails) -> Guards {
        Guards {
            guardrails,
            attempts: HashMap::new(),
            performed: VecDeque::new(),
            opens: HashMap::new(),
            instances: HashMap::new(),
            silences: Vec::new(),
            next_silence: 1,
            diagnosis: None,
        }
    }

    /// The decision on `step`: the first stage of [`CHAIN`] that applies to
    /// the occasion and mutes it, or allowed. A step allowed, or held back
    /// as a dry run, counts as an attempt (so a replay suppresses exactly
    /// what live mode would).
    pub(crate) fn decide(&mut self, step: &Step<'_>, in_flight: &[InFlight<'_>]) -> Decision {
        if let Some(decision) = self.first_muting(step, in_flight) {
            return decision;
        }
        let target = step.target.unwrap_or_default();
        let budget = self.book(step, target);
        let mut detail = format!(
            "{budget}; last acted {}",
            self.last_acted(&step.rule.name, target, step.ts_ms)
        );
        if let Occasion::Approve { by } = step.occasion {
            detail = format!("approved by {by}; {detail}");
        }
        Decision::allowed(detail)
    }

    /// The act stage's re-check of an allowed step (see
    /// [`Occasion::Recheck`]): the suppression, if a stage now mutes it.
    /// Nothing is booked: the step was booked when it was allowed.
    pub(crate) fn recheck(
        &mut self,
        step: &Step<'_>,
        in_flight: &[InFlight<'_>],
    ) -> Option<Decision> {
        debug_assert_eq!(step.occasion, Occasion::Recheck);
        self.first_muting(step, in_flight)
    }

    /// The first stage of [`CHAIN`] that applies to the step's occasion
    /// and mutes it.
    fn first_muting(&mut self, step: &Step<'_>, in_flight: &[InFlight<'_>]) -> Option<Decision> {
        CHAIN
            .into_iter()
            .filter(|stage| stage.applies(step.occasion))
            .find_map(|stage| self.mutes(stage, step, in_flight))
    }

    /// Whether `stage` mutes `step`, and why.
    fn mutes(
        &mut self,
        stage: Stage,
        step: &Step<'_>,
        in_flight: &[InFlight<'_>],
    ) -> Option<Decision> {
        use SuppressReason as R;
        let ts_ms = step.ts_ms;
        let rule = step.rule;
        let muted = |detail: String| Some(Decision::suppressed(stage, detail));
        match stage {
            R::ApprovalExpired => muted(format!(
                "not approved within {} (parked at {})",
                rule.guards.approval_timeout,
                rfc3339(step.parked_ms.unwrap_or(ts_ms))
            )),
            R::SymptomResolved if step.symptom => None,
            R::SymptomResolved => muted(match step.occasion {
                Occasion::Approve { by } => {
                    format!("approved by {by}, but the symptom no longer held on the latest sample")
                }
                _ => "re-checked just before acting: the symptom no longer held on the latest \
                      sample, so the step did not run"
                    .to_owned(),
            }),
            R::InvalidLabelValue => match step.target {
                Ok(_) => None,
                Err(why) => muted(why.to_owned()),
            },
            R::InhibitedByRootCause => {
                let d = self.diagnosis.as_ref()?;
                let service = &step.incident.service;
                let wait_until = step.incident.opened_ms.saturating_add(d.group_wait_ms);
                if ts_ms < wait_until {
                    return muted(format!(
                        "awaiting the diagnosis of its group until {} (group_wait)",
                        rfc3339(wait_until)
                    ));
                }
                let symptoms_only = step.rule.when.root_cause == Some(false);
                match d.verdicts.get(service) {
                    Some(v) if &v.root_cause != service && !symptoms_only => muted(format!(
                        "{service:?} is a symptom: group {} ({}) ranks {:?} as its root cause",
                        v.group,
                        v.services.join(", "),
                        v.root_cause
                    )),
                    Some(v) if &v.root_cause == service && symptoms_only => muted(format!(
                        "the rule acts on symptoms only (root_cause: false) and {service:?} is the root cause of group {}",
                        v.group
                    )),
                    None if symptoms_only => muted(format!(
                        "the rule acts on symptoms only (root_cause: false) and {service:?} is in no group"
                    )),
                    _ => None,
                }
            }
            R::Silenced => self
                .silences
                .iter()
                .find(|s| s.mutes(&step.incident.series, ts_ms))
                .and_then(|s| muted(s.describe())),
            R::Flapping => {
                let g = &self.guardrails;
                let series = series_selector(&step.incident.series);
                let opens = self.opens.get(&(rule.name.clone(), series))?;
                let window = g.flap_window.as_millis_i64();
                let recent = opens.iter().filter(|&&t| ts_ms - t < window).count();
                (recent > g.flap_max_opens as usize).then(|| {
                    Decision::suppressed(
                        stage,
                        format!(
                            "rule {} opened {recent} incidents on this series in the last {} (max {})",
                            rule.name, g.flap_window, g.flap_max_opens
                        ),
                    )
                })
            }
            R::TargetBusy => {
                let target = step.target.ok()?;
                in_flight
                    .iter()
                    .find(|f| f.idx != step.idx && f.rendered.is_some_and(|r| r.target() == target))
                    .and_then(|f| {
                        muted(format!(
                            "{} step {} acted on {target:?} and is verified until {}",
                            f.incident,
                            f.step,
                            rfc3339(f.deadline_ms)
                        ))
                    })
            }
            R::RateLimit => {
                while self.performed.front().is_some_and(|&t| ts_ms - t >= 60_000) {
                    self.performed.pop_front();
                }
                let max = self.guardrails.max_actions_per_minute;
                (self.performed.len() >= max as usize).then(|| {
                    Decision::suppressed(
                        stage,
                        format!(
                            "{} steps in the last minute (max {max}); next allowed at {}",
                            self.performed.len(),
                            rfc3339(self.performed[0] + 60_000)
                        ),
                    )
                })
            }
            R::MaxConcurrent => {
                let max = self.guardrails.max_concurrent;
                (in_flight.len() >= max as usize).then(|| {
                    Decision::suppressed(
                        stage,
                        format!("{} steps in progress (max {max})", in_flight.len()),
                    )
                })
            }
            R::BlastRadius => {
                let g = &self.guardrails;
                let service = &step.incident.service;
                let acting: BTreeSet<&str> = in_flight
                    .iter()
                    .filter(|f| f.service == service)
                    .map(|f| f.instance)
                    .chain(std::iter::once(step.instance))
                    .collect();
                let known = self.instances.get(service).map_or(1, BTreeSet::len).max(1);
                let by_percent =
                    ((known as f64 * g.max_percent_per_service / 100.0).floor() as usize).max(1);
                let limit = by_percent.min(g.max_instances_per_service as usize);
                (acting.len() > limit).then(|| {
                    Decision::suppressed(
                        stage,
                        format!(
                            "{} of {known} known instances of service {service:?} would be under a step \
                             at once (max {limit}: {} instances, {}%)",
                            acting.len(),
                            g.max_instances_per_service,
                            g.max_percent_per_service
                        ),
                    )
                })
            }
            // A dry run needs nobody's approval: it does nothing.
            R::AwaitingApproval if rule.guards.require_approval && step.dry_run.is_none() => {
                muted(format!(
                    "rule {} requires approval: `heal approve {}` within {} (expires at {})",
                    rule.name,
                    step.incident.id,
                    rule.guards.approval_timeout,
                    rfc3339(ts_ms.saturating_add(rule.guards.approval_timeout.as_millis_i64()))
                ))
            }
            R::AwaitingApproval => None,
            // Cooldown only looks at other incidents: within one incident
            // the chain's pace is `verify.wait`, and a cooldown there would
            // stop every chain whose steps share a target (restart then
            // roll back the same deployment).
            R::Cooldown => {
                let target = step.target.ok()?;
                let cooldown = rule.guards.cooldown.as_millis_i64();
                let history = self.history(&rule.name, target, ts_ms, rule);
                let last = history
                    .iter()
                    .rev()
                    .find(|a| a.incident != step.incident.id)?;
                (ts_ms - last.ts_ms < cooldown).then(|| {
                    Decision::suppressed(
                        stage,
                        format!(
                            "this rule acted on {target:?} at {} ({}); cooldown {} lasts until {}",
                            rfc3339(last.ts_ms),
                            last.incident,
                            rule.guards.cooldown,
                            rfc3339(last.ts_ms + cooldown)
                        ),
                    )
                })
            }
            // Every incident counts, dry runs included.
            R::MaxAttempts => {
                let target = step.target.ok()?;
                let window = rule.guards.window.as_millis_i64();
                let max = rule.guards.max_attempts as usize;
                let history = self.history(&rule.name, target, ts_ms, rule);
                let in_window: Vec<i64> = history
                    .iter()
                    .filter(|a| ts_ms - a.ts_ms < window)
                    .map(|a| a.ts_ms)
                    .collect();
                (in_window.len() >= max).then(|| {
                    let next = in_window[in_window.len() - max] + window;
                    Decision::suppressed(
                        stage,
                        format!(
                            "{} attempt{} on {target:?} in the last {} (max {max}); next allowed at {}",
                            in_window.len(),
                            if in_window.len() == 1 { "" } else { "s" },
                            rule.guards.window,
                            rfc3339(next)
                        ),
                    )
                })
            }
            R::DryRun => {
                let source = step.dry_run?;
                let target = step.target.unwrap_or_default();
                let budget = self.book(step, target);
                let why = match source {
                    DryRunSource::Engine => "engine in dry-run mode",
                    DryRunSource::Rule => "rule has guards.dry_run",
                    DryRunSource::Step => "step has dry_run",
                };
                muted(format!("{why}: planned, not performed; {budget}"))
            }
        }
    }

    /// The attempts of `rule` on `target`, pruned to the guards' horizon.
    fn history(&mut self, rule_name: &str, target: &str, ts_ms: i64, rule: &Rule) -> &[Attempt] {
        let horizon = rule.guards.window.max(rule.guards.cooldown).as_millis_i64();
        let history = self
            .attempts
            .entry((rule_name.to_owned(), target.to_owned()))
            .or_default();
        history.retain(|a| ts_ms - a.ts_ms < horizon);
        history
    }

    /// Records the step as an attempt; returns its budget for the detail.
    fn book(&mut self, step: &Step<'_>, target: &str) -> String {
        let rule = step.rule;
        let window = rule.guards.window.as_millis_i64();
        let history = self.history(&rule.name, target, step.ts_ms, rule);
        let in_window = history
            .iter()
            .filter(|a| step.ts_ms - a.ts_ms < window)
            .count();
        let budget = format!(
            "attempt {} of {} in {} on {target:?}",
            in_window + 1,
            rule.guards.max_attempts,
            rule.guards.window
        );
        self.attempts
            .entry((rule.name.clone(), target.to_owned()))
            .or_default()
            .push(Attempt {
                rule: rule.name.clone(),
                target: target.to_owned(),
                ts_ms: step.ts_ms,
                incident: step.incident.id.clone(),
            });
        budget
    }

    /// When the rule last acted on the target before the attempt just
    /// booked.
    fn last_acted(&self, rule: &str, target: &str, ts_ms: i64) -> String {
        let history = self
            .attempts
            .get(&(rule.to_owned(), target.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        match history.iter().rev().nth(1) {
            Some(a) => format!("{} ago", human(ts_ms - a.ts_ms)),
            None => "never in the window".to_owned(),
        }
    }

    /// Forgets the attempt a step booked when it was allowed, for a step
    /// whose re-check found it should not run after all: a step that did
    /// not run is no attempt.
    pub(crate) fn unbook(&mut self, rule: &str, target: &str, incident: &str, ts_ms: i64) {
        if let Some(history) = self.attempts.get_mut(&(rule.to_owned(), target.to_owned())) {
            if let Some(i) = history
                .iter()
                .rposition(|a| a.incident == incident && a.ts_ms == ts_ms)
            {
                history.remove(i);
            }
        }
        if let Some(i) = self.performed.iter().rposition(|&t| t == ts_ms) {
            self.performed.remove(i);
        }
    }

    /// Every attempt remembered, oldest first per (rule, target), for
    /// persisting.
    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        let mut all: Vec<Attempt> = self.attempts.values().flatten().cloned().collect();
        all.sort_by(|a, b| (a.ts_ms, &a.rule, &a.target).cmp(&(b.ts_ms, &b.rule, &b.target)));
        all
    }

    /// Adds persisted attempts back.
    pub(crate) fn restore_attempts(&mut self, attempts: impl IntoIterator<Item = Attempt>) {
        for a in attempts {
            self.attempts
                .entry((a.rule.clone(), a.target.clone()))
                .or_default()
                .push(a);
        }
        for history in self.attempts.values_mut() {
            history.sort_by_key(|a| a.ts_ms);
        }
    }
}

/// The id of the incident with this sequence number (1-based).
pub(crate) fn incident_id(seq: u64) -> String {
    format!("inc-{seq:06}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::runbook::{Guards as RuleGuards, Severity};
    use crate::Duration;

    fn rule(cooldown_s: u64, max: u32, window_s: u64) -> Rule {
        let mut rule: Rule = serde_json::from_value(serde_json::json!({
            "name": "r",
            "when": {"signal": "s"},
            "then": [{"action": "restart", "target": "t"}],
        }))
        .unwrap();
        rule.guards = RuleGuards {
            cooldown: Duration::from_secs(cooldown_s),
            max_attempts: max,
            window: Duration::from_secs(window_s),
            ..RuleGuards::default()
        };
        rule
    }

    fn incident(id: &str) -> Incident {
        Incident {
            id: id.into(),
            series: BTreeMap::new(),
            service: String::new(),
            signal: "s".into(),
            rule: "r".into(),
            description: None,
            severity: Severity::Warning,
            above: true,
            onset_ms: 0,
            opened_ms: 0,
            peak_score: 1.0,
            peer_z: None,
            chain_len: 1,
            actions: Vec::new(),
            resolved_ms: None,
            unresolved_at_ms: None,
            diagnosis: None,
        }
    }

    /// The budget stages alone (no guardrails in the way).
    fn decide(
        g: &mut Guards,
        rule: &Rule,
        target: &str,
        inc: &str,
        ts_ms: i64,
        dry_run: Option<DryRunSource>,
    ) -> Decision {
        let incident = incident(inc);
        let step = Step {
            occasion: Occasion::Plan,
            incident: &incident,
            idx: 0,
            instance: "",
            rule,
            target: Ok(target),
            dry_run,
            symptom: true,
            parked_ms: None,
            ts_ms,
        };
        g.decide(&step, &[])
    }

    fn guards() -> Guards {
        Guards::new(Guardrails {
            max_actions_per_minute: 1000,
            ..Guardrails::default()
        })
    }

    #[test]
    fn the_chain_is_in_order_and_every_reason_is_a_stage() {
        use SuppressReason as R;
        let names: Vec<&str> = CHAIN.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "approval_expired",
                "symptom_resolved",
                "invalid_label_value",
                "inhibited_by_root_cause",
                "silenced",
                "flapping",
                "target_busy",
                "rate_limit",
                "max_concurrent",
                "blast_radius",
                "awaiting_approval",
                "cooldown",
                "max_attempts",
                "dry_run",
            ]
        );
        // Which stages have a say when.
        let on = |o| -> Vec<Stage> { CHAIN.into_iter().filter(|s| s.applies(o)).collect() };
        assert_eq!(on(Occasion::Expire), [R::ApprovalExpired]);
        assert_eq!(on(Occasion::Recheck), [R::SymptomResolved]);
        assert!(!on(Occasion::Plan).contains(&R::SymptomResolved));
        assert!(on(Occasion::Plan).contains(&R::AwaitingApproval));
        assert!(on(Occasion::Approve { by: "a" }).contains(&R::SymptomResolved));
        assert!(!on(Occasion::Approve { by: "a" }).contains(&R::AwaitingApproval));
    }

    #[test]
    fn cooldown_applies_across_incidents_only() {
        let r = rule(600, 10, 3600);
        let mut g = guards();
        assert!(decide(&mut g, &r, "t", "inc-000001", 0, None).allowed);
        // Same incident escalating one minute later: fine.
        assert!(decide(&mut g, &r, "t", "inc-000001", 60_000, None).allowed);
        // Another incident within the cooldown: held back.
        let d = decide(&mut g, &r, "t", "inc-000002", 120_000, None);
        assert_eq!(d.reason, Some(SuppressReason::Cooldown));
        assert_eq!(
            d.detail,
            "this rule acted on \"t\" at 1970-01-01T00:01:00Z (inc-000001); cooldown 10m lasts until 1970-01-01T00:11:00Z"
        );
        // Another target, another rule: unaffected.
        assert!(decide(&mut g, &r, "u", "inc-000002", 120_000, None).allowed);
        let mut q = r.clone();
        q.name = "q".into();
        assert!(decide(&mut g, &q, "t", "inc-000002", 120_000, None).allowed);
        // After the cooldown: allowed.
        assert!(decide(&mut g, &r, "t", "inc-000002", 660_000, None).allowed);
    }

    #[test]
    fn max_attempts_per_sliding_window() {
        let r = rule(0, 2, 600);
        let mut g = guards();
        assert!(decide(&mut g, &r, "t", "inc-000001", 0, None).allowed);
        assert!(decide(&mut g, &r, "t", "inc-000002", 100_000, None).allowed);
        let d = decide(&mut g, &r, "t", "inc-000003", 200_000, None);
        assert_eq!(d.reason, Some(SuppressReason::MaxAttempts));
        assert_eq!(
            d.detail,
            "2 attempts on \"t\" in the last 10m (max 2); next allowed at 1970-01-01T00:10:00Z"
        );
        // Suppressed steps are not attempts; the oldest leaves the window.
        assert!(decide(&mut g, &r, "t", "inc-000003", 600_000, None).allowed);
    }

    #[test]
    fn dry_run_counts_as_an_attempt_and_an_unbooked_step_does_not() {
        let r = rule(0, 1, 600);
        let mut g = guards();
        let d = decide(&mut g, &r, "t", "inc-000001", 0, Some(DryRunSource::Engine));
        assert_eq!(d.reason, Some(SuppressReason::DryRun));
        assert!(d.counts_as_performed());
        assert_eq!(
            d.detail,
            "engine in dry-run mode: planned, not performed; attempt 1 of 1 in 10m on \"t\""
        );
        assert_eq!(
            decide(&mut g, &r, "t", "inc-000002", 1000, None).reason,
            Some(SuppressReason::MaxAttempts)
        );
        g.unbook("r", "t", "inc-000001", 0);
        assert!(decide(&mut g, &r, "t", "inc-000002", 2000, None).allowed);
    }
}
