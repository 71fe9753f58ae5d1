//! The global guardrails, silences, approval and persisted guard state,
//! under controlled event time.

use std::collections::BTreeMap;

use detect::{Excursion, Scored};

use super::*;
use crate::RunbookSet;

const SEC: i64 = 1000;
/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;
const LIVE: EngineOptions = EngineOptions {
    dry_run: false,
    await_actions: false,
};

/// One signal, one rule with a one-step restart chain; `extra` goes under
/// the rule (guards, verify) and `top` at the file's top level.
fn set(extra: &str, top: &str) -> RunbookSet {
    let text = format!(
        "signals:
  - name: lat
    query: q
rules:
  - name: restart-on-latency
    when: {{signal: lat, direction: up, for: 0s}}
    then:
      - action: restart
        target: svc/{{{{service}}}}/{{{{instance}}}}
    verify: {{wait: 10s}}
{extra}
{top}"
    );
    RunbookSet::from_sources(&[("r.yaml".into(), text)]).unwrap_or_else(|e| panic!("{e}"))
}

fn labels(service: &str, instance: &str) -> BTreeMap<String, String> {
    [
        ("__name__", "lat"),
        ("service", service),
        ("instance", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A sample at second `s`, in an excursion that began at `onset` (or none).
fn obs(
    labels: &BTreeMap<String, String>,
    s: i64,
    onset: Option<i64>,
    in_band: bool,
) -> Observation<'_> {
    let excursion = onset.map(|o| Excursion {
        onset_ms: T0 + o * SEC,
        above: true,
        peak_score: 0.9,
        peer_z: None,
        first: o == s,
        in_band,
        band: (f64::NEG_INFINITY, f64::INFINITY),
    });
    Observation {
        signal: "lat",
        labels,
        ts_ms: T0 + s * SEC,
        value: 1.0,
        scored: Scored {
            score: if onset == Some(s) { 0.9 } else { 0.0 },
            excursion,
        },
    }
}

fn decisions(events: &[EngineEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Planned { action, .. } => Some(action.decision.label()),
            _ => None,
        })
        .collect()
}

/// `n` instances of `service` all firing at second `s`.
fn storm(engine: &mut Engine, series: &[BTreeMap<String, String>], s: i64) -> Vec<&'static str> {
    let mut out = Vec::new();
    for l in series {
        out.extend(decisions(&engine.observe(&obs(l, s, Some(s), false))));
    }
    out
}

#[test]
fn rate_limit_and_concurrency_hold_across_rules_and_targets() {
    let top = "guardrails:
  max_actions_per_minute: 3
  max_concurrent: 10
  max_instances_per_service: 100
  max_percent_per_service: 100
";
    let mut engine = Engine::new(&set("", top), LIVE);
    let series: Vec<_> = (0..5).map(|i| labels(&format!("s{i}"), "a")).collect();
    assert_eq!(
        storm(&mut engine, &series, 0),
        ["allowed", "allowed", "allowed", "rate_limit", "rate_limit"]
    );
    let inc = engine.finish(T0);
    assert!(inc[3].actions[0]
        .decision
        .detail
        .starts_with("3 steps in the last minute (max 3); next allowed at 2026-03-01T00:01:00Z"));

    let top = "guardrails:
  max_actions_per_minute: 100
  max_concurrent: 2
  max_instances_per_service: 100
  max_percent_per_service: 100
";
    let mut engine = Engine::new(&set("", top), LIVE);
    assert_eq!(
        storm(&mut engine, &series, 0),
        [
            "allowed",
            "allowed",
            "max_concurrent",
            "max_concurrent",
            "max_concurrent"
        ]
    );
}

#[test]
fn blast_radius_counts_instances_of_one_service() {
    let top = "guardrails:
  max_instances_per_service: 5
  max_percent_per_service: 50
";
    let mut engine = Engine::new(&set("", top), LIVE);
    // Six instances of `web` are known (seen once, quiet), then four fire.
    let web: Vec<_> = (0..6).map(|i| labels("web", &format!("web-{i}"))).collect();
    for l in &web {
        engine.observe(&obs(l, 0, None, false));
    }
    // 50 % of 6 = 3 at once; the fourth is held back. Another service is
    // not affected.
    assert_eq!(
        storm(&mut engine, &web[..4], 1),
        ["allowed", "allowed", "allowed", "blast_radius"]
    );
    assert_eq!(
        storm(&mut engine, &[labels("api", "api-0")], 1),
        ["allowed"]
    );
    let inc = engine.finish(T0);
    assert_eq!(
        inc[3].actions[0].decision.detail,
        "4 of 6 known instances of service \"web\" would be under a step at once (max 3: 5 instances, 50%)"
    );
    // A one-instance service may always act on its one instance.
    let mut engine = Engine::new(&set("", top), LIVE);
    assert_eq!(
        storm(&mut engine, &[labels("solo", "solo-0")], 0),
        ["allowed"]
    );
}

