//! Engine behaviour under controlled event time.

use std::collections::BTreeMap;

use detect::{Excursion, Scored};

use super::*;
use crate::RunbookSet;

const MIN: i64 = 60_000;
/// 2026-03-01T00:00:00Z: a start that makes report timestamps readable.
const T0: i64 = 1_772_323_200_000;

fn set(yaml: &str) -> RunbookSet {
    let signals =
        "signals:\n  - name: http_latency_p99_seconds\n    query: q\n    critical_score: 0.99999\n";
    match RunbookSet::from_sources(&[
        ("signals.yaml".into(), signals.into()),
        ("rules.yaml".into(), yaml.into()),
    ]) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

fn labels(service: &str, instance: &str) -> BTreeMap<String, String> {
    [
        ("__name__", "http_latency_p99_seconds"),
        ("service", service),
        ("instance", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A scripted series: one sample a minute from `T0`; `excursion(t)` says
/// whether minute `t` is in an excursion (onset, above, peak score).
struct Series {
    labels: BTreeMap<String, String>,
}

impl Series {
    fn new(service: &str, instance: &str) -> Series {
        Series {
            labels: labels(service, instance),
        }
    }

    fn at(&self, minute: i64, value: f64, ex: Option<(i64, bool, f64)>) -> Observation<'_> {
        let ts_ms = T0 + minute * MIN;
        let excursion = ex.map(|(onset_minute, above, peak_score)| Excursion {
            onset_ms: T0 + onset_minute * MIN,
            above,
            peak_score,
            peer_z: None,
            first: onset_minute == minute,
            in_band: false,
            band: (f64::NEG_INFINITY, f64::INFINITY),
        });
        let score = excursion.map_or(0.2, |e| e.peak_score);
        Observation {
            signal: "http_latency_p99_seconds",
            labels: &self.labels,
            ts_ms,
            value,
            scored: Scored { score, excursion },
        }
    }
}

/// Runs minutes `0..end` where minutes in `anomalous` are in one excursion
/// (above, with `peak(minute)`), returns all events and the incidents.
fn run(
    engine: &mut Engine,
    series: &Series,
    end: i64,
    anomalous: impl Fn(i64) -> Option<(i64, f64)>,
) -> Vec<EngineEvent> {
    let mut events = Vec::new();
    for m in 0..end {
        let ex = anomalous(m).map(|(onset, peak)| (onset, true, peak));
        events.extend(engine.observe(&series.at(m, 1.0, ex)));
    }
    events
}

const DRY: EngineOptions = EngineOptions {
    dry_run: true,
    await_actions: false,
};

fn chain_rule(extra: &str) -> String {
    format!(
        "rules:
  - name: latency-high
    when:
      signal: http_latency_p99_seconds
      direction: up
      for: 2m
    then:
      - action: restart
        target: deployment/{{{{service}}}}
      - action: rollback
        target: deployment/{{{{service}}}}
      - action: webhook
        url: https://pager.example.com/{{{{rule}}}}
    verify:
      wait: 5m
{extra}"
    )
}

fn steps(incident: &Incident) -> Vec<(usize, String, &'static str, i64, Option<&'static str>)> {
    incident
        .actions
        .iter()
        .map(|a| {
            (
                a.step,
                a.summary.clone(),
                a.decision.label(),
                (a.planned_ms - T0) / MIN,
                a.verification.as_ref().map(|v| v.outcome.as_str()),
            )
        })
        .collect()
}

#[test]
fn rule_waits_for_its_for_duration() {
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    // Excursion from minute 10 on; `for: 2m` => opens at minute 12 exactly.
    let events = run(&mut engine, &s, 12, |m| (m >= 10).then_some((10, 0.9999)));
    assert!(events.is_empty(), "{events:?}");
    let events = engine.observe(&s.at(12, 1.0, Some((10, true, 0.9999))));
    assert!(
        matches!(&events[0], EngineEvent::Opened { incident, ts_ms, .. } if incident == "inc-000001" && *ts_ms == T0 + 12 * MIN)
    );
    let incidents = engine.finish(T0 + 13 * MIN);
    assert_eq!(incidents[0].onset_ms, T0 + 10 * MIN);
    assert_eq!(incidents[0].opened_ms, T0 + 12 * MIN);
    assert_eq!(incidents[0].unresolved_at_ms, Some(T0 + 13 * MIN));
}

#[test]
fn for_zero_acts_on_the_firing_sample_and_direction_is_respected() {
    let set = set(&chain_rule("").replace("for: 2m", "for: 0s"));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    // A below-baseline excursion is ignored by an `up` rule.
    assert!(engine
        .observe(&s.at(1, 1.0, Some((1, false, 0.99999))))
        .is_empty());
    assert!(engine.observe(&s.at(2, 1.0, None)).is_empty());
    let events = engine.observe(&s.at(3, 1.0, Some((3, true, 0.9999))));
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[1], EngineEvent::Planned { action, .. } if action.step == 1));
}

#[test]
fn minimum_severity_and_label_matchers() {
    let rule = chain_rule("").replace(
        "for: 2m",
        "for: 0s\n      severity: critical\n      match:\n        service: checkout",
    );
    let set = set(&rule);
    let mut engine = Engine::new(&set, DRY);
    let other = Series::new("search", "search-0");
    assert!(run(&mut engine, &other, 5, |_| Some((0, 0.999999))).is_empty());
    let s = Series::new("checkout", "checkout-0");
    // Warning-level peak (below critical_score 0.99999): no incident yet.
    assert!(engine
        .observe(&s.at(0, 1.0, Some((0, true, 0.9999))))
        .is_empty());
    let events = engine.observe(&s.at(1, 1.0, Some((0, true, 0.999995))));
    assert!(matches!(
        &events[0],
        EngineEvent::Opened {
            severity: crate::runbook::Severity::Critical,
            ..
        }
    ));
}

#[test]
fn chain_advances_on_not_recovered_then_resolves_when_the_anomaly_ends() {
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    // Anomalous from minute 0 to 29; opens at 2, steps at 2, 7, 12.
    run(&mut engine, &s, 40, |m| (m < 30).then_some((0, 0.9999)));
    let incidents = engine.finish(T0 + 40 * MIN);
    assert_eq!(incidents.len(), 1);
    let inc = &incidents[0];
    assert_eq!(
        steps(inc),
        vec![
            (
                1,
                "restart deployment/checkout".to_owned(),
                "dry_run",
                2,
                Some("not_recovered")
            ),
            (
                2,
                "roll back deployment/checkout to the previous release".to_owned(),
                "dry_run",
                7,
                Some("not_recovered")
            ),
            (
                3,
                "webhook POST https://pager.example.com/latency-high".to_owned(),
                "dry_run",
                12,
                Some("not_recovered")
            ),
        ]
    );
    assert_eq!(
        inc.actions[0].verification.as_ref().unwrap().decided_ms,
        T0 + 7 * MIN
    );
    assert_eq!(
        inc.actions[0].verification.as_ref().unwrap().detail,
        "still anomalous (value 1 s, out of its band) after the 5m wait"
    );
    assert_eq!(inc.resolved_ms, Some(T0 + 30 * MIN));
    assert_eq!(inc.unresolved_at_ms, None);
    assert_eq!(
        inc.actions[0].decision.detail,
        "engine in dry-run mode: planned, not performed; attempt 1 of 3 in 1h on \"deployment/checkout\""
    );
    assert_eq!(
        inc.actions[1].decision.detail,
        "engine in dry-run mode: planned, not performed; attempt 2 of 3 in 1h on \"deployment/checkout\""
    );
}

#[test]
fn recovered_stops_the_chain_and_resolved_is_when_the_anomaly_ended() {
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    // Anomalous 0..=4; step 1 at 2, anomaly ends at 5, verified at 7.
    let events = run(&mut engine, &s, 20, |m| (m < 5).then_some((0, 0.9999)));
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            EngineEvent::Opened { .. } => "opened",
            EngineEvent::Planned { .. } => "planned",
            EngineEvent::Redecided { .. } => "redecided",
            EngineEvent::Verified { .. } => "verified",
            EngineEvent::Diagnosed { .. } => "diagnosed",
            EngineEvent::Resolved { .. } => "resolved",
        })
        .collect();
    assert_eq!(kinds, ["opened", "planned", "verified", "resolved"]);
    let inc = &engine.finish(T0 + 20 * MIN)[0];
    assert_eq!(
        steps(inc),
        vec![(
            1,
            "restart deployment/checkout".to_owned(),
            "dry_run",
            2,
            Some("recovered")
        )]
    );
    assert_eq!(
        inc.actions[0].verification.as_ref().unwrap().detail,
        "anomaly cleared after the 5m wait"
    );
    assert_eq!(inc.resolved_ms, Some(T0 + 5 * MIN));
}

