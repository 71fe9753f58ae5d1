//! The shared store on a real PostgreSQL (Debian's `postgresql`, a cluster
//! of the test's own through `lab::postgres`): the schema is the SQLite
//! store's, a begin happens once however many members ask at once, a
//! member whose claim is stale is fenced, and a killed and restarted
//! server keeps what it acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use lab::postgres::PgServer;
use remediate::action::ActionResult;
use store::{ActionKey, ExecutionState, PgStore, Store, StoreError};

fn server() -> PgServer {
    PgServer::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"))
}

fn done(summary: &str) -> ActionResult {
    ActionResult {
        ok: true,
        retryable: false,
        summary: summary.into(),
        output: String::new(),
        duration: Duration::from_micros(1234),
    }
}

#[test]
fn members_migrating_at_once_migrate_once_to_the_sqlite_schema() {
    let pg = server();
    let url = pg.url();
    // Four members start together: the advisory lock orders them.
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgStore::open(&url).map(|mut s| s.version().unwrap())
            })
        })
        .collect();
    for h in handles {
        let version = h.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version, 12);
    }
    // Opening again changes nothing.
    let mut pgs = PgStore::open(&url).unwrap();
    assert_eq!(pgs.version().unwrap(), 12);

    // The same tables with the same columns in the same order as SQLite.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal.db");
    drop(Store::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let mut tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables.sort();
    let sqlite: Vec<(String, Vec<String>)> = tables
        .into_iter()
        .map(|t| {
            let cols = c
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (t, cols)
        })
        .collect();
    let postgres = pgs.columns().unwrap();
    assert_eq!(postgres, sqlite);
    assert!(postgres.iter().any(|(t, _)| t == "owners"), "{postgres:?}");
}

#[test]
fn a_begin_happens_once_however_many_members_ask_at_once() {
    let pg = server();
    let url = pg.url();
    drop(PgStore::open(&url).unwrap());
    const MEMBERS: usize = 4;
    const KEYS: usize = 300;
    let barrier = Arc::new(Barrier::new(MEMBERS));
    let handles: Vec<_> = (0..MEMBERS)
        .map(|m| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = PgStore::open(&url).unwrap();
                let mut begun = Vec::new();
                let mut refused: BTreeMap<String, usize> = BTreeMap::new();
                barrier.wait();
                // Each member walks the keys from its own starting point,
                // so every key is contended at some moment.
                for i in 0..KEYS {
                    let k = (i + m * KEYS / MEMBERS) % KEYS;
                    let key = ActionKey::new(format!("inc-{k:06}"), 1, 1);
                    match s.begin_action(&key, "exec true", 1_000, None) {
                        Ok(()) => {
                            begun.push(k);
                            s.finish_action(&key, &done(&format!("member {m}")), 2_000)
                                .unwrap();
                        }
                        Err(StoreError::DuplicateAction { state, .. }) => {
                            *refused.entry(state).or_default() += 1;
                        }
                        Err(e) => panic!("member {m}: {e}"),
                    }
                }
                (begun, refused)
            })
        })
        .collect();
    let mut winners = vec![0usize; KEYS];
    let mut refused = 0;
    for h in handles {
        let (begun, r) = h.join().unwrap();
        for k in begun {
            winners[k] += 1;
        }
        assert!(r.keys().all(|s| s == "started" || s == "finished"), "{r:?}");
        refused += r.values().sum::<usize>();
    }
    assert!(
        winners.iter().all(|&n| n == 1),
        "keys begun other than once: {:?}",
        winners
            .iter()
            .enumerate()
            .filter(|(_, &n)| n != 1)
            .collect::<Vec<_>>()
    );
    assert_eq!(refused, KEYS * (MEMBERS - 1));
    eprintln!(
        "{MEMBERS} members x {KEYS} keys: {KEYS} begun once each, {refused} refused as duplicates"
    );
    // What the winner recorded is what every member reads.
    let mut s = PgStore::open(&url).unwrap();
    let rec = s
        .action(&ActionKey::new("inc-000007", 1, 1))
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, ExecutionState::Finished);
    assert_eq!(rec.result.unwrap().duration, Duration::from_micros(1234));
    assert!(matches!(
        s.finish_action(&ActionKey::new("inc-000007", 1, 1), &done("again"), 3_000),
        Err(StoreError::NotInFlight { .. })
    ));
}