#[test]
fn silences_and_maintenance_windows_mute_matching_series() {
    let mut engine = Engine::new(&set("", ""), LIVE);
    let web = labels("web", "web-0");
    let api = labels("api", "api-0");
    let s = engine
        .add_silence(
            vec![Matcher::parse("service=web").unwrap()],
            T0,
            T0 + 60 * SEC,
            "alice",
            "deploying web",
        )
        .unwrap();
    assert_eq!(s.id, "sil-000001");
    // A maintenance window tomorrow does not mute today.
    engine
        .add_silence(
            vec![Matcher::parse("service=api").unwrap()],
            T0 + 86_400 * SEC,
            T0 + 90_000 * SEC,
            "bob",
            "db upgrade",
        )
        .unwrap();
    assert_eq!(
        decisions(&engine.observe(&obs(&web, 5, Some(5), false))),
        ["silenced"]
    );
    assert_eq!(
        decisions(&engine.observe(&obs(&api, 5, Some(5), false))),
        ["allowed"]
    );
    let inc = engine.finish(T0 + 5 * SEC);
    assert!(inc[0].actions[0].decision.detail.starts_with(
        "silence sil-000001 {service=\"web\"} from 2026-03-01T00:00:00Z until 2026-03-01T00:01:00Z by alice: deploying web"
    ));
    assert_eq!(
        engine.add_silence(vec![], T0, T0 + 1, "x", "y"),
        Err(SilenceError::NoMatchers)
    );
    assert_eq!(
        engine.add_silence(vec![Matcher::parse("a=b").unwrap()], T0, T0, "x", "y"),
        Err(SilenceError::EmptyRange)
    );
    // Expired early: no longer listed, no longer muting.
    engine.expire_silence("sil-000001", T0 + 10 * SEC).unwrap();
    assert_eq!(engine.silences(T0 + 10 * SEC).len(), 1);
    // Expiring it again is an error, not a silent success.
    assert_eq!(
        engine.expire_silence("sil-000001", T0 + 11 * SEC),
        Err(SilenceError::AlreadyEnded {
            id: "sil-000001".into(),
            at: "2026-03-01T00:00:10Z".into()
        })
    );
}

#[test]
fn flapping_suppresses_after_too_many_openings() {
    let top = "guardrails:\n  flap_max_opens: 2\n  flap_window: 10m\n";
    let extra = "    guards: {cooldown: 0s, max_attempts: 100, window: 1h}\n";
    let mut engine = Engine::new(&set(extra, top), LIVE);
    let web = labels("web", "web-0");
    let mut got = Vec::new();
    // Open (fire), recover quickly, three times: the third opening flaps.
    for k in 0..3 {
        let s = k * 60;
        got.extend(decisions(&engine.observe(&obs(&web, s, Some(s), false))));
        for t in s + 1..s + 20 {
            engine.observe(&obs(&web, t, None, false));
        }
    }
    assert_eq!(got, ["allowed", "allowed", "flapping"]);
}

#[test]
fn resolve_after_damps_resolving() {
    let top = "guardrails:\n  resolve_after: 30s\n";
    let mut engine = Engine::new(&set("", top), LIVE);
    let web = labels("web", "web-0");
    engine.observe(&obs(&web, 0, Some(0), false));
    // Quiet from 1 s, verified recovered at 10 s; anomalous again at 20 s
    // (within 30 s): the same incident goes on, no second one opens.
    for t in 1..20 {
        engine.observe(&obs(&web, t, None, true));
    }
    engine.observe(&obs(&web, 20, Some(20), false));
    for t in 21..100 {
        engine.observe(&obs(&web, t, None, true));
    }
    let inc = engine.finish(T0 + 100 * SEC);
    assert_eq!(inc.len(), 1);
    // Resolved 30 s after the anomaly last ended (at 21 s).
    assert_eq!(inc[0].resolved_ms, Some(T0 + 21 * SEC));
}