#[test]
fn rising_peak_during_the_wait_is_worse() {
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    run(&mut engine, &s, 8, |m| {
        Some((0, if m < 4 { 0.9999 } else { 0.99999 }))
    });
    let inc = &engine.finish(T0 + 8 * MIN)[0];
    let v = inc.actions[0].verification.as_ref().unwrap();
    assert_eq!(v.outcome, Outcome::Worse);
    assert_eq!(
        v.detail,
        "still anomalous (value 1 s, out of its band) after the 5m wait; peak score rose from 0.9999 to 0.99999"
    );
    assert_eq!(inc.actions.len(), 2, "worse escalates like not_recovered");
    assert_eq!(
        inc.severity,
        crate::runbook::Severity::Critical,
        "severity follows the peak"
    );
}

#[test]
fn cleared_when_back_in_band_while_the_excursion_is_still_open() {
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    // Step 1 planned at minute 2 (for: 2m), verified at 7. The series is
    // back in its band from minute 6 on, while the detector's hysteresis
    // keeps the excursion open to the end.
    for m in 0..10 {
        let mut o = s.at(m, if m >= 6 { 1.0 } else { 9.0 }, Some((0, true, 0.9999)));
        if let Some(ex) = o.scored.excursion.as_mut() {
            ex.in_band = m >= 6;
        }
        engine.observe(&o);
    }
    let inc = &engine.finish(T0 + 10 * MIN)[0];
    let v = inc.actions[0].verification.as_ref().unwrap();
    assert_eq!(
        (v.outcome, v.detail.as_str(), v.decided_ms),
        (
            Outcome::Recovered,
            "back in its band from before the anomaly after the 5m wait",
            T0 + 7 * MIN
        )
    );
    assert_eq!(inc.actions.len(), 1, "recovered stops the chain");
}

