//! The one place that decides whether a planned step may run: cooldown,
//! attempt budget and dry-run, in that order, after the label-value check
//! done while rendering. Modelled on Alertmanager's `Muter`: one mechanism,
//! named reasons, every verdict recorded.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::incident::{Decision, SuppressReason};
use crate::runbook::Guards;
use crate::time::{human, rfc3339};

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

/// Attempts per (rule, target), in event-time order. Keyed by names, not
/// indices, so that the history survives a restart of heal with runbooks
/// that changed in between.
#[derive(Debug, Default)]
pub(crate) struct Muter {
    attempts: HashMap<(String, String), Vec<Attempt>>,
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

impl Muter {
    /// Decides on a step of `rule` (index) on `target` planned at `ts_ms` by
    /// incident `incident` (index), and records it as an attempt when it
    /// counts as performed.
    ///
    /// Cooldown only looks at other incidents: within one incident the
    /// chain's pace is `verify.wait`, and a cooldown there would stop every
    /// chain whose steps share a target (restart then roll back the same
    /// deployment). `max_attempts` counts every incident, dry-runs included,
    /// so a replay suppresses exactly what live mode would.
    pub(crate) fn decide(
        &mut self,
        rule: &str,
        guards: &Guards,
        target: &str,
        incident: &str,
        ts_ms: i64,
        dry_run: Option<DryRunSource>,
    ) -> Decision {
        let key = (rule.to_owned(), target.to_owned());
        let history = self.attempts.entry(key).or_default();
        let horizon = guards.window.max(guards.cooldown).as_millis_i64();
        history.retain(|a| ts_ms - a.ts_ms < horizon);

        let cooldown = guards.cooldown.as_millis_i64();
        if let Some(last) = history.iter().rev().find(|a| a.incident != incident) {
            if ts_ms - last.ts_ms < cooldown {
                return Decision::suppressed(
                    SuppressReason::Cooldown,
                    format!(
                        "this rule acted on {target:?} at {} ({}); cooldown {} lasts until {}",
                        rfc3339(last.ts_ms),
                        last.incident,
                        guards.cooldown,
                        rfc3339(last.ts_ms + cooldown)
                    ),
                );
            }
        }

        let window = guards.window.as_millis_i64();
        let in_window: Vec<&Attempt> = history
            .iter()
            .filter(|a| ts_ms - a.ts_ms < window)
            .collect();
        let max = guards.max_attempts as usize;
        if in_window.len() >= max {
            let next = in_window[in_window.len() - max].ts_ms + window;
            return Decision::suppressed(
                SuppressReason::MaxAttempts,
                format!(
                    "{} attempt{} on {target:?} in the last {} (max {max}); next allowed at {}",
                    in_window.len(),
                    if in_window.len() == 1 { "" } else { "s" },
                    guards.window,
                    rfc3339(next)
                ),
            );
        }

        let budget = format!(
            "attempt {} of {max} in {} on {target:?}",
            in_window.len() + 1,
            guards.window
        );
        history.push(Attempt {
            rule: rule.to_owned(),
            target: target.to_owned(),
            ts_ms,
            incident: incident.to_owned(),
        });
        match dry_run {
            Some(source) => {
                let why = match source {
                    DryRunSource::Engine => "engine in dry-run mode",
                    DryRunSource::Rule => "rule has guards.dry_run",
                    DryRunSource::Step => "step has dry_run",
                };
                Decision::suppressed(
                    SuppressReason::DryRun,
                    format!("{why}: planned, not performed; {budget}"),
                )
            }
            None => Decision::allowed(format!(
                "{budget}; last acted {}",
                last_acted(history, ts_ms)
            )),
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
    pub(crate) fn restore(&mut self, attempts: impl IntoIterator<Item = Attempt>) {
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

fn last_acted(history: &[Attempt], ts_ms: i64) -> String {
    match history.iter().rev().nth(1) {
        Some(a) => format!("{} ago", human(ts_ms - a.ts_ms)),
        None => "never in the window".to_owned(),
    }
}

/// The id of the incident with this sequence number (1-based).
pub(crate) fn incident_id(seq: u64) -> String {
    format!("inc-{seq:06}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;

    fn guards(cooldown_s: u64, max: u32, window_s: u64) -> Guards {
        Guards {
            cooldown: Duration::from_secs(cooldown_s),
            max_attempts: max,
            window: Duration::from_secs(window_s),
            ..Guards::default()
        }
    }

    #[test]
    fn cooldown_applies_across_incidents_only() {
        let g = guards(600, 10, 3600);
        let mut m = Muter::default();
        assert!(m.decide("r", &g, "t", "inc-000001", 0, None).allowed);
        // Same incident escalating one minute later: fine.
        assert!(m.decide("r", &g, "t", "inc-000001", 60_000, None).allowed);
        // Another incident within the cooldown: held back.
        let d = m.decide("r", &g, "t", "inc-000002", 120_000, None);
        assert_eq!(d.reason, Some(SuppressReason::Cooldown));
        assert_eq!(
            d.detail,
            "this rule acted on \"t\" at 1970-01-01T00:01:00Z (inc-000001); cooldown 10m lasts until 1970-01-01T00:11:00Z"
        );
        // Another target, another rule: unaffected.
        assert!(m.decide("r", &g, "u", "inc-000002", 120_000, None).allowed);
        assert!(m.decide("q", &g, "t", "inc-000002", 120_000, None).allowed);
        // After the cooldown: allowed.
        assert!(m.decide("r", &g, "t", "inc-000002", 660_000, None).allowed);
    }

    #[test]
    fn max_attempts_per_sliding_window() {
        let g = guards(0, 2, 600);
        let mut m = Muter::default();
        assert!(m.decide("r", &g, "t", "inc-000001", 0, None).allowed);
        assert!(m.decide("r", &g, "t", "inc-000002", 100_000, None).allowed);
        let d = m.decide("r", &g, "t", "inc-000003", 200_000, None);
        assert_eq!(d.reason, Some(SuppressReason::MaxAttempts));
        assert_eq!(
            d.detail,
            "2 attempts on \"t\" in the last 10m (max 2); next allowed at 1970-01-01T00:10:00Z"
        );
        // Suppressed steps are not attempts; the oldest leaves the window.
        assert!(m.decide("r", &g, "t", "inc-000003", 600_000, None).allowed);
    }

    #[test]
    fn dry_run_counts_as_an_attempt() {
        let g = guards(0, 1, 600);
        let mut m = Muter::default();
        let d = m.decide("r", &g, "t", "inc-000001", 0, Some(DryRunSource::Engine));
        assert_eq!(d.reason, Some(SuppressReason::DryRun));
        assert!(d.counts_as_performed());
        assert_eq!(
            d.detail,
            "engine in dry-run mode: planned, not performed; attempt 1 of 1 in 10m on \"t\""
        );
        assert_eq!(
            m.decide("r", &g, "t", "inc-000002", 1000, None).reason,
            Some(SuppressReason::MaxAttempts)
        );
    }
}