#[test]
fn approval_parks_rechecks_the_symptom_and_expires() {
    let extra = "    guards: {require_approval: true, approval_timeout: 5m, cooldown: 0s}\n";
    let mut engine = Engine::new(&set(extra, ""), LIVE);
    let web = labels("web", "web-0");
    assert_eq!(
        decisions(&engine.observe(&obs(&web, 0, Some(0), false))),
        ["awaiting_approval"]
    );
    assert_eq!(engine.awaiting_approval(), ["inc-000001"]);
    // Still anomalous when approved: the step goes through every guard and
    // is allowed.
    engine.observe(&obs(&web, 30, Some(0), false));
    let ev = engine
        .approve("inc-000001", T0 + 31 * SEC, "alice")
        .unwrap();
    assert_eq!(decisions(&ev), ["allowed"]);
    let inc = engine.finish(T0 + 31 * SEC);
    assert!(inc[0].actions[1]
        .decision
        .detail
        .starts_with("approved by alice; attempt 1 of 3"));
    assert_eq!(
        engine.approve("inc-000001", T0 + 32 * SEC, "alice"),
        Err(ApproveError::NothingParked("inc-000001".into()))
    );

    // Second incident: back in its band by the time someone approves.
    let api = labels("api", "api-0");
    engine.observe(&obs(&api, 100, Some(100), false));
    engine.observe(&obs(&api, 110, Some(100), true));
    let ev = engine.approve("inc-000002", T0 + 111 * SEC, "bob").unwrap();
    assert_eq!(decisions(&ev), ["symptom_resolved"]);

    // Third: nobody approves; after 5 minutes the step expires.
    let db = labels("db", "db-0");
    engine.observe(&obs(&db, 200, Some(200), false));
    let ev = engine.observe(&obs(&db, 200 + 300, Some(200), false));
    assert_eq!(decisions(&ev), ["approval_expired"]);
    assert!(engine.awaiting_approval().is_empty());
}

#[test]
fn the_act_stage_recheck_is_the_steps_one_decision() {
    let mut engine = Engine::new(
        &set("    guards: {cooldown: 0s, max_attempts: 1}\n", ""),
        LIVE,
    );
    let web = labels("web", "web-0");
    assert_eq!(
        decisions(&engine.observe(&obs(&web, 0, Some(0), false))),
        ["allowed"]
    );
    // The symptom still holds: the step may run.
    assert_eq!(engine.recheck("inc-000001", 1, T0 + SEC), None);
    // Back in its band before the act stage got to it: the chain's
    // symptom_resolved stage mutes it, and recording that replaces the
    // `allowed` (nothing ran: no verification, no attempt booked).
    engine.observe(&obs(&web, 2, Some(0), true));
    let d = engine.recheck("inc-000001", 1, T0 + 3 * SEC).unwrap();
    assert_eq!(d.reason, Some(SuppressReason::SymptomResolved));
    let ev = engine.redecide("inc-000001", 1, d.clone(), T0 + 3 * SEC);
    assert!(matches!(
        &ev[..],
        [EngineEvent::Redecided { incident, action, ts_ms }]
            if incident == "inc-000001" && action.decision == d && *ts_ms == T0 + 3 * SEC
    ));
    // Twice does nothing; an unknown incident may run.
    assert!(engine.redecide("inc-000001", 1, d, T0 + 4 * SEC).is_empty());
    assert_eq!(engine.recheck("inc-000099", 1, T0), None);
    let inc = &engine.finish(T0 + 5 * SEC)[0];
    assert_eq!(inc.actions.len(), 1, "one decision for the step");
    assert_eq!(inc.actions[0].decision.label(), "symptom_resolved");
    assert!(inc.actions[0].verification.is_none());
    // The attempt was released: with max_attempts 1 another incident on
    // the same target is allowed at once.
    for t in 6..40 {
        engine.observe(&obs(&web, t, None, true));
    }
    assert_eq!(
        decisions(&engine.observe(&obs(&web, 40, Some(40), false))),
        ["allowed"]
    );
}

#[test]
fn a_step_verified_before_the_act_stage_got_to_it_is_redecided_too() {
    let mut engine = Engine::new(&set("", ""), LIVE);
    let web = labels("web", "web-0");
    engine.observe(&obs(&web, 0, Some(0), false));
    // Back in its band from 1 s (the excursion still open): verified as
    // recovered at 10 s, before the act stage re-checked the step.
    for t in 1..=10 {
        engine.observe(&obs(&web, t, Some(0), true));
    }
    let before = &engine.finish(T0 + 10 * SEC)[0];
    assert_eq!(before.resolved_ms, None);
    assert!(before.actions[0].verification.is_some());
    let d = engine.recheck("inc-000001", 1, T0 + 11 * SEC).unwrap();
    let ev = engine.redecide("inc-000001", 1, d, T0 + 11 * SEC);
    assert_eq!(ev.len(), 1);
    let inc = &engine.finish(T0 + 11 * SEC)[0];
    assert_eq!(inc.actions[0].decision.label(), "symptom_resolved");
    assert!(
        inc.actions[0].verification.is_none(),
        "nothing ran to verify"
    );
}

