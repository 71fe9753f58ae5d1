//! The engine: detector verdicts in, incidents and planned steps out.

use std::collections::{BTreeMap, HashMap};

use detect::{Excursion, Scored};

use super::guard::{incident_id, DryRunSource, Muter};
use super::incident::{
    series_selector, Decision, EngineEvent, Incident, Outcome, PlannedAction, RenderedAction,
    SuppressReason, Verification,
};
use crate::runbook::{Action, RecoveredWhen, Rule, RunbookSet, Severity, Signal};
use crate::template::{render, Context, Template, UnsafeLabel};

/// How the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Plan and record every step, perform none. (Always true for now: no
    /// executor exists yet.)
    pub dry_run: bool,
}

impl Default for EngineOptions {
    /// Dry-run: acting on production must be asked for explicitly.
    fn default() -> Self {
        EngineOptions { dry_run: true }
    }
}

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
///    step is planned at once (a chain ending in a page still pages). An
///    allowed or `dry_run` step is verified.
/// 3. Verification is decided on the first sample at or after
///    `planned + verify.wait`: `recovered` if `recovered_when` holds on that
///    sample (stops the chain), else `worse` if the highest peak score seen
///    during the wait is above the peak when the step was planned, else
///    `not_recovered`; both of these plan the next step.
/// 4. Resolves when the series is out of the excursion and no verification
///    is pending; `resolved_ms` is when the excursion ended. An incident
///    whose chain is exhausted stays open until then.
#[derive(Debug)]
pub struct Engine {
    options: EngineOptions,
    rules: Vec<(Rule, Signal)>,
    by_signal: HashMap<String, Vec<usize>>,
    incidents: Vec<State>,
    active: HashMap<(String, usize), usize>,
    muter: Muter,
    /// Incidents numbered before this engine started (an earlier run's,
    /// read from the incident store): ids go on from there.
    id_base: usize,
}

/// An incident and what the engine needs to go on with it.
#[derive(Debug)]
struct State {
    incident: Incident,
    rule: usize,
    next_step: usize,
    pending: Option<Pending>,
    quiet_since: Option<i64>,
}

