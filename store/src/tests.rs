//! Tests of the incident store against real databases: SQLite files in
//! temporary directories and PostgreSQL servers of their own (Debian's
//! `postgresql`, started by `lab::postgres`). What both backends must do
//! alike runs on both ([`on_both!`]); what only a file has (integrity
//! checks, WAL, `user_version`) runs on SQLite.

use std::collections::BTreeMap;
use std::time::Duration;

use detect::{Excursion, Scored};

use crate::*;
use remediate::action::{ActionResult, RenderedAction};
use remediate::engine::{
    Decision, EngineEvent, Incident, Outcome, PlannedAction, SuppressReason, Verification,
};
use remediate::runbook::{ActionKind, HttpMethod, ServerState, Severity};
use remediate::{Engine, EngineOptions, Observation, RunbookSet};

/// Where a test's store is: a new SQLite file, or a new PostgreSQL
/// server's database.
enum At {
    File(tempfile::TempDir),
    Postgres(lab::postgres::PgServer),
}

impl At {
    fn sqlite() -> At {
        At::File(tempfile::tempdir().unwrap())
    }

    fn postgres() -> At {
        At::Postgres(
            lab::postgres::PgServer::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}")),
        )
    }

    /// The `--db` of the store: a file path or a `postgres://` URL.
    fn db(&self) -> std::path::PathBuf {
        match self {
            At::File(dir) => dir.path().join("heal.db"),
            At::Postgres(server) => server.url().into(),
        }
    }
}

/// `on_both!(check, ...)`: a test `check::sqlite` and a test
/// `check::postgres` for each `fn check(at: &At)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::At::sqlite());
            }
            #[test]
            fn postgres() {
                super::$name(&super::At::postgres());
            }
        }
    )*};
}