#[test]
fn value_based_recovery() {
    let set = set(&chain_rule(
        "      recovered_when:\n        value_below: 0.5\n",
    ));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    let mut events = Vec::new();
    for m in 0..10 {
        let value = if m >= 6 { 0.3 } else { 2.0 };
        events.extend(engine.observe(&s.at(m, value, Some((0, true, 0.9999)))));
    }
    let inc = &engine.finish(T0 + 10 * MIN)[0];
    let v = inc.actions[0].verification.as_ref().unwrap();
    assert_eq!(
        (v.outcome, v.detail.as_str()),
        (
            Outcome::Recovered,
            "value 300 ms below 500 ms after the 5m wait"
        )
    );
    assert_eq!(inc.actions.len(), 1);
    // Recovered by value, but the detector still sees the excursion: open.
    assert_eq!(inc.resolved_ms, None);
}

#[test]
fn cooldown_suppresses_a_new_incident_on_the_same_target() {
    let set = set(&chain_rule(
        "    guards:\n      cooldown: 30m\n      max_attempts: 10\n      window: 1h\n",
    ));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    // First excursion 0..=4 (restart at 2, recovered at 7); second from 10.
    run(&mut engine, &s, 20, |m| match m {
        0..=4 => Some((0, 0.9999)),
        10.. => Some((10, 0.9999)),
        _ => None,
    });
    let incidents = engine.finish(T0 + 20 * MIN);
    assert_eq!(incidents.len(), 2);
    assert_eq!(incidents[1].id, "inc-000002");
    // Restart and rollback of the same deployment are in cooldown; the page
    // (another target) goes out: a suppressed step does not block the chain.
    assert_eq!(
        steps(&incidents[1]),
        vec![
            (
                1,
                "restart deployment/checkout".to_owned(),
                "cooldown",
                12,
                None
            ),
            (
                2,
                "roll back deployment/checkout to the previous release".to_owned(),
                "cooldown",
                12,
                None
            ),
            (
                3,
                "webhook POST https://pager.example.com/latency-high".to_owned(),
                "dry_run",
                12,
                Some("not_recovered")
            ),
        ]
    );
    assert_eq!(
        incidents[1].actions[0].decision.detail,
        "this rule acted on \"deployment/checkout\" at 2026-03-01T00:02:00Z (inc-000001); cooldown 30m lasts until 2026-03-01T00:32:00Z"
    );
}

