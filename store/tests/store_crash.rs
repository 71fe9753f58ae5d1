//! SIGKILL between an action's begin and its finish, then a restart: the
//! action is reported as interrupted, cannot be begun again, and the
//! incident written before it is intact.
//!
//! The process killed is a real one: this test binary runs itself again as
//! a child (`--exact begin_an_action_then_wait`), with the database path in
//! `HEAL_STORE_CRASH_CHILD`. The child opens the store, records an
//! incident, begins an action, says so on stdout and waits forever; the
//! parent kills it with SIGKILL (`Child::kill` on Unix), so no destructor,
//! no flush and no SQLite close runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use remediate::action::RenderedAction;
use remediate::engine::{Decision, Incident, PlannedAction};
use remediate::runbook::{ActionKind, Severity};
use store::{ActionKey, ExecutionState, Opened, Store, StoreError};

const CHILD_ENV: &str = "HEAL_STORE_CRASH_CHILD";
const BEGUN: &str = "child: action begun";
const T0: i64 = 1_772_323_200_000;

fn incident() -> Incident {
    let rendered = RenderedAction::Exec {
        argv: vec!["heal-lab".into(), "restart".into(), "web".into()],
    };
    Incident {
        id: "inc-000041".into(),
        series: BTreeMap::from([
            ("__name__".to_owned(), "up".to_owned()),
            ("service".to_owned(), "web".to_owned()),
        ]),
        service: "web".into(),
        signal: "up".into(),
        rule: "service-down".into(),
        description: None,
        severity: Severity::Critical,
        above: false,
        onset_ms: T0,
        opened_ms: T0 + 1000,
        peak_score: 1.0,
        peer_z: None,
        chain_len: 1,
        actions: vec![PlannedAction {
            step: 1,
            kind: ActionKind::Exec,
            summary: rendered.summary(),
            rendered: Some(rendered),
            decision: Decision::allowed("no guard held it back".into()),
            planned_ms: T0 + 1000,
            verification: None,
            timeout: None,
        }],
        resolved_ms: None,
        unresolved_at_ms: None,
        diagnosis: None,
    }
}

fn key() -> ActionKey {
    ActionKey::new("inc-000041", 1, 1)
}

/// What heal does before running an executor: the incident, then the begin.
fn begin(db: &Path) -> Store {
    let Opened {
        mut store,
        interrupted,
        ..
    } = Store::open(db).unwrap();
    assert!(interrupted.is_empty());
    store.record_incident(&incident()).unwrap();
    store
        .begin_action(&key(), "exec heal-lab restart web", T0 + 1001)
        .unwrap();
    store
}

/// The child's part. Run directly (no `HEAL_STORE_CRASH_CHILD`), it checks
/// the state the parent's kill will interrupt: the action is in flight.
#[test]
fn begin_an_action_then_wait() {
    match std::env::var_os(CHILD_ENV) {
        Some(db) => {
            let _store = begin(Path::new(&db));
            println!("{BEGUN}");
            loop {
                std::thread::park();
            }
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            let store = begin(&dir.path().join("heal.db"));
            let record = store.incident("inc-000041").unwrap().unwrap();
            assert_eq!(record.executions.len(), 1);
            assert_eq!(record.executions[0].state, ExecutionState::Started);
            assert_eq!(record.executions[0].finished_ms, None);
        }
    }
}

#[test]
fn sigkill_between_begin_and_finish_leaves_an_interrupted_action_and_the_incident() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("heal.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "begin_an_action_then_wait", "--nocapture"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Wait (generously: a loaded CI machine) for the child to say it began.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(BEGUN) {
                let _ = tx.send(());
                break;
            }
        }
    });
    let begun = rx.recv_timeout(Duration::from_secs(120));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    begun.expect("the child never reported the begin");
    assert!(!status.success(), "the child was killed: {status:?}");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    // Restart.
    let Opened {
        mut store,
        interrupted,
        ..
    } = Store::open(&db).unwrap();
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted[0].key, key());
    assert_eq!(interrupted[0].state, ExecutionState::Interrupted);
    assert_eq!(interrupted[0].summary, "exec heal-lab restart web");
    assert_eq!(interrupted[0].started_ms, T0 + 1001);

    // No duplicate: the same key cannot be begun again.
    match store.begin_action(&key(), "exec heal-lab restart web", T0 + 5000) {
        Err(StoreError::DuplicateAction { state, .. }) => assert_eq!(state, "interrupted"),
        other => panic!("expected a refused duplicate, got {other:?}"),
    }
    // The incident is intact, and shows the interrupted execution.
    let record = store.incident("inc-000041").unwrap().unwrap();
    assert_eq!(record.incident, incident());
    assert_eq!(record.executions.len(), 1);
    assert_eq!(record.executions[0].state, ExecutionState::Interrupted);
    // Numbering goes on after the killed run's incident.
    assert_eq!(store.next_incident_seq().unwrap(), 42);
}