on_both!(
    an_incident_read_back_is_the_incident_written,
    a_later_snapshot_replaces_the_earlier_one,
    incidents_the_engine_made_round_trip_and_numbering_goes_on,
    an_action_is_begun_once_and_finished_once,
    reopening_marks_what_was_begun_and_not_finished_interrupted,
    an_allowed_step_never_begun_is_marked_abandoned_once,
    list_is_newest_first_filtered_and_paginated,
    same_opening_time_pages_by_insertion_order,
    the_writer_keeps_order_and_commits_before_answering,
    sensitivity_marks_are_recorded_stepped_and_kept_across_opens,
    sensitivity_offset_stops_at_its_bound_and_says_so,
    the_writer_records_marks_in_order_and_answers_with_the_adjustment,
    incidents_left_open_are_closed_at_the_next_open_with_a_reason,
    a_begun_actions_process_is_recorded_and_an_interrupted_one_settled_once,
    a_write_that_fails_is_undone_alone,
);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The one integer `sql` selects, through the store's own connection.
fn count(store: &Store, sql: &str) -> i64 {
    store
        .db()
        .row("counting", sql, &[])
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

const MIN: i64 = 60_000;
/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn step(
    step: usize,
    kind: ActionKind,
    rendered: Option<RenderedAction>,
    decision: Decision,
    verification: Option<Verification>,
) -> PlannedAction {
    PlannedAction {
        step,
        kind,
        summary: rendered.as_ref().map_or_else(
            || format!("{} (not rendered)", kind.as_str()),
            |r| r.summary(),
        ),
        rendered,
        decision,
        planned_ms: T0 + step as i64 * MIN,
        verification,
        timeout: (step == 1).then(|| "1m30s".parse().unwrap()),
    }
}

/// An incident using every kind of rendered action, every kind of
/// decision, every outcome, and awkward text (newlines, quotes, unicode).
fn rich_incident(id: &str, service: &str, opened_ms: i64) -> Incident {
    let verified = |outcome, minute: i64| {
        Some(Verification {
            outcome,
            decided_ms: T0 + minute * MIN,
            detail: format!("value 1.5 \"not below\" 1 after the 5m wait ({minute})"),
        })
    };
    Incident {
        id: id.to_owned(),
        series: labels(&[
            ("__name__", "http_latency_p99_seconds"),
            ("service", service),
            ("instance", "10.0.0.1:8080"),
            ("zone", "zürich \"a\""),
        ]),
        service: service.to_owned(),
        signal: "http_latency_p99_seconds".to_owned(),
        rule: "latency-high".to_owned(),
        description: Some("Latency is high.\nRestart, then roll back.".to_owned()),
        severity: Severity::Critical,
        above: true,
        onset_ms: opened_ms - 2 * MIN,
        opened_ms,
        peak_score: 0.918_273_645_546_372_8,
        peer_z: None,
        chain_len: 7,
        actions: vec![
            step(
                1,
                ActionKind::Restart,
                Some(RenderedAction::Restart {
                    target: format!("deployment/{service}"),
                }),
                Decision::allowed("no guard held it back".into()),
                verified(Outcome::NotRecovered, 6),
            ),
            step(
                2,
                ActionKind::Scale,
                Some(RenderedAction::Scale {
                    target: format!("deployment/{service}"),
                    replicas: 4,
                }),
                Decision::suppressed(SuppressReason::DryRun, "dry-run (engine)".into()),
                verified(Outcome::Worse, 7),
            ),
            step(
                3,
                ActionKind::Rollback,
                Some(RenderedAction::Rollback {
                    target: format!("deployment/{service}"),
                    to: Some("v1.2.3".into()),
                }),
                Decision::suppressed(SuppressReason::Cooldown, "cooldown 10m".into()),
                None,
            ),
            step(
                4,
                ActionKind::Reroute,
                Some(RenderedAction::Reroute {
                    target: "web-1".into(),
                    backend: "web".into(),
                    state: ServerState::Drain,
                    api: "127.0.0.1:9999".parse().unwrap(),
                    weight: Some(50),
                }),
                Decision::suppressed(SuppressReason::TargetBusy, "inc-000001 step 1".into()),
                None,
            ),
            step(
                5,
                ActionKind::Exec,
                None,
                Decision::suppressed(
                    SuppressReason::InvalidLabelValue,
                    "label service value \"; rm -rf /\" is not safe".into(),
                ),
                None,
            ),
            step(
                6,
                ActionKind::Webhook,
                Some(RenderedAction::Webhook {
                    url: "http://127.0.0.1:9/hook".into(),
                    method: HttpMethod::Put,
                    headers: labels(&[("X-Team", "sre")]),
                    body: Some(serde_json::json!({"text": "latency", "n": [1, 2.5, null]})),
                }),
                Decision::suppressed(SuppressReason::MaxAttempts, "3 in 1h".into()),
                None,
            ),
            step(
                7,
                ActionKind::Exec,
                Some(RenderedAction::Exec {
                    argv: vec!["heal-lab".into(), "restart".into(), service.into()],
                }),
                Decision::allowed("ok".into()),
                verified(Outcome::Recovered, 20),
            ),
        ],
        resolved_ms: Some(opened_ms + 30 * MIN),
        unresolved_at_ms: None,
        diagnosis: None,
    }
}

fn open(at: &At) -> Store {
    open_db(at.db())
}

fn open_file(dir: &tempfile::TempDir) -> Store {
    open_db(dir.path().join("heal.db"))
}

fn open_db(db: std::path::PathBuf) -> Store {
    let opened = Store::open(db).unwrap();
    assert!(opened.interrupted.is_empty());
    opened.store
}

fn an_incident_read_back_is_the_incident_written(at: &At) {
    let mut store = open(at);
    let written = rich_incident("inc-000007", "checkout", T0);
    store.record_incident(&written).unwrap();
    let mut open_one = rich_incident("inc-000008", "cart", T0 + MIN);
    open_one.resolved_ms = None;
    open_one.unresolved_at_ms = Some(T0 + 99 * MIN);
    open_one.description = None;
    // Fired by its peers: the robust z that says so is kept too.
    open_one.peer_z = Some(8.125);
    open_one.actions.truncate(1);
    open_one.actions[0].verification = None;
    store.record_incident(&open_one).unwrap();
    drop(store);

    // Read back through a fresh read-only connection: what is on disk.
    let store = Store::open_read_only(at.db()).unwrap();
    let record = store.incident("inc-000007").unwrap().unwrap();
    assert_eq!(record.incident, written);
    assert_eq!(record.status, IncidentStatus::Resolved);
    assert_eq!(record.outcome, IncidentOutcome::Recovered);
    assert_eq!(record.anomalies.len(), 1);
    let anomaly = &record.anomalies[0];
    assert_eq!(anomaly.score, written.peak_score);
    assert_eq!(anomaly.onset_ms, written.onset_ms);
    assert_eq!(anomaly.labels, written.series);
    assert_eq!(anomaly.evidence["rule"], "latency-high");
    assert_eq!(anomaly.evidence["detected_after_ms"], 2 * MIN);

    let record = store.incident("inc-000008").unwrap().unwrap();
    assert_eq!(record.incident, open_one);
    assert_eq!(record.status, IncidentStatus::Open);
    assert_eq!(record.outcome, IncidentOutcome::None);
    assert!(store.incident("inc-000009").unwrap().is_none());
}

fn a_later_snapshot_replaces_the_earlier_one(at: &At) {
    let mut store = open(at);
    let full = rich_incident("inc-000001", "checkout", T0);
    let mut early = full.clone();
    early.actions.truncate(2);
    early.actions[1].verification = None;
    early.resolved_ms = None;
    store.record_incident(&early).unwrap();
    store.record_incident(&full).unwrap();
    assert_eq!(
        store.incident("inc-000001").unwrap().unwrap().incident,
        full
    );
    // And back: a snapshot with fewer steps leaves no stale step behind.
    store.record_incident(&early).unwrap();
    assert_eq!(
        store.incident("inc-000001").unwrap().unwrap().incident,
        early
    );
}

fn incidents_the_engine_made_round_trip_and_numbering_goes_on(at: &At) {
    let set = RunbookSet::from_sources(&[(
        "r.yaml".into(),
        "signals:
  - name: up
    query: up
rules:
  - name: down
    when: { signal: up, direction: down, for: 0s }
    then:
      - action: restart
        target: 'svc/{{service}}'
      - action: exec
        argv: ['heal-lab', 'restart', '{{service}}']
    verify: { wait: 1m }
"
        .into(),
    )])
    .unwrap();
    let series = labels(&[("__name__", "up"), ("service", "web"), ("instance", "a")]);
    let mut store = open(at);
    assert_eq!(store.next_incident_seq().unwrap(), 1);

    // Two runs of heal: the second numbers on from the store.
    let mut all = Vec::new();
    for run in 0..2 {
        let mut engine = Engine::new(
            &set,
            EngineOptions {
                dry_run: true,
                await_actions: false,
            },
        );
        engine.continue_numbering_from(store.next_incident_seq().unwrap());
        let base = T0 + run * 100 * MIN;
        for m in 0..6 {
            let excursion = (m < 4).then_some(Excursion {
                onset_ms: base,
                above: false,
                peak_score: 0.9,
                peer_z: None,
                first: m == 0,
                in_band: false,
                band: (f64::NEG_INFINITY, f64::INFINITY),
            });
            let obs = Observation {
                signal: "up",
                labels: &series,
                ts_ms: base + m * MIN,
                value: if m < 4 { 0.0 } else { 1.0 },
                scored: Scored {
                    score: 0.9,
                    excursion,
                },
            };
            for event in engine.observe(&obs) {
                store.record_event(&event).unwrap();
            }
        }
        // The engine finds its own incidents by id, not the earlier run's.
        let own = format!("inc-{:06}", run + 1);
        assert_eq!(
            engine.incident(&own).map(|i| i.id.as_str()),
            Some(own.as_str())
        );
        assert_eq!(engine.incident(&format!("inc-{:06}", run + 2)), None);
        if run == 1 {
            assert_eq!(engine.incident("inc-000001"), None);
        }
        assert_eq!(engine.incident("incident-1"), None);
        for incident in engine.finish(base + 6 * MIN) {
            store.record_incident(&incident).unwrap();
            all.push(incident);
        }
    }
    let ids: Vec<&str> = all.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["inc-000001", "inc-000002"]);
    assert_eq!(store.next_incident_seq().unwrap(), 3);
    for incident in &all {
        assert_eq!(incident.actions.len(), 2, "{incident:?}");
        let back = store.incident(&incident.id).unwrap().unwrap();
        assert_eq!(&back.incident, incident);
    }
    // Every event went to the log, in order.
    let kinds: Vec<String> = store
        .db()
        .rows(
            "reading events",
            "SELECT kind FROM events WHERE incident_id = 'inc-000002' ORDER BY pk",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "planned", "verified", "planned", "verified", "resolved"]
    );
}