#[test]
fn guard_state_survives_a_restart() {
    let extra = "    guards: {cooldown: 30m, max_attempts: 5, window: 1h}\n";
    let set = set(extra, "");
    let web = labels("web", "web-0");
    let mut first = Engine::new(&set, LIVE);
    assert_eq!(
        decisions(&first.observe(&obs(&web, 0, Some(0), false))),
        ["allowed"]
    );
    first
        .add_silence(
            vec![Matcher::parse("service=api").unwrap()],
            T0,
            T0 + 3_600 * SEC,
            "a",
            "b",
        )
        .unwrap();
    let saved = first.guard_state(T0 + 60 * SEC);
    let json = serde_json::to_string(&saved).unwrap();

    // heal restarts: a new engine with the saved state.
    let mut second = Engine::new(&set, LIVE);
    second.restore(serde_json::from_str(&json).unwrap());
    assert_eq!(second.guard_state(T0 + 60 * SEC), saved);
    // The cooldown still holds, the silence still mutes, and incident ids
    // continue instead of starting over at inc-000001.
    let ev = second.observe(&obs(&web, 120, Some(120), false));
    assert_eq!(decisions(&ev), ["cooldown"]);
    let api = labels("api", "api-0");
    assert_eq!(
        decisions(&second.observe(&obs(&api, 120, Some(120), false))),
        ["silenced"]
    );
    let inc = second.finish(T0 + 120 * SEC);
    assert_eq!(inc[0].id, "inc-000002");
    assert!(inc[0].actions[0].decision.detail.contains("(inc-000001)"));
}

#[test]
fn resolved_incidents_can_be_forgotten_without_renumbering() {
    let mut engine = Engine::new(&set("", ""), LIVE);
    let web = labels("web", "web-0");
    let api = labels("api", "api-0");
    // inc-000001 on web: quiet from 1 s, verified at 10 s, resolved; then
    // inc-000002 on api stays open.
    engine.observe(&obs(&web, 0, Some(0), false));
    for t in 1..=12 {
        engine.observe(&obs(&web, t, None, true));
    }
    engine.observe(&obs(&api, 13, Some(13), false));
    // web again: inc-000003, resolved at 31 s.
    engine.observe(&obs(&web, 30, Some(30), false));
    for t in 31..45 {
        engine.observe(&obs(&web, t, None, true));
    }
    assert_eq!(engine.incidents_held(), 3);
    assert_eq!(
        engine.forget_resolved(T0 + 100 * SEC),
        1,
        "stops at the open inc-000002"
    );
    assert_eq!(engine.incidents_held(), 2);
    assert_eq!(engine.symptom_holds("inc-000001"), None);
    assert_eq!(engine.symptom_holds("inc-000002"), Some(true));
    // The open incident still follows its series and new ids continue.
    engine.observe(&obs(&api, 50, None, true));
    engine.observe(&obs(&labels("db", "db-0"), 51, Some(51), false));
    let ids: Vec<String> = engine
        .finish(T0 + 60 * SEC)
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["inc-000002", "inc-000003", "inc-000004"]);
    assert_eq!(engine.forget_resolved(T0 + 100 * SEC), 2);
}

