//! The runtime against real child processes (`sleep`, `kill`); the HTTP
//! checks, ports and the control API are tested end to end with the lab's
//! services in the root package's `tests/supervisor.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

fn config(text: &str) -> SupervisorConfig {
    SupervisorConfig::from_text(Path::new("t.yaml"), text).unwrap()
}

/// Polls `f` until it returns `Some`, for at most 20 s (generous: CI is a
/// loaded 2-core machine; the wait ends as soon as the condition holds).
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A supervisor of `text`'s services on the system clock, state in `dir`.
async fn start(text: &str, dir: &Path) -> Supervisor {
    Supervisor::start(config(text), dir, std::sync::Arc::new(stdx::SystemClock))
        .await
        .unwrap()
}

fn replica(sup: &Supervisor, name: &str, i: usize) -> ReplicaStatus {
    sup.service(name).unwrap().instances[i].clone()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

async fn kill9(pid: u32) {
    let s = tokio::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(s.success());
}

const SLEEPER: &str = "\
services:
  - name: s
    release: {version: v1, argv: [sleep, \"300\"], env: {PATH: /usr/bin:/bin}}
    restart: {initial: 300ms, max: 1s}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_child_is_restarted_after_its_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let sup = start(SLEEPER, dir.path()).await;
    let first = wait_for("first start", || {
        let r = replica(&sup, "s", 0);
        (r.phase == Phase::Healthy).then_some(r)
    })
    .await;
    let pid = first.pid.unwrap();
    assert!(cmdline(pid).starts_with("sleep 300"), "{}", cmdline(pid));
    kill9(pid).await;
    let second = wait_for("restart", || {
        let r = replica(&sup, "s", 0);
        (r.starts == 2 && r.pid.is_some()).then_some(r)
    })
    .await;
    assert_ne!(second.pid, Some(pid));
    assert_eq!(second.last_exit.as_deref(), Some("killed by signal 9"));
    // The restart waited out the initial backoff.
    let gap = second.started_ms.unwrap() - second.last_exit_ms.unwrap();
    assert!(gap >= 300, "restarted {gap} ms after the exit");
    // Killed again: the backoff doubles.
    kill9(second.pid.unwrap()).await;
    let third = wait_for("second restart", || {
        let r = replica(&sup, "s", 0);
        (r.starts == 3 && r.pid.is_some()).then_some(r)
    })
    .await;
    let gap = third.started_ms.unwrap() - third.last_exit_ms.unwrap();
    assert!(gap >= 600, "restarted {gap} ms after the second exit");
    // Every start is recorded with its release.
    let state = StateFile::in_dir(dir.path()).read().unwrap();
    assert_eq!(state.services["s"].release("v1").unwrap().starts, 3);
    sup.shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{}", third.pid.unwrap())).exists()
            || cmdline(third.pid.unwrap()).is_empty(),
        "the child outlived the shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_rollback_restart_with_the_release_and_persist_it() {
    let dir = tempfile::tempdir().unwrap();
    let sup = start(SLEEPER, dir.path()).await;
    let v1 = wait_for("v1", || replica(&sup, "s", 0).pid).await;
    let v2 = Release {
        version: "v2".into(),
        argv: vec!["sleep".into(), "301".into()],
        env: [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into(),
    };
    let status = sup.deploy("s", v2.clone()).unwrap();
    assert_eq!(status.release, v2);
    let pid2 = wait_for("v2 running", || {
        let r = replica(&sup, "s", 0);
        (r.version.as_deref() == Some("v2") && r.pid.is_some()).then(|| r.pid.unwrap())
    })
    .await;
    assert_ne!(pid2, v1);
    assert!(cmdline(pid2).starts_with("sleep 301"), "{}", cmdline(pid2));
    // A restart on request does not count as a crash.
    assert_eq!(
        replica(&sup, "s", 0).last_exit.as_deref(),
        Some("restart requested; killed by signal 15")
    );

    let status = sup.rollback("s", None).unwrap();
    assert_eq!(status.release.version, "v1");
    let pid1 = wait_for("v1 running again", || {
        let r = replica(&sup, "s", 0);
        (r.version.as_deref() == Some("v1") && r.pid.is_some()).then(|| r.pid.unwrap())
    })
    .await;
    assert!(cmdline(pid1).starts_with("sleep 300"), "{}", cmdline(pid1));
    assert_eq!(sup.service("s").unwrap().versions, ["v1", "v2"]);
    sup.shutdown().await;

    // A new supervisor on the same state directory runs the recorded
    // current release, v1 after the rollback; a second rollback goes to v2.
    let sup = start(SLEEPER, dir.path()).await;
    assert_eq!(sup.service("s").unwrap().release.version, "v1");
    assert_eq!(sup.rollback("s", None).unwrap().release.version, "v2");
    let e = sup.rollback("s", Some("v7")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown release version \"v7\" (known: v1, v2)"
    );
    let mut bad = v2.clone();
    bad.version = "v3".into();
    bad.argv = vec![];
    assert_eq!(
        sup.deploy("s", bad).unwrap_err().to_string(),
        "invalid release: argv: argv must name a program: `[program, args...]`"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_waits_for_its_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    // `a` cannot start (no such program); `b` must not start before it.
    let text = "\
services:
  - name: a
    release: {version: broken, argv: [/nonexistent/heal-test-program]}
    restart: {initial: 100ms, max: 200ms}
  - name: b
    release: {version: v1, argv: [sleep, \"300\"], env: {PATH: /usr/bin:/bin}}
    depends_on: [a]
";
    let sup = start(text, dir.path()).await;
    let a = wait_for("a to fail to start", || {
        let r = replica(&sup, "a", 0);
        r.last_error.is_some().then_some(r)
    })
    .await;
    assert!(a
        .last_error
        .unwrap()
        .starts_with("starting /nonexistent/heal-test-program: "),);
    // Wait for a few more failed starts of `a`: `b` stays waiting.
    wait_for("a few more attempts", || {
        (replica(&sup, "a", 0).next_start_ms.is_some()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = replica(&sup, "b", 0);
    assert_eq!(b.phase, Phase::WaitingForDependencies);
    assert_eq!(b.starts, 0);
    // Fix `a`: `b` starts after it.
    sup.deploy(
        "a",
        Release {
            version: "fixed".into(),
            argv: vec!["sleep".into(), "300".into()],
            env: [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into(),
        },
    )
    .unwrap();
    let b = wait_for("b to start", || {
        let r = replica(&sup, "b", 0);
        (r.phase == Phase::Healthy).then_some(r)
    })
    .await;
    let a = replica(&sup, "a", 0);
    assert!(b.started_ms.unwrap() >= a.healthy_ms.unwrap());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_is_bounded_by_the_port_range() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
services:
  - name: w
    release: {version: v1, argv: [sleep, \"300\"], env: {PATH: /usr/bin:/bin}}
    ports: 19000-19002
  - name: single
    release: {version: v1, argv: [sleep, \"300\"], env: {PATH: /usr/bin:/bin}}
";
    let sup = start(text, dir.path()).await;
    let status = sup.scale("w", 3).await.unwrap();
    assert_eq!(status.replicas, 3);
    let ports: Vec<_> = status.instances.iter().map(|r| r.port).collect();
    assert_eq!(ports, [Some(19000), Some(19001), Some(19002)]);
    let pids = wait_for("three running", || {
        let s = sup.service("w").unwrap();
        s.instances
            .iter()
            .map(|r| r.pid)
            .collect::<Option<Vec<_>>>()
    })
    .await;
    assert_eq!(
        sup.scale("w", 4).await.unwrap_err().to_string(),
        "cannot scale w to 4 replicas: port range 19000-19002 holds 3"
    );
    assert_eq!(
        sup.scale("single", 2).await.unwrap_err().to_string(),
        "cannot scale single to 2 replicas: the service has no `ports`, so it runs one replica"
    );
    assert!(sup.scale("w", 0).await.is_err());
    let status = sup.scale("w", 1).await.unwrap();
    assert_eq!(status.replicas, 1);
    // The replicas scaled away were killed and reaped.
    for pid in &pids[1..] {
        assert!(cmdline(*pid).is_empty(), "replica pid {pid} still runs");
    }
    assert!(matches!(
        sup.restart("nosuch"),
        Err(SupervisorError::UnknownService { .. })
    ));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_stop_timeout_kills_at_once_and_restarts_coalesce() {
    let dir = tempfile::tempdir().unwrap();
    let text = SLEEPER.replace(
        "    restart: {initial: 300ms, max: 1s}\n",
        "    restart: {initial: 300ms, max: 1s}\n    stop_timeout: 0s\n",
    );
    let sup = start(&text, dir.path()).await;
    wait_for("first start", || replica(&sup, "s", 0).pid).await;
    // Three restarts asked for at once are served by one or two restarts,
    // never queued up to kill the fresh child again and again.
    for _ in 0..3 {
        sup.restart("s").unwrap();
    }
    let r = wait_for("restarted", || {
        let r = replica(&sup, "s", 0);
        (r.starts >= 2 && r.pid.is_some()).then_some(r)
    })
    .await;
    assert_eq!(
        r.last_exit.as_deref(),
        Some("restart requested; killed by signal 9")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replica(&sup, "s", 0).starts <= 3);
    sup.shutdown().await;
}

/// An executable `#!/bin/sh` script in `dir`, for children that behave in
/// ways `sleep` cannot (ignore SIGTERM, live as long as a file says).
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_ignoring_sigterm_is_killed_after_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Notes every SIGTERM it gets, and keeps running.
    let got_term = dir.path().join("got-term");
    let stubborn = script(
        dir.path(),
        "stubborn.sh",
        &format!(
            "trap 'echo term >> {}' TERM\nwhile :; do sleep 0.1; done\n",
            got_term.display()
        ),
    );
    let text = format!(
        "\
services:
  - name: s
    release: {{version: v1, argv: [{stubborn}], env: {{PATH: /usr/bin:/bin}}}}
    restart: {{initial: 100ms, max: 1s}}
    stop_timeout: 1500ms
"
    );
    let sup = start(&text, dir.path()).await;
    let pid = wait_for("first start", || replica(&sup, "s", 0).pid).await;
    // The trap is set once the script runs its loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = now_ms();
    sup.restart("s").unwrap();
    let r = wait_for("restarted", || {
        let r = replica(&sup, "s", 0);
        (r.starts == 2 && r.pid.is_some()).then_some(r)
    })
    .await;
    // SIGTERM first (the child saw it and carried on), SIGKILL once
    // stop_timeout had passed.
    assert_eq!(
        std::fs::read_to_string(&got_term).unwrap_or_default(),
        "term\n"
    );
    assert_eq!(
        r.last_exit.as_deref(),
        Some("restart requested; killed by signal 9 (still running 1.5s after SIGTERM)")
    );
    let waited = r.last_exit_ms.unwrap() - asked;
    assert!(waited >= 1500, "killed {waited} ms after the request");
    assert!(cmdline(pid).is_empty(), "the stubborn child still runs");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stayed_up_reset_after_starts_its_backoff_over() {
    let dir = tempfile::tempdir().unwrap();
    let stay = dir.path().join("stay");
    // Exits at once (status 3), or after 2 s once `stay` exists.
    let flaky = script(
        dir.path(),
        "flaky.sh",
        &format!("[ -e {} ] && sleep 2\nexit 3\n", stay.display()),
    );
    let text = format!(
        "\
services:
  - name: f
    release: {{version: v1, argv: [{flaky}], env: {{PATH: /usr/bin:/bin}}}}
    restart: {{initial: 200ms, max: 10s, reset_after: 1s}}
"
    );
    let sup = start(&text, dir.path()).await;
    // The backoff of a replica in backoff: exactly what it waits.
    let backoff = |r: &ReplicaStatus| -> Option<i64> {
        if r.phase != Phase::Backoff {
            return None;
        }
        Some(r.next_start_ms? - r.last_exit_ms?)
    };
    // Quick exits double it: 200, 400, 800, ...
    wait_for("the backoff to grow to 800 ms", || {
        let r = replica(&sup, "f", 0);
        (backoff(&r)? >= 800).then_some(())
    })
    .await;
    assert_eq!(
        replica(&sup, "f", 0).last_exit.as_deref(),
        Some("exit status 3")
    );
    // Now a start stays up 2 s, past reset_after: its exit waits the
    // initial 200 ms again.
    std::fs::write(&stay, "").unwrap();
    let r = wait_for("a long run to end", || {
        let r = replica(&sup, "f", 0);
        let up = r.last_exit_ms? - r.started_ms?;
        (r.phase == Phase::Backoff && up >= 1000).then_some(r)
    })
    .await;
    assert_eq!(backoff(&r), Some(200), "{r:?}");
    sup.shutdown().await;
}