fn result(ok: bool) -> ActionResult {
    ActionResult {
        ok,
        retryable: !ok,
        summary: if ok { "exit status 0" } else { "exit status 3" }.into(),
        output: "restarted web\n".into(),
        duration: Duration::from_micros(1_234_567),
    }
}

fn an_action_is_begun_once_and_finished_once(at: &At) {
    let mut store = open(at);
    let key = ActionKey::new("inc-000001", 1, 1);
    store
        .begin_action(&key, "exec heal-lab restart web", T0)
        .unwrap();
    match store.begin_action(&key, "exec heal-lab restart web", T0 + 1) {
        Err(StoreError::DuplicateAction { key: k, state }) => {
            assert_eq!(k, key);
            assert_eq!(state, "started");
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    store.finish_action(&key, &result(true), T0 + 1500).unwrap();
    let e = store
        .finish_action(&key, &result(true), T0 + 1600)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "action inc-000001/step-1/attempt-1: cannot finish: it is already finished"
    );
    let e = store
        .begin_action(&key, "exec heal-lab restart web", T0)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "action inc-000001/step-1/attempt-1: already recorded (finished); not running it again"
    );
    let never = ActionKey::new("inc-000001", 2, 1);
    assert_eq!(
        store
            .finish_action(&never, &result(false), T0)
            .unwrap_err()
            .to_string(),
        "action inc-000001/step-2/attempt-1: cannot finish: it was never begun"
    );
    // A retry is another attempt: another key.
    store
        .begin_action(&ActionKey::new("inc-000001", 1, 2), "exec again", T0 + 2000)
        .unwrap();

    store
        .record_incident(&rich_incident("inc-000001", "web", T0))
        .unwrap();
    let record = store.incident("inc-000001").unwrap().unwrap();
    assert_eq!(
        record.executions,
        vec![
            ActionRecord {
                key: key.clone(),
                summary: "exec heal-lab restart web".into(),
                state: ExecutionState::Finished,
                started_ms: T0,
                finished_ms: Some(T0 + 1500),
                result: Some(result(true)),
                process: None,
                settled: None,
            },
            ActionRecord {
                key: ActionKey::new("inc-000001", 1, 2),
                summary: "exec again".into(),
                state: ExecutionState::Started,
                started_ms: T0 + 2000,
                finished_ms: None,
                result: None,
                process: None,
                settled: None,
            },
        ]
    );
}

fn reopening_marks_what_was_begun_and_not_finished_interrupted(at: &At) {
    let path = at.db();
    let mut store = open(at);
    let done = ActionKey::new("inc-000001", 1, 1);
    let cut = ActionKey::new("inc-000002", 1, 1);
    store.begin_action(&done, "restart a", T0).unwrap();
    store.finish_action(&done, &result(true), T0 + 1).unwrap();
    store.begin_action(&cut, "restart b", T0 + 2).unwrap();
    // The process "dies" here: no finish for `cut`.
    drop(store);

    let Opened {
        mut store,
        interrupted,
        ..
    } = Store::open(&path).unwrap();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].key, cut);
    assert_eq!(interrupted[0].state, ExecutionState::Interrupted);
    assert_eq!(interrupted[0].summary, "restart b");
    // Neither re-run nor finished late.
    assert!(matches!(
        store.begin_action(&cut, "restart b", T0 + 3),
        Err(StoreError::DuplicateAction { .. })
    ));
    assert_eq!(
        store
            .finish_action(&cut, &result(true), T0 + 4)
            .unwrap_err()
            .to_string(),
        "action inc-000002/step-1/attempt-1: cannot finish: it was marked interrupted when the store was reopened"
    );
    drop(store);
    // Reported once: the next open has nothing new.
    assert!(Store::open(&path).unwrap().interrupted.is_empty());
}

fn an_allowed_step_never_begun_is_marked_abandoned_once(at: &At) {
    let path = at.db();
    let mut store = open(at);
    // Steps 1 and 7 are allowed; the others suppressed or dry-run.
    let incident = rich_incident("inc-000001", "web", T0);
    store.record_incident(&incident).unwrap();
    let first = ActionKey::new("inc-000001", 1, 1);
    store.begin_action(&first, "restart", T0).unwrap();
    store.finish_action(&first, &result(true), T0 + 1).unwrap();
    // Killed here: step 7 was decided, allowed, and never begun.
    drop(store);

    let Opened {
        mut store,
        interrupted,
        ..
    } = Store::open(&path).unwrap();
    let step7 = ActionKey::new("inc-000001", 7, 1);
    assert_eq!(
        interrupted,
        vec![ActionRecord {
            key: step7.clone(),
            summary: incident.actions[6].summary.clone(),
            state: ExecutionState::Abandoned,
            started_ms: incident.actions[6].planned_ms,
            finished_ms: None,
            result: None,
            process: None,
            settled: None,
        }]
    );
    assert_eq!(
        store
            .begin_action(&step7, "exec", T0 + 2)
            .unwrap_err()
            .to_string(),
        "action inc-000001/step-7/attempt-1: already recorded (abandoned); not running it again"
    );
    drop(store);
    assert!(Store::open(&path).unwrap().interrupted.is_empty());
}

#[test]
fn schema_is_versioned_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal.db");
    let store = open_file(&dir);
    assert_eq!(
        store.version().unwrap(),
        crate::sqlite::schema::current_version()
    );
    let mode: String = conn(&store)
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn(&store)
        .pragma_update(
            None,
            "user_version",
            crate::sqlite::schema::current_version() + 1,
        )
        .unwrap();
    drop(store);
    let expected = format!(
        "incident store {}: schema version {} is newer than this heal supports ({}); upgrade heal or use another --db",
        path.display(),
        crate::sqlite::schema::current_version() + 1,
        crate::sqlite::schema::current_version()
    );
    assert_eq!(Store::open(&path).unwrap_err().to_string(), expected);
    assert_eq!(
        Store::open_read_only(&path).unwrap_err().to_string(),
        expected
    );
}