#[test]
fn max_attempts_caps_a_chain() {
    let set = set(&chain_rule(
        "    guards:\n      max_attempts: 1\n      window: 1h\n",
    ));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("checkout", "checkout-0");
    run(&mut engine, &s, 20, |_| Some((0, 0.9999)));
    let inc = &engine.finish(T0 + 20 * MIN)[0];
    assert_eq!(
        steps(inc),
        vec![
            (
                1,
                "restart deployment/checkout".to_owned(),
                "dry_run",
                2,
                Some("not_recovered")
            ),
            (
                2,
                "roll back deployment/checkout to the previous release".to_owned(),
                "max_attempts",
                7,
                None
            ),
            (
                3,
                "webhook POST https://pager.example.com/latency-high".to_owned(),
                "dry_run",
                7,
                Some("not_recovered")
            ),
        ]
    );
    assert_eq!(
        inc.actions[1].decision.detail,
        "1 attempt on \"deployment/checkout\" in the last 1h (max 1); next allowed at 2026-03-01T01:02:00Z"
    );
}

#[test]
fn unsafe_label_values_are_refused_before_any_executor() {
    let rule = chain_rule("").replace(
        "deployment/{{service}}\n      - action: rollback",
        "pod/{{instance}}\n      - action: rollback",
    );
    let set = set(&rule);
    for bad in ["; rm -rf /", "$(id)", "`id`", "a\nb", "../../etc"] {
        let mut engine = Engine::new(&set, DRY);
        let s = Series::new("checkout", bad);
        run(&mut engine, &s, 4, |_| Some((0, 0.9999)));
        let inc = &engine.finish(T0 + 4 * MIN)[0];
        let first = &inc.actions[0];
        assert_eq!(
            first.decision.reason,
            Some(SuppressReason::InvalidLabelValue),
            "{bad:?}"
        );
        assert_eq!(first.rendered, None);
        assert_eq!(first.summary, "restart (not rendered)");
        assert_eq!(
            first.decision.detail,
            format!(
                "label \"instance\" has unsafe value {bad:?} (allowed: ^[A-Za-z0-9][A-Za-z0-9._:@/-]{{0,252}}$ without \"..\")"
            )
        );
        // The next step does not use the bad label and is planned at once.
        assert_eq!(inc.actions[1].decision.reason, Some(SuppressReason::DryRun));
        assert_eq!(inc.actions[1].planned_ms, first.planned_ms);
    }
}

#[test]
fn dry_run_sources_and_live_allow() {
    let live = EngineOptions {
        dry_run: false,
        await_actions: false,
    };
    let s = Series::new("checkout", "checkout-0");
    let cases = [
        ("", "allowed", "attempt 1 of 3 in 1h on \"deployment/checkout\"; last acted never in the window"),
        (
            "    guards:\n      dry_run: true\n",
            "dry_run",
            "rule has guards.dry_run: planned, not performed; attempt 1 of 3 in 1h on \"deployment/checkout\"",
        ),
    ];
    for (extra, label, detail) in cases {
        let set = set(&chain_rule(extra));
        let mut engine = Engine::new(&set, live);
        run(&mut engine, &s, 3, |_| Some((0, 0.9999)));
        let inc = &engine.finish(T0 + 3 * MIN)[0];
        assert_eq!(
            (
                inc.actions[0].decision.label(),
                inc.actions[0].decision.detail.as_str()
            ),
            (label, detail)
        );
    }
    let step_dry = chain_rule("").replacen(
        "target: deployment/{{service}}\n",
        "target: deployment/{{service}}\n        dry_run: true\n",
        1,
    );
    let set = set(&step_dry);
    let mut engine = Engine::new(&set, live);
    run(&mut engine, &s, 3, |_| Some((0, 0.9999)));
    assert!(engine.finish(0)[0].actions[0]
        .decision
        .detail
        .starts_with("step has dry_run: "));
}