/// A step waiting for its verification.
#[derive(Debug)]
struct Pending {
    action: usize,
    deadline_ms: i64,
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
        Engine {
            options,
            rules,
            by_signal,
            incidents: Vec::new(),
            active: HashMap::new(),
            muter: Muter::default(),
            id_base: 0,
        }
    }

    /// Numbers the next incident `next_seq` (`inc-000042` for 42) instead
    /// of 1, so that ids stay unique across restarts of heal: give it
    /// `remediate::store::Store::next_incident_seq`. Call it before the
    /// first observation.
    pub fn continue_numbering_from(&mut self, next_seq: u64) {
        self.id_base = (next_seq.max(1) - 1) as usize;
    }

    /// Feeds one sample; returns what the engine did because of it.
    pub fn observe(&mut self, obs: &Observation<'_>) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        let Some(rule_ids) = self.by_signal.get(obs.signal).cloned() else {
            return events;
        };
        let key = series_selector(obs.labels);
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

    /// The incident `id` as it is now, if this engine opened it.
    pub fn incident(&self, id: &str) -> Option<&Incident> {
        let seq: usize = id.strip_prefix("inc-")?.parse().ok()?;
        let state = self.incidents.get(seq.checked_sub(self.id_base + 1)?)?;
        (state.incident.id == id).then_some(&state.incident)
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
            id: incident_id(self.id_base + idx),
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
            chain_len: rule.then.len(),
            actions: Vec::new(),
            resolved_ms: None,
            unresolved_at_ms: None,
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
        self.incidents.push(State {
            incident,
            rule: r,
            next_step: 0,
            pending: None,
            quiet_since: None,
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
            None => {
                state.quiet_since.get_or_insert(obs.ts_ms);
            }
        }

        if state
            .pending
            .as_ref()
            .is_some_and(|p| obs.ts_ms >= p.deadline_ms)
        {
            let p = state.pending.take().expect("checked just above");
            let (recovered, why) = match recovered_when {
                // Cleared: out of the excursion, or back in the band the
                // series had before it (the excursion's hysteresis keeps it
                // open a while longer).
                RecoveredWhen::Cleared => match watched {
                    None => (true, "anomaly cleared".to_owned()),
                    Some(ex) if ex.in_band => {
                        (true, "back in its band from before the anomaly".to_owned())
                    }
                    Some(_) => (
                        false,
                        format!("still anomalous (value {}, out of its band)", obs.value),
                    ),
                },
                RecoveredWhen::ValueBelow(x) => (
                    obs.value < x,
                    format!(
                        "value {} {} {x}",
                        obs.value,
                        if obs.value < x { "below" } else { "not below" }
                    ),
                ),
                RecoveredWhen::ValueAbove(x) => (
                    obs.value > x,
                    format!(
                        "value {} {} {x}",
                        obs.value,
                        if obs.value > x { "above" } else { "not above" }
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
            if outcome == Outcome::Worse {
                detail.push_str(&format!(
                    "; peak score rose from {} to {}",
                    p.peak_at_plan, p.peak_since
                ));
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

        let state = &mut self.incidents[idx];
        match (state.pending.is_none(), state.quiet_since) {
            (true, Some(ended)) => {
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

    /// Whether another incident has a step on `target` waiting for its
    /// verification; the reason, when it has.
    fn busy(&self, idx: usize, target: &str) -> Option<String> {
        self.incidents.iter().enumerate().find_map(|(i, s)| {
            if i == idx {
                return None;
            }
            let p = s.pending.as_ref()?;
            let a = &s.incident.actions[p.action];
            (a.rendered.as_ref()?.target() == target).then(|| {
                format!(
                    "{} step {} acted on {target:?} and is verified until {}",
                    s.incident.id,
                    a.step,
                    crate::time::rfc3339(p.deadline_ms)
                )
            })
        })
    }

    /// Plans steps from `next_step` on until one counts as performed (and is
    /// then verified) or the chain is exhausted.
    fn plan(
        &mut self,
        idx: usize,
        obs: &Observation<'_>,
        peak: f64,
        events: &mut Vec<EngineEvent>,
    ) {
        let r = self.incidents[idx].rule;
        let (rule, signal) = &self.rules[r];
        while self.incidents[idx].next_step < rule.then.len() {
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
            let (rendered, summary, decision) = match render_action(action, &ctx) {
                Err(e) => (
                    None,
                    format!("{} (not rendered)", action.kind()),
                    Decision::suppressed(SuppressReason::InvalidLabelValue, e.to_string()),
                ),
                Ok(rendered) => {
                    let dry_run = if self.options.dry_run {
                        Some(DryRunSource::Engine)
                    } else if rule.guards.dry_run {
                        Some(DryRunSource::Rule)
                    } else if action.dry_run() {
                        Some(DryRunSource::Step)
                    } else {
                        None
                    };
                    let target = rendered.target();
                    let decision = match self.busy(idx, &target) {
                        Some(detail) => Decision::suppressed(SuppressReason::TargetBusy, detail),
                        None => self.muter.decide(
                            r,
                            &rule.guards,
                            &target,
                            self.id_base + idx,
                            obs.ts_ms,
                            dry_run,
                        ),
                    };
                    let summary = rendered.summary();
                    (Some(rendered), summary, decision)
                }
            };
            let performed = decision.counts_as_performed();
            let planned = PlannedAction {
                step: step + 1,
                kind: action.kind(),
                rendered,
                summary,
                decision,
                planned_ms: obs.ts_ms,
                verification: None,
            };
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
            if performed {
                state.pending = Some(Pending {
                    action: state.incident.actions.len() - 1,
                    deadline_ms: obs.ts_ms.saturating_add(rule.verify.wait.as_millis_i64()),
                    peak_at_plan: peak,
                    peak_since: peak,
                });
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
        },
        Action::Exec(a) => RenderedAction::Exec {
            argv: a.argv.iter().map(r).collect::<Result<_, _>>()?,
        },
        Action::Webhook(a) => RenderedAction::Webhook {
            url: r(&a.url)?,
            method: a.method,
            headers: a
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), r(v)?)))
                .collect::<Result<_, _>>()?,
            body: a.body.as_ref().map(|b| render_json(b, &r)).transpose()?,
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
