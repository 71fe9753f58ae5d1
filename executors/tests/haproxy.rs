//! The `haproxy` executor against a real HAProxy (Debian package `haproxy`,
//! 2.5 or later for runtime `add server`/`del server`).
//!
//! Each test starts its own HAProxy in the foreground with a generated
//! configuration: one frontend, one `roundrobin` backend whose servers are
//! small HTTP servers in this process that answer their own name, and a
//! runtime API on a UNIX socket in a temporary directory and on a TCP
//! port. Traffic is real: requests go through the frontend and the answers
//! are counted per backend server.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use executors::haproxy::{self, ApiAddress, HaproxyRequest, Operation};
use remediate::action::ActionResult;
use remediate::runbook::ServerState;
use support::{name_server, Lab, STEP};

impl Lab {
    async fn run(&self, api: &ApiAddress, operation: Operation) -> ActionResult {
        haproxy::run(&HaproxyRequest {
            api: api.clone(),
            operation,
            timeout: STEP,
            dry_run: false,
        })
        .await
    }

    async fn set(
        &self,
        server: &str,
        state: Option<ServerState>,
        weight: Option<u32>,
    ) -> ActionResult {
        let r = self
            .run(
                &self.unix_api,
                Operation::SetServer {
                    backend: "be".into(),
                    server: server.into(),
                    state,
                    weight,
                },
            )
            .await;
        assert!(r.ok, "{r:?}");
        r
    }
}

fn count(counts: &BTreeMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn drain_maint_and_ready_move_real_traffic() {
    let lab = Lab::start(&[("a", name_server("a")), ("b", name_server("b"))]).await;
    let both = lab.traffic(20).await;
    assert!(count(&both, "a") >= 5 && count(&both, "b") >= 5, "{both:?}");

    let r = lab.set("a", Some(ServerState::Drain), None).await;
    assert_eq!(r.summary, "server be/a: ready -> drain");
    assert!(r.output.starts_with("before: a 127.0.0.1:"), "{}", r.output);
    assert!(
        r.output.contains(" ready up weight 1\nafter: a "),
        "{}",
        r.output
    );
    assert!(r.output.ends_with(" drain up weight 1\n"), "{}", r.output);
    let drained = lab.traffic(20).await;
    assert_eq!(count(&drained, "a"), 0, "{drained:?}");
    assert_eq!(count(&drained, "b"), 20, "{drained:?}");

    let r = lab.set("a", Some(ServerState::Maint), None).await;
    assert_eq!(r.summary, "server be/a: drain -> maint");
    let maint = lab.traffic(20).await;
    assert_eq!(count(&maint, "b"), 20, "{maint:?}");

    let r = lab.set("a", Some(ServerState::Ready), None).await;
    assert_eq!(r.summary, "server be/a: maint -> ready");
    let back = lab.traffic(20).await;
    assert!(count(&back, "a") >= 5 && count(&back, "b") >= 5, "{back:?}");

    // Setting the state it already has is fine and says so.
    let r = lab.set("a", Some(ServerState::Ready), None).await;
    assert_eq!(r.summary, "server be/a: ready -> ready");
}

#[tokio::test]
async fn weight_shifts_the_share_over_the_tcp_api() {
    let lab = Lab::start(&[("a", name_server("a")), ("b", name_server("b"))]).await;
    let r = lab
        .run(
            &lab.tcp_api,
            Operation::SetServer {
                backend: "be".into(),
                server: "a".into(),
                state: None,
                weight: Some(3),
            },
        )
        .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.summary, "server be/a: weight 1 -> 3");
    let shifted = lab.traffic(40).await;
    // Weighted round robin: about 30 to a, 10 to b.
    let (a, b) = (count(&shifted, "a"), count(&shifted, "b"));
    assert!(b > 0 && a >= 2 * b, "{shifted:?}");

    // Weight 0 takes a server out of rotation without a state change.
    let r = lab.set("a", None, Some(0)).await;
    assert_eq!(r.summary, "server be/a: weight 3 -> 0");
    let zero = lab.traffic(20).await;
    assert_eq!(count(&zero, "b"), 20, "{zero:?}");

    // State and weight together: back in rotation at weight 1.
    let r = lab.set("a", Some(ServerState::Ready), Some(1)).await;
    assert_eq!(r.summary, "server be/a: ready -> ready, weight 0 -> 1");
    let even = lab.traffic(20).await;
    assert!(count(&even, "a") >= 5, "{even:?}");
}