#[test]
fn incident_ids_follow_opening_order_and_runs_are_deterministic() {
    let set = set(&chain_rule("").replace("for: 2m", "for: 0s"));
    let once = || {
        let mut engine = Engine::new(&set, DRY);
        let a = Series::new("checkout", "checkout-0");
        let b = Series::new("payments", "payments-0");
        for m in 0..30 {
            // b fires first (minute 3), a at minute 5, b again at 20.
            let ea = (5..15).contains(&m).then_some((5, true, 0.9999));
            let eb = match m {
                3..=8 => Some((3, true, 0.9999)),
                20.. => Some((20, true, 0.9999)),
                _ => None,
            };
            engine.observe(&a.at(m, 1.0, ea));
            engine.observe(&b.at(m, 1.0, eb));
        }
        engine.finish(T0 + 30 * MIN)
    };
    let first = once();
    let summary: Vec<(String, String, i64)> = first
        .iter()
        .map(|i| (i.id.clone(), i.service.clone(), (i.opened_ms - T0) / MIN))
        .collect();
    assert_eq!(
        summary,
        [
            ("inc-000001".to_owned(), "payments".to_owned(), 3),
            ("inc-000002".to_owned(), "checkout".to_owned(), 5),
            ("inc-000003".to_owned(), "payments".to_owned(), 20),
        ]
    );
    assert_eq!(first, once());
}

#[test]
fn a_second_rule_does_not_act_on_a_target_being_verified() {
    // Two rules see the same fault; both would restart the same deployment.
    let set = set("rules:
  - name: first
    when:
      signal: http_latency_p99_seconds
      for: 0s
    then:
      - action: restart
        target: deployment/{{service}}
    verify:
      wait: 5m
  - name: second
    when:
      signal: http_latency_p99_seconds
      for: 1m
    then:
      - action: restart
        target: deployment/{{service}}
    verify:
      wait: 5m
");
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: false,
            await_actions: false,
        },
    );
    let s = Series::new("checkout", "checkout-0");
    run(&mut engine, &s, 3, |_| Some((0, 0.9999)));
    let incidents = engine.finish(T0 + 3 * MIN);
    assert_eq!(incidents.len(), 2);
    assert_eq!(incidents[0].actions[0].decision.label(), "allowed");
    let held = &incidents[1].actions[0].decision;
    assert_eq!(held.label(), "target_busy");
    assert_eq!(
        held.detail,
        "inc-000001 step 1 acted on \"deployment/checkout\" and is verified until 2026-03-01T00:05:00Z"
    );
}

#[test]
fn a_step_held_back_as_target_busy_keeps_its_place_in_the_chain() {
    // Two rules see the same fault; the second's three steps must not all
    // be spent while the first's step is being verified.
    let set = set("rules:
  - name: first
    when:
      signal: http_latency_p99_seconds
      for: 0s
    then:
      - action: restart
        target: deployment/{{service}}
    verify:
      wait: 5m
  - name: second
    when:
      signal: http_latency_p99_seconds
      for: 1m
    then:
      - action: restart
        target: deployment/{{service}}
      - action: rollback
        target: deployment/{{service}}
      - action: webhook
        url: https://pager.example.com/{{rule}}
    verify:
      wait: 5m
");
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: false,
            await_actions: false,
        },
    );
    let s = Series::new("checkout", "checkout-0");
    run(&mut engine, &s, 8, |_| Some((0, 0.9999)));
    let incidents = engine.finish(T0 + 8 * MIN);
    assert_eq!(
        steps(&incidents[1]),
        vec![
            (
                1,
                "restart deployment/checkout".to_owned(),
                "target_busy",
                1,
                None
            ),
            // The first rule's step was verified at minute 5: the target is
            // free and the held step runs, still step 1.
            (
                1,
                "restart deployment/checkout".to_owned(),
                "allowed",
                5,
                None
            ),
        ]
    );
}