#[test]
fn a_silenced_step_waits_for_the_silence_to_end_and_then_runs() {
    // A two-step chain: the first step must not be used up by the silence.
    let text = "signals:
  - name: lat
    query: q
rules:
  - name: restart-on-latency
    when: {signal: lat, direction: up, for: 0s}
    then:
      - action: restart
        target: svc/{{service}}/{{instance}}
      - action: webhook
        url: https://pager.example.com/x
    verify: {wait: 10s}
";
    let set = RunbookSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap();
    let mut engine = Engine::new(&set, LIVE);
    let web = labels("web", "web-0");
    engine
        .add_silence(
            vec![Matcher::parse("service=web").unwrap()],
            T0,
            T0 + 30 * SEC,
            "alice",
            "deploying web",
        )
        .unwrap();
    let mut got = Vec::new();
    for s in 0..35 {
        if s == 20 {
            // Meanwhile the report says what the step waits for.
            let inc = &engine.finish(T0 + 20 * SEC)[0];
            let md = crate::report::markdown(inc);
            assert!(
                md.contains("step 1 of 2 (restart svc/web/web-0) is held back (silenced: silence sil-000001"),
                "{md}"
            );
            assert!(md.contains("and runs once that ends."), "{md}");
            assert!(!md.contains("human must take over"), "{md}");
        }
        let ev = engine.observe(&obs(&web, s, Some(0), false));
        got.extend(
            ev.iter()
                .filter_map(|e| match e {
                    EngineEvent::Planned { action, .. } => {
                        Some((s, action.step, action.decision.label()))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>(),
        );
    }
    // Held once (one record, not one per sample), the chain not moved on;
    // the step runs on the first sample after the silence ended.
    assert_eq!(got, [(0, 1, "silenced"), (30, 1, "allowed")]);
    let inc = &engine.finish(T0 + 35 * SEC)[0];
    assert_eq!(inc.actions.len(), 2);
}

#[test]
fn a_rate_limited_step_is_retried_when_the_window_passes() {
    let top = "guardrails:
  max_actions_per_minute: 1
  max_instances_per_service: 100
  max_percent_per_service: 100
";
    let mut engine = Engine::new(&set("", top), LIVE);
    let a = labels("a", "a-0");
    let b = labels("b", "b-0");
    let mut got = Vec::new();
    for s in 0..70 {
        for l in [&a, &b] {
            // Both stay anomalous; `a` recovers (in band) after its step.
            let in_band = l == &a && s > 5;
            let ev = engine.observe(&obs(l, s, Some(0), in_band));
            for e in &ev {
                if let EngineEvent::Planned { incident, action } = e {
                    got.push((s, incident.clone(), action.decision.label()));
                }
            }
        }
    }
    assert_eq!(
        got,
        [
            (0, "inc-000001".to_owned(), "allowed"),
            (0, "inc-000002".to_owned(), "rate_limit"),
            (60, "inc-000002".to_owned(), "allowed"),
        ]
    );
}

#[test]
fn a_step_awaiting_approval_is_reported_as_such_with_its_expiry() {
    let extra = "    guards: {require_approval: true, approval_timeout: 5m, cooldown: 0s}\n";
    let mut engine = Engine::new(&set(extra, ""), LIVE);
    let web = labels("web", "web-0");
    engine.observe(&obs(&web, 0, Some(0), false));
    engine.observe(&obs(&web, 30, Some(0), false));
    let inc = &engine.finish(T0 + 30 * SEC)[0];
    let waiting = "awaiting approval of step 1 of 1 (restart svc/web/web-0), expires at \
                   2026-03-01T00:05:00Z";
    assert_eq!(inc.waiting().as_deref(), Some(waiting));
    let md = crate::report::markdown(inc);
    assert!(
        md.contains(&format!(
            "**STILL OPEN** at 2026-03-01T00:00:30Z: {waiting}."
        )),
        "{md}"
    );
    assert!(!md.contains("human must take over"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&crate::report::json_line(inc)).unwrap();
    assert_eq!(json["waiting"], waiting);
}

/// `docker` steps go through the one chain like every other kind: the
/// blast radius holds, a hostile label value is refused before rendering,
/// and the rendered step is what the Docker executor gets.
#[test]
fn docker_steps_pass_the_same_guards() {
    let text = "signals:
  - name: lat
    query: q
rules:
  - name: restart-container
    when: {signal: lat, direction: up, for: 0s}
    then:
      - action: docker
        op: restart
        target: container/{{instance}}
    verify: {wait: 10s}
guardrails:
  max_instances_per_service: 5
  max_percent_per_service: 50
";
    let set = RunbookSet::from_sources(&[("d.yaml".into(), text.to_owned())])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut engine = Engine::new(&set, LIVE);
    let web: Vec<_> = (0..6).map(|i| labels("web", &format!("web-{i}"))).collect();
    for l in &web {
        engine.observe(&obs(l, 0, None, false));
    }
    assert_eq!(
        storm(&mut engine, &web[..4], 1),
        ["allowed", "allowed", "allowed", "blast_radius"]
    );
    assert_eq!(
        storm(&mut engine, &[labels("api", "api-0;docker rm -f db")], 1),
        ["invalid_label_value"]
    );
    let inc = engine.finish(T0);
    assert_eq!(
        inc[0].actions[0].rendered,
        Some(crate::action::RenderedAction::Docker {
            op: crate::runbook::DockerOp::Restart,
            target: "container/web-0".into(),
            signal: None,
            replicas: None,
            image: None,
            rollout: None,
        })
    );
    assert_eq!(inc[0].actions[0].summary, "docker restart container/web-0");
}