#[tokio::test]
async fn replicas_are_added_and_removed_at_runtime() {
    let lab = Lab::start(&[("a", name_server("a")), ("b", name_server("b"))]).await;
    let c = name_server("c");
    let add = Operation::AddServer {
        backend: "be".into(),
        server: "c".into(),
        address: c.to_string(),
    };
    let r = lab.run(&lab.unix_api, add.clone()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.summary, format!("registered server be/c at {c}"));
    assert_eq!(
        r.output,
        format!("before: absent\nafter: c {c} ready up weight 1\n")
    );
    let three = lab.traffic(30).await;
    for name in ["a", "b", "c"] {
        assert!(count(&three, name) >= 5, "{three:?}");
    }

    // Registering again is idempotent (an interrupted scale can be redone).
    let r = lab.run(&lab.unix_api, add).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        r.summary,
        format!("server be/c at {c} was registered already; enabled")
    );
    // The same name at another address is a conflict, not an overwrite.
    let r = lab
        .run(
            &lab.unix_api,
            Operation::AddServer {
                backend: "be".into(),
                server: "c".into(),
                address: "127.0.0.1:1".into(),
            },
        )
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert_eq!(
        r.summary,
        format!("server be/c exists with address {c}, not 127.0.0.1:1")
    );

    let remove = Operation::RemoveServer {
        backend: "be".into(),
        server: "c".into(),
    };
    let r = lab.run(&lab.unix_api, remove.clone()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.summary, format!("removed server be/c (was at {c})"));
    let names: Vec<String> = lab.table().await.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
    let two = lab.traffic(20).await;
    assert_eq!(count(&two, "c"), 0, "{two:?}");
    assert_eq!(count(&two, "a") + count(&two, "b"), 20, "{two:?}");

    let r = lab.run(&lab.unix_api, remove).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.summary, "server be/c was not registered");
}

#[tokio::test]
async fn injection_is_refused_before_anything_is_sent() {
    let lab = Lab::start(&[("a", name_server("a")), ("b", name_server("b"))]).await;
    for (backend, server) in [
        ("be", "a\nset server be/b state maint"),
        ("be", "a;set server be/b state maint"),
        ("be\nset server be/b state maint\n", "a"),
        ("be", "b state maint;"),
        ("be", "../b"),
    ] {
        let r = lab
            .run(
                &lab.unix_api,
                Operation::SetServer {
                    backend: backend.into(),
                    server: server.into(),
                    state: Some(ServerState::Drain),
                    weight: None,
                },
            )
            .await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(r.summary.starts_with("refusing "), "{}", r.summary);
    }
    let r = lab
        .run(
            &lab.unix_api,
            Operation::AddServer {
                backend: "be".into(),
                server: "c".into(),
                address: "127.0.0.1:80\ndel server be/b".into(),
            },
        )
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    // Nothing reached HAProxy: both servers untouched, both still serve.
    for s in lab.table().await {
        assert_eq!((s.state(), s.weight), (ServerState::Ready, 1), "{s:?}");
    }
    let both = lab.traffic(10).await;
    assert_eq!(count(&both, "a") + count(&both, "b"), 10, "{both:?}");
    assert!(count(&both, "a") > 0 && count(&both, "b") > 0, "{both:?}");
}