#[test]
fn a_drift_the_detector_got_used_to_keeps_its_incident_open() {
    // A leak: the excursion fires at minute 0 (band before it: up to 2.0),
    // the adapting detector stops flagging it at minute 10 while the value
    // keeps climbing; at minute 30 a restart brings it back.
    let set = set(&chain_rule("").replace("for: 2m", "for: 0s"));
    let mut engine = Engine::new(&set, DRY);
    let s = Series::new("search", "search-0");
    let mut events = Vec::new();
    for m in 0..40 {
        let value = if m < 30 { 3.0 + m as f64 } else { 1.0 };
        let mut o = s.at(m, value, (m < 10).then_some((0, true, 0.9999)));
        if let Some(ex) = &mut o.scored.excursion {
            ex.band = (0.0, 2.0);
            ex.in_band = false;
        }
        events.extend(engine.observe(&o));
        if m == 29 {
            let inc = &engine.finish(T0 + 29 * MIN)[0];
            assert_eq!(inc.resolved_ms, None, "still climbing: open");
            // The first step's verification at minute 5 was in the
            // excursion; the second's at 10 is after it ended, still out.
            let v = inc.actions[1].verification.as_ref().unwrap();
            assert_eq!(v.outcome, Outcome::NotRecovered);
            assert!(v.detail.starts_with(
                "the detector no longer flags it, but value 13 s is still out of its band"
            ));
        }
    }
    let inc = &engine.finish(T0 + 40 * MIN)[0];
    assert_eq!(inc.resolved_ms, Some(T0 + 30 * MIN));
}

#[test]
fn live_verification_waits_for_the_action_to_finish() {
    // Step 1 (a restart, 30 s default timeout) is planned at minute 2;
    // verify.wait is 5m. Returns the minute step 1 was verified at.
    let s = Series::new("checkout", "checkout-0");
    let verified_at = |await_actions: bool, finished_at: Option<i64>| {
        let set = set(&chain_rule(""));
        let mut engine = Engine::new(
            &set,
            EngineOptions {
                dry_run: false,
                await_actions,
            },
        );
        for m in 0..20 {
            let events = engine.observe(&s.at(m, 1.0, Some((0, true, 0.9999))));
            if events
                .iter()
                .any(|e| matches!(e, EngineEvent::Verified { step: 1, .. }))
            {
                return Some(m);
            }
            // The act stage's report, after the minute's sample.
            if Some(m) == finished_at {
                assert!(engine.action_finished("inc-000001", 1, T0 + m * MIN));
                // A repeated (or late) report changes nothing.
                assert!(!engine.action_finished("inc-000001", 1, T0 + m * MIN));
            }
        }
        None
    };
    // Replay and benches: wait after planning.
    assert_eq!(verified_at(false, None), Some(7));
    // Live: never while the action runs; `wait` after it finished.
    assert_eq!(verified_at(true, Some(4)), Some(9));
    // A quick action: about as before (the wait starts a moment later).
    assert_eq!(verified_at(true, Some(2)), Some(7));
    // A report that never comes: at the latest timeout + wait after planning.
    assert_eq!(verified_at(true, None), Some(8));
    // Without an act stage there is nothing to wait for: reports are ignored.
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(
        &set,
        EngineOptions {
            dry_run: false,
            await_actions: false,
        },
    );
    run(&mut engine, &s, 3, |_| Some((0, 0.9999)));
    assert!(!engine.action_finished("inc-000001", 1, T0 + 3 * MIN));
}

/// A ranking with `root` first, then `others`.
fn ranking(root: &str, others: &[&str]) -> Vec<detect::diagnose::Suspect> {
    std::iter::once(root)
        .chain(others.iter().copied())
        .enumerate()
        .map(|(i, s)| detect::diagnose::Suspect {
            service: s.to_owned(),
            score: 10.0 - i as f64,
            own: 10.0 - i as f64,
            latency: 0.0,
            explained: 0.0,
            explained_by: None,
            onset_ms: None,
            evidence: Vec::new(),
            path: vec![s.to_owned()],
        })
        .collect()
}