#[test]
fn migrations_apply_to_an_old_file_and_readers_do_not_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal.db");
    // A file at version 0: what an empty database (or a pre-store heal's
    // leftover) looks like.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (x INTEGER);")
        .unwrap();
    assert_eq!(
        Store::open_read_only(&path).unwrap_err().to_string(),
        format!(
            "incident store {}: schema version 0 is older than this heal's ({}); open it once with `heal watch --db` or `heal replay --db` to migrate it",
            path.display(),
            crate::sqlite::schema::current_version()
        )
    );
    let store = Store::open(&path).unwrap().store;
    assert_eq!(
        store.version().unwrap(),
        crate::sqlite::schema::current_version()
    );
    drop(store);
    Store::open_read_only(&path).unwrap();
    assert_eq!(
        Store::open_read_only(dir.path().join("nope.db"))
            .unwrap_err()
            .to_string(),
        format!(
            "incident store {}: no such file",
            dir.path().join("nope.db").display()
        )
    );
}

#[test]
fn a_row_that_does_not_decode_is_reported_with_table_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_file(&dir);
    store
        .record_incident(&rich_incident("inc-000001", "web", T0))
        .unwrap();
    conn(&store)
        .execute(
            "UPDATE actions SET reason = 'moon_phase' WHERE step = 3",
            [],
        )
        .unwrap();
    let e = store.incident("inc-000001").unwrap_err().to_string();
    assert!(
        e.contains("actions row inc-000001 step 3: reason: unknown variant `moon_phase`, expected one of `cooldown`, "),
        "{e}"
    );
}

/// Ten incidents over three services, one a minute apart.
fn fill(store: &mut Store) -> Vec<Incident> {
    let services = ["web", "api", "db"];
    let incidents: Vec<Incident> = (0..10)
        .map(|i| {
            let mut inc = rich_incident(
                &format!("inc-{:06}", i + 1),
                services[i % 3],
                T0 + i as i64 * MIN,
            );
            if i % 4 == 0 {
                inc.resolved_ms = None;
                inc.actions.truncate(1);
            }
            inc
        })
        .collect();
    for inc in &incidents {
        store.record_incident(inc).unwrap();
    }
    incidents
}

fn ids(page: &IncidentPage) -> Vec<&str> {
    page.incidents.iter().map(|s| s.id.as_str()).collect()
}