#[tokio::test]
async fn errors_say_whether_a_retry_can_help() {
    let lab = Lab::start(&[("a", name_server("a")), ("b", name_server("b"))]).await;
    let set = |backend: &str, server: &str| Operation::SetServer {
        backend: backend.into(),
        server: server.into(),
        state: Some(ServerState::Drain),
        weight: None,
    };

    // A wrong socket path: clear, and retryable (HAProxy may be restarting).
    let missing = ApiAddress::Unix(lab.dir.path().join("nope.sock"));
    let r = lab.run(&missing, set("be", "a")).await;
    assert!(!r.ok && r.retryable, "{r:?}");
    assert!(
        r.summary.starts_with(&format!(
            "connecting to HAProxy runtime API at {missing}: No such file or directory"
        )),
        "{}",
        r.summary
    );

    // Unknown server and unknown backend: HAProxy says no, a retry will not help.
    let r = lab.run(&lab.unix_api, set("be", "zz")).await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert_eq!(
        r.summary,
        "no server \"zz\" in backend \"be\" (servers: a, b)"
    );
    let r = lab.run(&lab.unix_api, set("nope", "a")).await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert_eq!(
        r.summary,
        "HAProxy refused `show servers state nope`: Can't find backend."
    );
    // Removing from an unknown backend is refused the same way.
    let r = lab
        .run(
            &lab.unix_api,
            Operation::RemoveServer {
                backend: "nope".into(),
                server: "a".into(),
            },
        )
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
}

#[tokio::test]
async fn an_api_that_never_answers_times_out_retryably() {
    // A TCP server that accepts and then says nothing: HAProxy stuck.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let r = haproxy::run(&HaproxyRequest {
        api: addr.to_string().parse().unwrap(),
        operation: Operation::SetServer {
            backend: "be".into(),
            server: "a".into(),
            state: Some(ServerState::Drain),
            weight: None,
        },
        timeout: Duration::from_millis(300),
        dry_run: false,
    })
    .await;
    hold.abort();
    assert!(!r.ok && r.retryable, "{r:?}");
    assert_eq!(
        r.summary,
        format!("timed out after 300ms sending `set server be/a state drain` to {addr}")
    );
}

/// An HTTP server like `name_server` that holds each request until told:
/// it reports each arrival on the first channel and answers after a
/// message on the second.
fn gated_server(
    name: &'static str,
) -> (
    SocketAddr,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a backend server");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = arrived_tx.send(());
            if release_rx.recv().is_err() {
                return;
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (addr, arrived_rx, release_tx)
}

#[tokio::test]
async fn removing_a_replica_waits_for_its_requests_in_flight() {
    let lab = Lab::start(&[("a", name_server("a"))]).await;
    let (c, arrived, release) = gated_server("c");
    let r = lab
        .run(
            &lab.unix_api,
            Operation::AddServer {
                backend: "be".into(),
                server: "c".into(),
                address: c.to_string(),
            },
        )
        .await;
    assert!(r.ok, "{r:?}");
    lab.set("a", Some(ServerState::Maint), None).await;

    // One request to c, held open by c.
    let frontend = lab.frontend;
    let in_flight = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(frontend).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    });
    tokio::task::spawn_blocking(move || arrived.recv_timeout(STEP))
        .await
        .unwrap()
        .expect("the request reached c");

    // While it is in flight HAProxy refuses `del server`; the executor
    // keeps asking until its timeout, which is retryable.
    let remove = Operation::RemoveServer {
        backend: "be".into(),
        server: "c".into(),
    };
    let r = haproxy::run(&HaproxyRequest {
        api: lab.unix_api.clone(),
        operation: remove.clone(),
        timeout: Duration::from_millis(500),
        dry_run: false,
    })
    .await;
    assert!(!r.ok && r.retryable, "{r:?}");
    assert!(
        r.summary
            .starts_with("timed out after 500ms sending `disable server be/c`, `del server be/c`"),
        "{}",
        r.summary
    );
    assert!(
        r.output
            .starts_with(&format!("before: c {c} ready up weight 1")),
        "{}",
        r.output
    );
    let c_row = lab.table().await.into_iter().find(|s| s.name == "c");
    assert_eq!(c_row.map(|s| s.state()), Some(ServerState::Maint));

    // Once the request is answered, removal goes through, and the request
    // was served, not cut.
    let removal = tokio::spawn({
        let api = lab.unix_api.clone();
        async move {
            haproxy::run(&HaproxyRequest {
                api,
                operation: remove,
                timeout: STEP,
                dry_run: false,
            })
            .await
        }
    });
    release.send(()).unwrap();
    let r = removal.await.unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.summary, format!("removed server be/c (was at {c})"));
    let answer = in_flight.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\nc"),
        "{answer}"
    );
}