#[test]
fn a_symptom_waits_for_its_group_then_is_inhibited_until_the_diagnosis_moves_to_it() {
    let rules = "diagnosis:
  group_wait: 2m
  services: {web: {depends_on: [db]}}
rules:
  - name: restart-slow
    when: {signal: http_latency_p99_seconds, direction: up}
    then:
      - action: restart
        target: deployment/{{service}}
    verify: {wait: 10m}
  - name: page-on-symptom
    when: {signal: http_latency_p99_seconds, direction: up, root_cause: false}
    then:
      - action: webhook
        url: https://pager.example.com/{{service}}
    verify: {wait: 10m}
";
    let set = set(rules);
    let mut engine = Engine::new(&set, DRY);
    let (web, db) = (Series::new("web", "web-0"), Series::new("db", "db-0"));
    let both = ["db".to_owned(), "web".to_owned()];
    let mut events = Vec::new();
    for m in 0..8 {
        let ex = Some((0, true, 0.9999));
        events.extend(engine.observe(&db.at(m, 1.0, ex)));
        events.extend(engine.observe(&web.at(m, 1.0, ex)));
        if m == 1 {
            // The pipeline ranked the group: db is the cause.
            events.extend(engine.set_diagnosis(
                &[GroupDiagnosis {
                    services: both.to_vec(),
                    onset_ms: T0,
                    ranking: ranking("db", &["web"]),
                }],
                T0 + m * MIN,
            ));
        }
        if m == 5 {
            // A new ranking blames web.
            events.extend(engine.set_diagnosis(
                &[GroupDiagnosis {
                    services: both.to_vec(),
                    onset_ms: T0,
                    ranking: ranking("web", &["db"]),
                }],
                T0 + m * MIN,
            ));
        }
    }
    let incidents = engine.finish(T0 + 8 * MIN);
    let by = |service: &str, rule: &str| {
        incidents
            .iter()
            .find(|i| i.service == service && i.rule == rule)
            .unwrap_or_else(|| panic!("no {rule} incident on {service}: {incidents:#?}"))
    };
    let decisions = |i: &Incident| -> Vec<(i64, &'static str)> {
        i.actions
            .iter()
            .map(|a| {
                (
                    (a.planned_ms - T0) / MIN,
                    a.decision.reason.map_or("allowed", SuppressReason::as_str),
                )
            })
            .collect()
    };
    // Minutes 0 and 1: every step waits for the group (group_wait 2m).
    let db_restart = by("db", "restart-slow");
    assert_eq!(
        decisions(db_restart),
        [(0, "inhibited_by_root_cause"), (2, "dry_run")],
        "the cause acts once its group has had time to form"
    );
    assert!(db_restart.actions[0]
        .decision
        .detail
        .contains("awaiting the diagnosis"));
    let web_restart = by("web", "restart-slow");
    let d = decisions(web_restart);
    assert_eq!(d[0], (0, "inhibited_by_root_cause"));
    // Inhibited as a symptom while db is the cause; released at minute 5.
    assert!(
        web_restart
            .actions
            .iter()
            .any(|a| a.decision.detail.contains(
                "\"web\" is a symptom: group inc-000001 (db, web) ranks \"db\" as its root cause"
            )),
        "{web_restart:#?}"
    );
    // (set after minute 5's samples: the next sample decides)
    assert_eq!(d.last(), Some(&(6, "dry_run")), "{d:?}");
    // The symptom rule pages about web once it is a symptom, and about db
    // only once the new ranking makes db a symptom.
    assert_eq!(
        decisions(by("web", "page-on-symptom")).last(),
        Some(&(2, "dry_run"))
    );
    assert_eq!(
        decisions(by("db", "page-on-symptom")),
        [
            (0, "inhibited_by_root_cause"),
            (2, "inhibited_by_root_cause"),
            (6, "dry_run")
        ]
    );
    // Each incident records its group's latest diagnosis.
    let diag = web_restart.diagnosis.as_ref().unwrap();
    assert_eq!(
        (diag.root_cause.as_str(), diag.is_root_cause),
        ("web", true)
    );
    assert_eq!(diag.services, both);
    let diagnosed: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Diagnosed {
                incident,
                root_cause,
                ..
            } => Some((incident.as_str(), root_cause.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        diagnosed.len(),
        8,
        "four incidents, diagnosed twice: {diagnosed:?}"
    );
}

#[test]
fn without_a_diagnosis_block_nothing_waits() {
    let set = set(&chain_rule(""));
    let mut engine = Engine::new(&set, DRY);
    assert!(engine.diagnosis().is_none());
    let s = Series::new("web", "web-0");
    run(&mut engine, &s, 4, |_| Some((0, 0.9999)));
    assert!(engine.set_diagnosis(&[], T0).is_empty());
    let inc = &engine.finish(T0 + 4 * MIN)[0];
    assert_eq!(inc.actions[0].decision.reason, Some(SuppressReason::DryRun));
}