fn list_is_newest_first_filtered_and_paginated(at: &At) {
    let mut store = open(at);
    fill(&mut store);

    let all = store.list(&IncidentFilter::default()).unwrap();
    assert_eq!(all.incidents.len(), 10);
    assert_eq!(all.incidents[0].id, "inc-000010");
    assert_eq!(all.next_cursor, None);
    let first = &all.incidents[9];
    assert_eq!(
        (first.steps, first.performed, first.chain_len),
        (1, 1, 7),
        "{first:?}"
    );
    assert_eq!(all.incidents[8].steps, 7);
    assert_eq!(all.incidents[8].performed, 2);

    let web = |f: IncidentFilter| {
        store
            .list(&IncidentFilter {
                service: Some("web".into()),
                ..f
            })
            .unwrap()
    };
    assert_eq!(
        ids(&web(IncidentFilter::default())),
        ["inc-000010", "inc-000007", "inc-000004", "inc-000001"]
    );
    assert_eq!(
        ids(&web(IncidentFilter {
            since_ms: Some(T0 + 3 * MIN),
            until_ms: Some(T0 + 9 * MIN),
            ..IncidentFilter::default()
        })),
        ["inc-000007", "inc-000004"]
    );
    assert_eq!(
        ids(&store
            .list(&IncidentFilter {
                status: Some(IncidentStatus::Open),
                ..IncidentFilter::default()
            })
            .unwrap()),
        ["inc-000009", "inc-000005", "inc-000001"]
    );
    assert_eq!(
        ids(&store
            .list(&IncidentFilter {
                outcome: Some(IncidentOutcome::NotRecovered),
                ..IncidentFilter::default()
            })
            .unwrap()),
        ["inc-000009", "inc-000005", "inc-000001"]
    );

    // Signal and rule narrow by exact name; the facets name each once.
    let by = |signal: Option<&str>, rule: Option<&str>| {
        store
            .list(&IncidentFilter {
                signal: signal.map(str::to_owned),
                rule: rule.map(str::to_owned),
                ..IncidentFilter::default()
            })
            .unwrap()
            .incidents
            .len()
    };
    assert_eq!(by(Some("http_latency_p99_seconds"), None), 10);
    assert_eq!(
        by(Some("http_latency_p99_seconds"), Some("latency-high")),
        10
    );
    assert_eq!(by(None, Some("latency")), 0);
    assert_eq!(by(Some("http_latency"), None), 0);
    assert_eq!(
        store.facets().unwrap(),
        crate::Facets {
            services: vec!["api".into(), "db".into(), "web".into()],
            signals: vec!["http_latency_p99_seconds".into()],
            rules: vec!["latency-high".into()],
        }
    );

    // Pages of 3 walk the whole list once, in order, with no repeat.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&IncidentFilter {
                limit: 3,
                cursor: cursor.clone(),
                ..IncidentFilter::default()
            })
            .unwrap();
        assert!(page.incidents.len() <= 3);
        seen.extend(page.incidents.iter().map(|s| s.id.clone()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (1..=10).rev().map(|i| format!("inc-{i:06}")).collect();
    assert_eq!(seen, expected);

    assert_eq!(
        store
            .list(&IncidentFilter {
                cursor: Some("yesterday".into()),
                ..IncidentFilter::default()
            })
            .unwrap_err()
            .to_string(),
        "bad cursor \"yesterday\": expected the next_cursor of a previous page"
    );
}

fn same_opening_time_pages_by_insertion_order(at: &At) {
    let mut store = open(at);
    for i in 1..=5 {
        store
            .record_incident(&rich_incident(&format!("inc-{i:06}"), "web", T0))
            .unwrap();
    }
    let page = store
        .list(&IncidentFilter {
            limit: 2,
            ..IncidentFilter::default()
        })
        .unwrap();
    assert_eq!(ids(&page), ["inc-000005", "inc-000004"]);
    let page = store
        .list(&IncidentFilter {
            limit: 2,
            cursor: page.next_cursor,
            ..IncidentFilter::default()
        })
        .unwrap();
    assert_eq!(ids(&page), ["inc-000003", "inc-000002"]);
}

fn the_writer_keeps_order_and_commits_before_answering(at: &At) {
    let store = open(at);
    // Another connection, to see what is committed. (PostgreSQL's client
    // blocks: it is used off the async threads, as heal does.)
    let reader = Store::open_read_only(at.db()).unwrap();
    let (writer, thread) = StoreWriter::spawn(store, 8).unwrap();
    let incidents: Vec<Incident> = (1..=50)
        .map(|i| rich_incident(&format!("inc-{i:06}"), "web", T0 + i * MIN))
        .collect();
    let key = ActionKey::new("inc-000050", 7, 1);
    runtime().block_on(async {
        for inc in &incidents {
            writer.incident(inc.clone()).await.unwrap();
            writer
                .event(EngineEvent::Resolved {
                    incident: inc.id.clone(),
                    ts_ms: inc.resolved_ms.unwrap(),
                })
                .await
                .unwrap();
        }
        writer
            .begin_action(key.clone(), "exec heal-lab restart web".into(), T0)
            .await
            .unwrap();
        // Committed: the other connection sees the incident sent before,
        // and the begin itself.
        let record =
            tokio::task::block_in_place(|| reader.incident("inc-000050").unwrap().unwrap());
        assert_eq!(record.incident, incidents[49]);
        assert_eq!(record.executions[0].state, ExecutionState::Started);
        // A duplicate is refused through the writer too, and the writer goes on.
        assert!(matches!(
            writer
                .begin_action(key.clone(), "again".into(), T0 + 1)
                .await,
            Err(StoreError::DuplicateAction { .. })
        ));
        writer
            .finish_action(key.clone(), result(false), T0 + 2)
            .await
            .unwrap();
        writer.flush().await.unwrap();
        let record =
            tokio::task::block_in_place(|| reader.incident("inc-000050").unwrap().unwrap());
        assert_eq!(record.executions[0].result, Some(result(false)));
        drop(writer);
    });
    let store = thread.join();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM events"), 50);
    assert_eq!(store.next_incident_seq().unwrap(), 51);
}

fn mark(signal: &str, reason: SensitivityReason, incident: Option<&str>, at_ms: i64) -> Mark {
    Mark {
        signal: signal.to_owned(),
        reason,
        incident: incident.map(str::to_owned),
        missed_at_ms: (reason == SensitivityReason::Missed).then_some(at_ms - MIN),
        note: Some(format!("note {at_ms}")),
        at_ms,
    }
}

fn sensitivity_marks_are_recorded_stepped_and_kept_across_opens(at: &At) {
    let path = at.db();
    let mut store = open(at);
    assert!(store.sensitivity_offsets().unwrap().is_empty());
    let first = store
        .mark_sensitivity(&mark(
            "latency",
            SensitivityReason::FalseAlarm,
            Some("inc-000001"),
            T0,
        ))
        .unwrap();
    let Marked::Adjusted(a) = first else {
        panic!("expected an adjustment, got {first:?}")
    };
    assert_eq!((a.old, a.new, a.seq), (0.0, 0.02, 1));
    // The same incident marked again for the same reason: nothing moves.
    let again = store
        .mark_sensitivity(&mark(
            "latency",
            SensitivityReason::FalseAlarm,
            Some("inc-000001"),
            T0 + 1,
        ))
        .unwrap();
    assert!(
        matches!(again, Marked::AlreadyMarked(ref e) if e.seq == 1),
        "{again:?}"
    );
    store
        .mark_sensitivity(&mark(
            "latency",
            SensitivityReason::NotHelped,
            Some("inc-000001"),
            T0 + 2,
        ))
        .unwrap();
    store
        .mark_sensitivity(&mark("errors", SensitivityReason::Missed, None, T0 + 3))
        .unwrap();
    drop(store);
    // A second connection while nothing else runs; then the writer's open.
    let store = Store::open_for_marks(&path).unwrap();
    assert_eq!(
        store.sensitivity_offsets().unwrap(),
        BTreeMap::from([("errors".to_owned(), -0.02), ("latency".to_owned(), 0.03)])
    );
    drop(store);
    let store = Store::open(&path).unwrap().store;
    let history = store.sensitivity_history().unwrap();
    type Row<'a> = (
        &'a str,
        f64,
        f64,
        SensitivityReason,
        Option<&'a str>,
        Option<i64>,
    );
    let summary: Vec<Row<'_>> = history
        .iter()
        .map(|a| {
            (
                a.signal.as_str(),
                a.old,
                a.new,
                a.reason,
                a.incident.as_deref(),
                a.missed_at_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "latency",
                0.0,
                0.02,
                SensitivityReason::FalseAlarm,
                Some("inc-000001"),
                None
            ),
            (
                "latency",
                0.02,
                0.03,
                SensitivityReason::NotHelped,
                Some("inc-000001"),
                None
            ),
            (
                "errors",
                0.0,
                -0.02,
                SensitivityReason::Missed,
                None,
                Some(T0 + 3 - MIN)
            ),
        ]
    );
    assert_eq!(
        history[2].note.as_deref(),
        Some(&*format!("note {}", T0 + 3))
    );
    assert_eq!(history[2].at_ms, T0 + 3);
}

fn sensitivity_offset_stops_at_its_bound_and_says_so(at: &At) {
    let mut store = open(at);
    let mut last = None;
    for i in 0..12 {
        let m = mark(
            "latency",
            SensitivityReason::FalseAlarm,
            Some(&format!("inc-{i:06}")),
            T0 + i,
        );
        last = Some(store.mark_sensitivity(&m).unwrap());
    }
    let Some(Marked::Adjusted(a)) = last else {
        panic!("expected an adjustment, got {last:?}")
    };
    assert_eq!((a.old, a.new), (OFFSET_MAX, OFFSET_MAX));
    assert_eq!(store.sensitivity_history().unwrap().len(), 12);
    assert_eq!(store.sensitivity_offsets().unwrap()["latency"], OFFSET_MAX);
}