#[test]
fn a_member_whose_claim_is_stale_is_fenced() {
    let pg = server();
    let url = pg.url();
    let mut a = PgStore::open(&url).unwrap();
    let mut b = PgStore::open(&url).unwrap();
    let fa = a.claim("web", "member-a", 1_000).unwrap();
    assert_eq!(fa.epoch, 1);
    a.begin_action(
        &ActionKey::new("inc-000001", 1, 1),
        "restart web",
        1_000,
        Some(&fa),
    )
    .unwrap();
    // A rebalance gives web to b; a, cut off, still thinks it owns it.
    let fb = b.claim("web", "member-b", 2_000).unwrap();
    assert_eq!(fb.epoch, 2);
    let key = ActionKey::new("inc-000002", 1, 1);
    let err = a
        .begin_action(&key, "restart web", 2_500, Some(&fa))
        .unwrap_err();
    match &err {
        StoreError::Fenced {
            epoch,
            current,
            owner,
            ..
        } => {
            assert_eq!(
                (*epoch, *current, owner.as_deref()),
                (1, Some(2), Some("member-b"))
            );
        }
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("fenced"), "{err}");
    assert!(a.action(&key).unwrap().is_none(), "a fenced begin recorded");
    b.begin_action(&key, "restart web", 2_600, Some(&fb))
        .unwrap();
    // Other keys are not touched by a claim of web.
    let fa_api = a.claim("api", "member-a", 3_000).unwrap();
    a.begin_action(
        &ActionKey::new("inc-000003", 1, 1),
        "restart api",
        3_000,
        Some(&fa_api),
    )
    .unwrap();

    // Under contention: a begins as fast as it can while b claims; no
    // begin a issues after b's claim has returned may succeed.
    let fa = a.claim("db", "member-a", 4_000).unwrap();
    let claimed = Arc::new(AtomicBool::new(false));
    let zombie = {
        let (url, claimed, fa) = (url.clone(), claimed.clone(), fa.clone());
        std::thread::spawn(move || {
            let mut a = PgStore::open(&url).unwrap();
            let (mut before, mut after_ok, mut fenced) = (0, 0, 0);
            for i in 0..2_000 {
                let issued_after_claim = claimed.load(Ordering::SeqCst);
                let key = ActionKey::new(format!("db-{i:06}"), 1, 1);
                match a.begin_action(&key, "restart db", 5_000, Some(&fa)) {
                    Ok(()) if issued_after_claim => after_ok += 1,
                    Ok(()) => before += 1,
                    Err(StoreError::Fenced { .. }) => fenced += 1,
                    Err(e) => panic!("{e}"),
                }
                if fenced > 50 {
                    break;
                }
            }
            (before, after_ok, fenced)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    b.claim("db", "member-b", 5_000).unwrap();
    claimed.store(true, Ordering::SeqCst);
    let (before, after_ok, fenced) = zombie.join().unwrap();
    eprintln!("zombie: {before} begun before the claim, {after_ok} after it, {fenced} fenced");
    assert_eq!(
        after_ok, 0,
        "a begin issued after the claim returned succeeded"
    );
    assert!(fenced > 0 && before > 0, "{before} {fenced}");
}

#[test]
fn a_killed_server_keeps_what_it_acknowledged_and_errors_are_clear() {
    let mut pg = server();
    let url = pg.url();
    let mut s = PgStore::open(&url).unwrap();
    for i in 0..100 {
        s.begin_action(
            &ActionKey::new(format!("inc-{i:06}"), 1, 1),
            "exec true",
            1,
            None,
        )
        .unwrap();
    }
    pg.kill();
    // The connection is gone and the store may not wait: an error naming
    // the store, no panic.
    s.set_retry_for(Duration::ZERO);
    let err = s
        .begin_action(&ActionKey::new("inc-000100", 1, 1), "exec true", 1, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::Postgres { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    // Down: opening says where and what.
    let err = PgStore::open(&url).unwrap_err();
    assert!(err.to_string().contains("connecting"), "{err}");
    // A password never reaches a message.
    let secret = url.replace("heal@", "heal:hunter2@");
    let err = PgStore::open(&secret).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");

    pg.restart().unwrap_or_else(|e| panic!("{e}"));
    let mut s = PgStore::open(&url).unwrap();
    for i in 0..100 {
        let key = ActionKey::new(format!("inc-{i:06}"), 1, 1);
        let rec = s
            .action(&key)
            .unwrap()
            .unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(rec.state, ExecutionState::Started);
        assert!(matches!(
            s.begin_action(&key, "exec true", 2, None),
            Err(StoreError::DuplicateAction { .. })
        ));
    }
}

#[test]
fn begins_ride_through_a_server_restart_each_recorded_once() {
    let mut pg = server();
    let url = pg.url();
    let mut s = PgStore::open_as(&url, "member-a").unwrap();
    // The server is killed and started again while begins and finishes
    // go on: each call waits it out, and every key is recorded once.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        pg.kill();
        std::thread::sleep(Duration::from_millis(700));
        pg.restart().unwrap_or_else(|e| panic!("{e}"));
        pg
    });
    let keys: Vec<ActionKey> = (0..150)
        .map(|i| ActionKey::new(format!("inc-{i:06}"), 1, 1))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        s.begin_action(key, "exec true", i as i64, None)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        s.finish_action(key, &done("exit status 0"), i as i64 + 1)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        std::thread::sleep(Duration::from_millis(10));
    }
    let _pg = killer.join().unwrap();
    assert!(
        s.reconnects() >= 1,
        "the restart did not happen during the begins"
    );
    let mut check = PgStore::open(&url).unwrap();
    for key in &keys {
        let rec = check
            .action(key)
            .unwrap()
            .unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(rec.state, ExecutionState::Finished, "{key}");
    }
    // Another member asking for the same keys is refused every time.
    for key in &keys {
        assert!(matches!(
            check.begin_action(key, "exec true", 0, None),
            Err(StoreError::DuplicateAction { .. })
        ));
    }
    eprintln!(
        "150 begins and finishes through a server kill and restart: {} reconnect(s), each key once",
        s.reconnects()
    );
}

/// What PostgreSQL refuses is named with its SQLSTATE and message, not
/// just the client's "db error".
#[test]
fn a_refusal_names_its_sqlstate_and_message() {
    let pg = server();
    let url = pg.url();
    let err = PgStore::open(&format!(
        "{}/no_such_database",
        url.rsplit_once('/').unwrap().0
    ))
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("FATAL 3D000") && shown.contains("\"no_such_database\" does not exist"),
        "{shown}"
    );
}

/// Leases: one holder at a time; a renewal keeps it; another member takes
/// it only once it expired (by the database's clock), with the epoch
/// raised; the old holder's renewal then does not return it; a release
/// frees it at once; members are listed while their own lease lives.
#[test]
fn a_lease_has_one_holder_and_passes_on_only_when_it_expires() {
    let pg = server();
    let mut a = PgStore::open_as(&pg.url(), "a").unwrap();
    let mut b = PgStore::open_as(&pg.url(), "b").unwrap();
    let key = "partition/g/samples/3".to_owned();
    assert_eq!(a.lease_acquire(&key, "a", 600).unwrap(), Some(1));
    assert_eq!(
        a.lease_acquire(&key, "a", 600).unwrap(),
        Some(1),
        "its own: same epoch"
    );
    assert_eq!(b.lease_acquire(&key, "b", 600).unwrap(), None, "held by a");
    assert_eq!(
        a.lease_renew(std::slice::from_ref(&key), "a", 600).unwrap(),
        vec![key.clone()]
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(
        b.lease_acquire(&key, "b", 60_000).unwrap(),
        Some(2),
        "expired: b takes it over"
    );
    assert!(
        a.lease_renew(std::slice::from_ref(&key), "a", 600)
            .unwrap()
            .is_empty(),
        "a lost it"
    );
    assert_eq!(a.lease_acquire(&key, "a", 600).unwrap(), None);
    b.lease_release(&key, "b").unwrap();
    assert_eq!(
        a.lease_acquire(&key, "a", 600).unwrap(),
        Some(3),
        "released: free at once"
    );

    assert_eq!(a.lease_members("g", "a", 600).unwrap(), vec!["a"]);
    assert_eq!(b.lease_members("g", "b", 60_000).unwrap(), vec!["a", "b"]);
    // Another group's members are not this one's, even with LIKE's
    // wildcards in its name.
    assert_eq!(b.lease_members("g_x%", "c", 60_000).unwrap(), vec!["c"]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(
        b.lease_members("g", "b", 60_000).unwrap(),
        vec!["b"],
        "a's membership expired"
    );
}

/// A member's memory of a group key (its guards') is saved under its
/// fence: the next holder reads it; a holder whose claim was superseded
/// saves nothing over it.
#[test]
fn a_members_state_passes_to_the_next_holder_and_a_stale_one_saves_nothing() {
    let pg = server();
    let url = pg.url();
    let mut a = PgStore::open_as(&url, "a").unwrap();
    let mut b = PgStore::open_as(&url, "b").unwrap();
    assert_eq!(a.load_state("remediate/p0").unwrap(), None);
    let fa = a.claim("remediate/p0", "a", 1).unwrap();
    assert!(a.save_state(&fa, "{\"attempts\":1}", 2).unwrap());
    let fb = b.claim("remediate/p0", "b", 3).unwrap();
    assert_eq!(
        b.load_state("remediate/p0").unwrap().as_deref(),
        Some("{\"attempts\":1}")
    );
    assert!(b.save_state(&fb, "{\"attempts\":2}", 4).unwrap());
    // The zombie's save is refused; the holder's stays.
    assert!(!a.save_state(&fa, "{\"attempts\":9}", 5).unwrap());
    assert_eq!(
        a.load_state("remediate/p0").unwrap().as_deref(),
        Some("{\"attempts\":2}")
    );
}
