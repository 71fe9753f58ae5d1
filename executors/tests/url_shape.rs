//! Issue 10, 3: a label value substituted into an action's URL cannot send
//! the request anywhere else. Real listeners on two ports; the engine
//! renders the step from the series' labels, and whatever it allows is
//! performed by the real executors. Nothing may reach the other port.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use detect::{Excursion, Scored};
use executors::Executors;
use remediate::engine::EngineEvent;
use remediate::{Engine, EngineOptions, Observation, RunbookSet};

const T0: i64 = 1_772_323_200_000;

/// A listener answering 200 to every request, counting connections.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, hits)
}

fn set(port: u16) -> RunbookSet {
    let text = format!(
        "signals:
  - name: lat
    query: lat
rules:
  - name: hook
    when: {{signal: lat, direction: up}}
    then:
      - action: webhook
        url: \"http://{{{{instance}}}}:{port}/hook/{{{{service}}}}\"
      - action: agent
        url: \"http://{{{{instance}}}}:{port}\"
        name: touch
        key_env: HEAL_TEST_AGENT_KEY
"
    );
    RunbookSet::from_sources(&[("r.yaml".into(), text)]).unwrap_or_else(|e| panic!("{e}"))
}

/// The first step planned for a series with these labels, and its decision.
fn plan(set: &RunbookSet, instance: &str, service: &str) -> remediate::engine::PlannedAction {
    let mut engine = Engine::new(
        set,
        EngineOptions {
            dry_run: false,
            await_actions: false,
        },
    );
    let labels: BTreeMap<String, String> = [
        ("__name__", "lat"),
        ("service", service),
        ("instance", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let excursion = Excursion {
        onset_ms: T0,
        above: true,
        peak_score: 0.99999,
        peer_z: None,
        first: true,
        in_band: false,
        band: (f64::NEG_INFINITY, f64::INFINITY),
    };
    let events = engine.observe(&Observation {
        signal: "lat",
        labels: &labels,
        ts_ms: T0,
        value: 100.0,
        scored: Scored {
            score: 0.99999,
            excursion: Some(excursion),
        },
    });
    events
        .into_iter()
        .find_map(|e| match e {
            EngineEvent::Planned { action, .. } => Some(action),
            _ => None,
        })
        .expect("the rule plans its first step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_value_cannot_move_a_webhook_to_another_port_or_user() {
    let (good_port, good_hits) = listener();
    let (other_port, other_hits) = listener();
    let set = set(good_port);
    let ex = Executors::new(Arc::new(|_: &str| None), Arc::new(stdx::SystemClock));
    let mut performed = 0;
    for (instance, service, allowed) in [
        ("127.0.0.1", "checkout", true),
        (&*format!("127.0.0.1:{other_port}/"), "checkout", false),
        (&*format!("127.0.0.1:{other_port}"), "checkout", false),
        ("evil@127.0.0.1", "checkout", false),
        ("127.0.0.1", "a/../../admin", false),
        ("127.0.0.1", "x/y", false),
    ] {
        let step = plan(&set, instance, service);
        assert_eq!(
            step.decision.label(),
            if allowed {
                "allowed"
            } else {
                "invalid_label_value"
            },
            "{instance} {service}: {}",
            step.decision.detail
        );
        // Whatever the engine rendered and allowed goes out, as the act stage would send it.
        if let Some(action) = step.rendered.as_ref().filter(|_| step.decision.allowed) {
            let r = ex.perform(action, Duration::from_secs(5), false).await;
            assert!(r.ok, "{r:?}");
            performed += 1;
        }
    }
    assert_eq!(performed, 1);
    assert_eq!(
        good_hits.load(Ordering::SeqCst),
        1,
        "the good value's request arrived"
    );
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the other port"
    );
    let refused = plan(&set, &format!("127.0.0.1:{other_port}"), "c");
    assert_eq!(
        refused.decision.detail,
        format!("label \"instance\" has value \"127.0.0.1:{other_port}\", which would change the URL beyond the host it stands in")
    );
}