#[test]
fn open_for_marks_needs_an_existing_file_and_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal.db");
    assert_eq!(
        Store::open_for_marks(&path).unwrap_err().to_string(),
        format!("incident store {}: no such file", path.display())
    );
    let mut store = open_file(&dir);
    let key = ActionKey::new("inc-000001", 1, 1);
    store.begin_action(&key, "restart a", T0).unwrap();
    // A mark while the action runs must not take it for interrupted.
    let mut marks = Store::open_for_marks(&path).unwrap();
    marks
        .mark_sensitivity(&mark(
            "m",
            SensitivityReason::FalseAlarm,
            Some("inc-000001"),
            T0,
        ))
        .unwrap();
    drop(marks);
    let result = ActionResult {
        ok: true,
        retryable: false,
        summary: "ok".into(),
        output: String::new(),
        duration: Duration::from_millis(1),
    };
    store.finish_action(&key, &result, T0 + 1).unwrap();
}

fn the_writer_records_marks_in_order_and_answers_with_the_adjustment(at: &At) {
    let store = open(at);
    let (writer, thread) = StoreWriter::spawn(store, 8).unwrap();
    runtime().block_on(async {
        let first = writer
            .mark(mark(
                "latency",
                SensitivityReason::FalseAlarm,
                Some("inc-000001"),
                T0,
            ))
            .await
            .unwrap();
        assert!(
            matches!(first, Marked::Adjusted(ref a) if a.new == 0.02),
            "{first:?}"
        );
        let second = writer
            .mark(mark("latency", SensitivityReason::Missed, None, T0 + 1))
            .await
            .unwrap();
        assert!(
            matches!(second, Marked::Adjusted(ref a) if a.old == 0.02 && a.new == 0.0),
            "{second:?}"
        );
        drop(writer);
    });
    let store = thread.join();
    assert_eq!(store.sensitivity_history().unwrap().len(), 2);
    assert_eq!(store.sensitivity_offsets().unwrap()["latency"], 0.0);
}

fn incidents_left_open_are_closed_at_the_next_open_with_a_reason(at: &At) {
    let path = at.db();
    let mut store = open(at);
    let incidents = fill(&mut store);
    let left_open: Vec<&str> = incidents
        .iter()
        .filter(|i| i.resolved_ms.is_none())
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(left_open, ["inc-000001", "inc-000005", "inc-000009"]);
    drop(store);

    let opened = Store::open(&path).unwrap();
    let closed: Vec<&str> = opened.closed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(closed, left_open);
    assert_eq!(opened.closed[0].rule, "latency-high");
    let store = opened.store;
    let open_filter = IncidentFilter {
        status: Some(IncidentStatus::Open),
        ..IncidentFilter::default()
    };
    assert!(store.list(&open_filter).unwrap().incidents.is_empty());
    let record = store.incident("inc-000005").unwrap().unwrap();
    assert_eq!(record.status, IncidentStatus::Closed);
    assert_eq!(record.closed_reason.as_deref(), Some(CLOSED_AT_RESTART));
    // What the engine recorded is kept as it was.
    assert_eq!(record.incident, incidents[4]);
    let resolved = store.incident("inc-000002").unwrap().unwrap();
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    assert_eq!(resolved.closed_reason, None);
    let closed_filter = IncidentFilter {
        status: Some(IncidentStatus::Closed),
        ..IncidentFilter::default()
    };
    assert_eq!(store.list(&closed_filter).unwrap().incidents.len(), 3);
    drop(store);
    // Once: the next open finds nothing left open.
    assert!(Store::open(&path).unwrap().closed.is_empty());
}

fn a_begun_actions_process_is_recorded_and_an_interrupted_one_settled_once(at: &At) {
    let path = at.db();
    let mut store = open(at);
    let key = ActionKey::new("inc-000001", 1, 1);
    let process = ChildProcess {
        pid: 4242,
        start_ticks: Some(987_654),
    };
    assert!(matches!(
        store.record_process(&key, process),
        Err(StoreError::NotInFlight { .. })
    ));
    store.begin_action(&key, "exec sleep 20", T0).unwrap();
    store.record_process(&key, process).unwrap();
    drop(store);
    let Opened {
        mut store,
        interrupted,
        ..
    } = Store::open(&path).unwrap();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].process, Some(process));
    assert_eq!(interrupted[0].settled, None);
    assert!(store
        .settle_interrupted(&key, "process group 4242 killed")
        .unwrap());
    assert!(!store.settle_interrupted(&key, "again").unwrap(), "once");
    let record =
        crate::read::executions_where(store.db(), "key = ?1", crate::db::vals![key.to_string()])
            .unwrap()
            .remove(0);
    assert_eq!(record.settled.as_deref(), Some("process group 4242 killed"));
}

/// A small seeded generator (SplitMix64) for the byte flips.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What SQLite's full integrity check says of `path`, read without any
/// chance of writing (`immutable=1`): `None` when it is sound.
fn integrity_problem(path: &std::path::Path) -> Option<String> {
    let uri = format!("file:{}?immutable=1", path.display());
    let conn = match rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    ) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    let rows: Result<Vec<String>, _> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect());
    match rows {
        Ok(rows) if rows == ["ok"] => None,
        Ok(rows) => Some(rows.join("; ")),
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn a_damaged_store_is_refused_naming_the_file_and_never_written_into() {
    // A store of some size: 120 incidents, a few dozen pages.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    {
        let mut store = Store::open(&good).unwrap().store;
        for round in 0..12 {
            for mut inc in fill(&mut store) {
                inc.id = format!("inc-{:06}", round * 100 + incident_seq_of(&inc.id));
                store.record_incident(&inc).unwrap();
            }
        }
        store.checkpoint().unwrap();
    }
    let _ = std::fs::remove_file(dir.path().join("good.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("good.db-shm"));
    assert_eq!(integrity_problem(&good), None);
    let t = std::time::Instant::now();
    drop(Store::open(&good).unwrap());
    println!(
        "opening a sound {} KB store: {:?}",
        std::fs::metadata(&good).unwrap().len() / 1024,
        t.elapsed()
    );
    let _ = std::fs::remove_file(dir.path().join("good.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("good.db-shm"));
    let bytes = std::fs::read(&good).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages >= 20, "{pages} pages");

    // Byte flips in pages (seeded); keep the copies SQLite's integrity
    // check fails, as an operator's damaged disk would leave them.
    let mut seed = 0x5EED_0006_u64;
    let mut damaged = 0;
    let mut tried = 0;
    while damaged < 12 && tried < 400 {
        tried += 1;
        let mut copy = bytes.clone();
        // One to four pages, a burst of 1-16 bytes in each.
        for _ in 0..1 + splitmix(&mut seed) % 4 {
            let p = (splitmix(&mut seed) as usize) % pages;
            let at = p * page + (splitmix(&mut seed) as usize) % page;
            for k in 0..1 + (splitmix(&mut seed) as usize) % 16 {
                if let Some(b) = copy.get_mut(at + k) {
                    *b ^= 1 << (splitmix(&mut seed) % 8);
                }
            }
        }
        let case = dir.path().join(format!("damaged-{tried}.db"));
        std::fs::write(&case, &copy).unwrap();
        if integrity_problem(&case).is_none() {
            continue;
        }
        damaged += 1;
        let err = match Store::open(&case) {
            Ok(_) => panic!("case {tried}: a damaged store was opened"),
            Err(e) => e,
        };
        let message = err.to_string();
        assert!(
            matches!(err, StoreError::Damaged { .. }),
            "case {tried}: {message}"
        );
        assert!(
            message.starts_with(&format!(
                "incident store {}: damaged, refusing to open it (SQLite integrity_check: ",
                case.display()
            )),
            "{message}"
        );
        assert!(
            std::fs::read(&case).unwrap() == copy,
            "case {tried}: the damaged file was written into"
        );
        // The marks path refuses it the same way.
        assert!(matches!(
            Store::open_for_marks(&case),
            Err(StoreError::Damaged { .. })
        ));
        assert!(std::fs::read(&case).unwrap() == copy);
    }
    assert_eq!(damaged, 12, "12 damaged copies in {tried} tries");

    // Not a database at all.
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "these are my notes, not a database\n".repeat(200)).unwrap();
    let message = Store::open(&text).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "incident store {}: damaged, refusing to open it (SQLite integrity_check: file is not a database); nothing was written to it: move it aside or restore a copy, and start with a new --db",
            text.display()
        )
    );
}

fn incident_seq_of(id: &str) -> usize {
    id.trim_start_matches("inc-").parse().unwrap()
}

/// The SQLite connection under a store opened on a file.
fn conn(store: &Store) -> &rusqlite::Connection {
    match &store.backend {
        crate::backend::Backend::Sqlite(s) => s.conn(),
        crate::backend::Backend::Postgres(_) => unreachable!("these tests open files"),
    }
}

/// A PostgreSQL database shared by several writers (a `heal watch` per
/// team, remediate members' journal): a writer that opens it settles
/// only what it began itself.
#[test]
fn on_a_shared_database_each_writer_settles_only_its_own() {
    let at = At::postgres();
    let db = at.db();
    let mut a = Store::open_as(&db, "watch-a").unwrap().store;
    let mut left_open = rich_incident("inc-000001", "web", T0);
    left_open.resolved_ms = None;
    a.record_incident(&left_open).unwrap();
    let running = ActionKey::new("inc-000001", 1, 1);
    a.begin_action(&running, "restart web", T0).unwrap();
    // A remediate member's begin in the same journal.
    let mut member = PgStore::open_as(&db.to_string_lossy(), "remediate-1").unwrap();
    let theirs = ActionKey::new("latency-high/x/1", 1, 1);
    member
        .begin_action(&theirs, "exec heal-lab restart api", T0, None)
        .unwrap();

    // Another writer opens the database: nothing there is its to settle.
    let b = Store::open_as(&db, "watch-b").unwrap();
    assert!(b.interrupted.is_empty(), "{:?}", b.interrupted);
    assert!(b.closed.is_empty(), "{:?}", b.closed);
    let record = b.store.incident("inc-000001").unwrap().unwrap();
    assert_eq!(record.status, IncidentStatus::Open);
    assert_eq!(record.executions[0].state, ExecutionState::Started);
    // Writer b numbers its incidents from the same highest id: its
    // incident of a taken id is refused, a's kept as it was.
    let mut b = b.store;
    let mut clash = rich_incident("inc-000001", "db", T0 + MIN);
    clash.rule = "other-rule".into();
    assert!(matches!(
        b.record_incident(&clash),
        Err(StoreError::IncidentOfAnotherWriter { ref id, .. }) if id == "inc-000001"
    ));
    let kept = b.incident("inc-000001").unwrap().unwrap();
    assert_eq!(kept.incident, left_open);
    // Writer a is still running: it finishes its own action.
    a.finish_action(&running, &result(true), T0 + 1).unwrap();
    let cut = ActionKey::new("inc-000001", 1, 2);
    a.begin_action(&cut, "restart web again", T0 + 2).unwrap();
    drop(a);

    // Writer a restarts: its unfinished attempt is interrupted, its
    // allowed step 7 (never begun) abandoned, its incident closed; the
    // member's action is left running, and the member finishes it.
    let again = Store::open_as(&db, "watch-a").unwrap();
    let settled: Vec<(String, ExecutionState)> = again
        .interrupted
        .iter()
        .map(|r| (r.key.to_string(), r.state))
        .collect();
    assert_eq!(
        settled,
        [
            (cut.to_string(), ExecutionState::Interrupted),
            (
                "inc-000001/step-7/attempt-1".to_owned(),
                ExecutionState::Abandoned
            ),
        ]
    );
    let closed: Vec<&str> = again.closed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(closed, ["inc-000001"]);
    member
        .finish_action(&theirs, &result(true), T0 + 3)
        .unwrap();
    assert_eq!(
        member.action(&theirs).unwrap().unwrap().state,
        ExecutionState::Finished
    );
}

/// The writer on PostgreSQL rides through a server restart: what was
/// sent while the server was down is written once it is back, in order,
/// nothing lost, and a begin sent meanwhile is answered only once it is
/// committed.
#[test]
fn the_writer_waits_out_a_server_restart_and_loses_nothing() {
    let at = At::postgres();
    let db = at.db();
    let At::Postgres(mut server) = at else {
        unreachable!()
    };
    let store = open_db(db.clone());
    let (writer, thread) = StoreWriter::spawn(store, 16).unwrap();
    let key = ActionKey::new("inc-000040", 1, 1);
    let restarter = runtime().block_on(async {
        for i in 1..=20 {
            writer
                .incident(rich_incident(&format!("inc-{i:06}"), "web", T0 + i * MIN))
                .await
                .unwrap();
        }
        writer.flush().await.unwrap();
        tokio::task::block_in_place(|| server.kill());
        let restarter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            server.restart().unwrap_or_else(|e| panic!("{e}"));
            server
        });
        for i in 21..=40 {
            writer
                .incident(rich_incident(&format!("inc-{i:06}"), "web", T0 + i * MIN))
                .await
                .unwrap();
        }
        writer
            .begin_action(key.clone(), "exec heal-lab restart web".into(), T0)
            .await
            .unwrap();
        writer.flush().await.unwrap();
        drop(writer);
        restarter
    });
    let _server = restarter.join().unwrap();
    let store = thread.join();
    assert!(
        store.reconnects() >= 1,
        "the server was not restarted under the writer"
    );
    let page = store
        .list(&IncidentFilter {
            limit: 100,
            ..IncidentFilter::default()
        })
        .unwrap();
    assert_eq!(page.incidents.len(), 40);
    let record = store.incident("inc-000040").unwrap().unwrap();
    assert_eq!(record.executions.len(), 1);
    assert_eq!(record.executions[0].state, ExecutionState::Started);
}

/// Runs `call` while another session holds `table` locked, and ends the
/// session that waits for the lock as a server going down ends it (an
/// operator's `pg_terminate_backend`, a backend whose postmaster died):
/// the backend answers the statement in flight with FATAL 57P01 and only
/// then closes its socket, so the client returns a server's error, not a
/// closed connection. Lets the lock go and returns what `call` returned.
fn end_the_session_waiting_for<T: Send>(
    url: &str,
    table: &str,
    call: impl FnOnce() -> T + Send,
) -> T {
    let connect = || ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let (mut holder, mut admin) = (connect(), connect());
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(call);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ended: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'",
                    &[],
                )
                .unwrap()
                .get(0);
            if ended > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no session waited for {table}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lock.rollback().unwrap();
        waiting.join().unwrap()
    })
}

/// The writer takes a session the server ended under a statement for the
/// lost connection it is: it connects again and writes the batch (its
/// begin included) rather than failing it as if the statement had been
/// refused.
#[test]
fn the_writer_connects_again_when_the_server_ends_its_session() {
    let at = At::postgres();
    let db = at.db();
    let url = db.to_str().unwrap().to_owned();
    let (writer, thread) = StoreWriter::spawn(open_db(db.clone()), 16).unwrap();
    let rt = runtime();
    for round in 0..3_i64 {
        let id = format!("inc-{:06}", round + 1);
        let key = ActionKey::new(id.clone(), 1, 1);
        let w = writer.clone();
        let begun = end_the_session_waiting_for(&url, "incidents", || {
            rt.block_on(async move {
                w.incident(rich_incident(&id, "web", T0 + round * MIN))
                    .await?;
                w.begin_action(key, "exec heal-lab restart web".into(), T0)
                    .await
            })
        });
        begun.unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    drop(writer);
    let store = thread.join();
    assert_eq!(store.reconnects(), 3);
    let page = store
        .list(&IncidentFilter {
            limit: 100,
            ..IncidentFilter::default()
        })
        .unwrap();
    assert_eq!(page.incidents.len(), 3);
    for i in 1..=3 {
        let record = store.incident(&format!("inc-{i:06}")).unwrap().unwrap();
        assert_eq!(record.executions.len(), 1);
    }
    drop(at);
}

/// The same for a remediate member's begin ([`crate::PgStore`]): it
/// connects again and the begin is recorded once.
#[test]
fn a_begin_connects_again_when_the_server_ends_its_session() {
    let at = At::postgres();
    let url = at.db().to_str().unwrap().to_owned();
    let mut member = crate::PgStore::open_as(&url, "member-a").unwrap();
    for i in 0..3_i64 {
        let key = ActionKey::new(format!("inc-{i:06}"), 1, 1);
        let begun = end_the_session_waiting_for(&url, "executions", || {
            member.begin_action(&key, "exec true", i, None)
        });
        begun.unwrap_or_else(|e| panic!("{key}: {e}"));
        let mut other = crate::PgStore::open_as(&url, "member-b").unwrap();
        assert!(matches!(
            other.begin_action(&key, "exec true", i, None),
            Err(StoreError::DuplicateAction { .. })
        ));
    }
    assert_eq!(member.reconnects(), 3);
    drop(at);
}

/// A write the database refuses for real (evidence of an incident that
/// does not exist: a foreign key) fails alone: what was sent with it is
/// written, and the begin sent after it is answered and committed.
fn a_write_that_fails_is_undone_alone(at: &At) {
    let store = open(at);
    let (writer, thread) = StoreWriter::spawn(store, 64).unwrap();
    let key = ActionKey::new("inc-000001", 1, 1);
    runtime().block_on(async {
        let evidence = remediate::report::Evidence {
            points: vec![remediate::report::EvidencePoint::new(T0, 1.0, (0.0, 2.0))],
            context: 1,
            ..Default::default()
        };
        // Queued without waiting, so they travel together.
        let (a, b, c) = tokio::join!(
            writer.evidence("inc-999999".into(), evidence),
            writer.incident(rich_incident("inc-000001", "web", T0)),
            writer.begin_action(key.clone(), "restart web".into(), T0),
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
        writer.flush().await.unwrap();
        drop(writer);
    });
    let store = thread.join();
    let record = store.incident("inc-000001").unwrap().unwrap();
    assert_eq!(record.executions.len(), 1);
    assert_eq!(record.executions[0].state, ExecutionState::Started);
    assert!(store.evidence("inc-999999").unwrap().is_none());
}
