//! End to end on the real Docker Engine: `heal watch --docker` with a
//! runbook whose signal is read from the engine (`docker: {metric: up}`)
//! and whose step is `action: docker`. A lab service in a container with
//! no restart policy crashes; the engine's `die` event reaches heal's
//! source, the rule fires and heal restarts the container, which serves
//! again. Docker alone would leave it exited (restart count stays 0: the
//! restart is heal's, not a policy's). Then it hangs: its HEALTHCHECK
//! fails, the `health_status: unhealthy` event reaches heal
//! (`docker: {metric: healthy}`), and heal restarts it again; Docker alone
//! only marks it unhealthy. Then it leaks memory: the engine's stats
//! (`docker: {metric: memory}`) pass 64 MiB and heal restarts it long before
//! the service's own 256 MiB limit; Docker alone would let it grow. The
//! `cpu` and `restarts` signals of the same runbook have their series.
//!
//! Fails, never skips, without an engine (CI checks `docker info` first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn heal_lab() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_heal"))
        .parent()
        .unwrap()
        .join("heal-lab");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p lab` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// `/heal-lab` and what it links, imported once per run.
fn lab_image(tag: &str) {
    let lab = heal_lab();
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&lab, root.path().join("heal-lab")).unwrap();
    let ldd = run(&["ldd", lab.to_str().unwrap()]);
    for lib in ldd
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(Path::new)
    {
        let to = root.path().join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap();
    }
    let tar = root.path().with_extension("tar");
    run(&[
        "tar",
        "-C",
        root.path().to_str().unwrap(),
        "-cf",
        tar.to_str().unwrap(),
        ".",
    ]);
    run(&[
        "docker",
        "import",
        "--change",
        r#"ENTRYPOINT ["/heal-lab"]"#,
        "--change",
        r#"HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/heal-lab", "probe", "--addr", "127.0.0.1:8080", "--timeout-ms", "500"]"#,
        tar.to_str().unwrap(),
        tag,
    ]);
    let _ = std::fs::remove_file(&tar);
}

struct Cleanup {
    container: String,
    image: String,
    heal: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.heal.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
    }
}

fn inspect(container: &str, format: &str) -> String {
    run(&["docker", "inspect", "-f", format, container])
}

fn post(addr: &str, path: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
}

fn get_ok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// Injects `fault` into the lab service in `name` and waits (at most
/// `limit`) until the container runs again from a new start; panics with
/// heal's log otherwise. Returns heal's log then.
fn fault_and_restart(name: &str, fault: &str, limit: Duration, log: &Path) -> String {
    let addr = format!("{}:8080", inspect(name, "{{.NetworkSettings.IPAddress}}"));
    let started = inspect(name, "{{.State.StartedAt}}");
    post(&addr, fault);
    let since = Instant::now();
    while since.elapsed() < limit {
        let now = inspect(name, "{{.State.Running}} {{.State.StartedAt}}");
        if now.starts_with("true") && !now.ends_with(&started) {
            return std::fs::read_to_string(log).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "heal did not restart the container after {fault}; heal's log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits (at most 20 s) until the lab service in `name` serves `/`.
fn wait_serving(name: &str, what: &str) {
    let addr = format!("{}:8080", inspect(name, "{{.NetworkSettings.IPAddress}}"));
    let start = Instant::now();
    while !get_ok(&addr) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not serving {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most `limit`) until heal's log contains `want`; returns it.
fn wait_log(log: &Path, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let heal_log = std::fs::read_to_string(log).unwrap_or_default();
        if heal_log.contains(want) {
            return heal_log;
        }
        assert!(
            start.elapsed() < limit,
            "{want:?} not in heal's log:\n{heal_log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn heal_watch_restarts_a_crashed_container_from_the_engines_events() {
    let info = Command::new("docker").args(["info"]).output();
    assert!(
        info.is_ok_and(|o| o.status.success()),
        "Docker Engine is not reachable: this test needs it and never skips"
    );
    let pid = std::process::id();
    let image = format!("heal-watch-test:{pid}");
    let name = format!("heal-w-web-{pid}");
    let mut cleanup = Cleanup {
        container: name.clone(),
        image: image.clone(),
        heal: None,
    };
    lab_image(&image);
    run(&[
        "docker",
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &format!("heal.test=w{pid}"),
        &image,
        "service",
        "--name",
        "web",
        "--port",
        "8080",
        "--addr",
        "0.0.0.0",
    ]);
    let addr = format!("{}:8080", inspect(&name, "{{.NetworkSettings.IPAddress}}"));
    let start = Instant::now();
    while !get_ok(&addr) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the lab service never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker.yaml"),
        format!(
            "signals:
  - name: container_up
    docker: {{metric: up, label: heal.test=w{pid}}}
    detector:
      direction: down
      limit_below: 0.5
  - name: container_healthy
    docker: {{metric: healthy, label: heal.test=w{pid}}}
    detector:
      direction: down
      limit_below: 0.5
  - name: container_memory_bytes
    docker: {{metric: memory, label: heal.test=w{pid}}}
    detector:
      direction: up
      limit_above: 67108864
  - name: container_cpu
    docker: {{metric: cpu, label: heal.test=w{pid}}}
  - name: container_restarts
    docker: {{metric: restarts, label: heal.test=w{pid}}}
rules:
  - name: container-died
    when: {{signal: container_up, direction: down, for: 0s}}
    then:
      - action: docker
        op: restart
        target: container/{{{{instance}}}}
        timeout: 30s
    verify:
      wait: 5s
      recovered_when:
        value_above: 0.5
  - name: container-unhealthy
    when: {{signal: container_healthy, direction: down, for: 0s}}
    then:
      - action: docker
        op: restart
        target: container/{{{{instance}}}}
        timeout: 30s
    verify:
      wait: 8s
      recovered_when:
        value_above: 0.5
  - name: container-leaking
    when: {{signal: container_memory_bytes, direction: up, for: 0s}}
    then:
      - action: docker
        op: restart
        target: container/{{{{instance}}}}
        timeout: 30s
    verify:
      wait: 5s
      recovered_when:
        value_below: 67108864
"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("heal.log");
    let heal = Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["watch", "--prometheus", "http://127.0.0.1:9", "--runbooks"])
        .arg(dir.path())
        .args(["--interval", "1s", "--backfill", "0s", "--execute"])
        .args(["--docker", "/var/run/docker.sock"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HEAL_LOG", "heal::live=info,warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    cleanup.heal = Some(heal);
    // A few healthy slots first.
    std::thread::sleep(Duration::from_secs(4));
    fault_and_restart(&name, "/fault/crash", Duration::from_secs(45), &log);
    // Not a restart policy's doing.
    assert_eq!(inspect(&name, "{{.RestartCount}}"), "0");
    wait_serving(&name, "after heal's restart");
    // heal's log says what it did, with the state before and after.
    wait_log(
        &log,
        &format!("kind=\"docker\" outcome=\"ok\" summary=restart container/{name}: {name} exited"),
        Duration::from_secs(10),
    );

    // The first incident verified before the next fault (its step holds
    // the target until then).
    wait_log(
        &log,
        "incident=inc-000001 step=1 outcome=",
        Duration::from_secs(30),
    );
    // The hang: `/` and `/healthz` block; the HEALTHCHECK fails twice and
    // the engine says `unhealthy`; heal restarts the container again.
    let heal_log = fault_and_restart(&name, "/fault/hang", Duration::from_secs(60), &log);
    assert!(heal_log.contains("rule=container-unhealthy"), "{heal_log}");
    wait_serving(&name, "after the hang's restart");

    // The usage signals have their one series each, read from the engine.
    let metrics = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    for signal in [
        "container_memory_bytes",
        "container_cpu",
        "container_restarts",
    ] {
        let want = format!("heal_series_live{{signal=\"{signal}\"}} 1");
        let start = Instant::now();
        while !metrics().contains(&want) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{want:?} not in heal's metrics:\n{}",
                metrics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // The leak: 16 MiB/s from about 10 MiB; heal reads the engine's stats
    // every second and restarts the container past 64 MiB, well before the
    // service would kill itself at 256 MiB.
    wait_log(
        &log,
        "incident=inc-000002 step=1 outcome=",
        Duration::from_secs(30),
    );
    let heal_log = fault_and_restart(
        &name,
        "/fault/leak?mb_per_s=16",
        Duration::from_secs(45),
        &log,
    );
    // The leak's incident, and its restart done while the container still
    // ran: not after the service's own 256 MiB limit killed it (that would
    // be `exited`, and the crash's rule).
    let incident = heal_log
        .lines()
        .find(|l| l.contains("incident opened") && l.contains("rule=container-leaking"))
        .and_then(|l| l.split("incident=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no container-leaking incident in heal's log:\n{heal_log}"))
        .to_owned();
    // The container runs again a moment before the engine's restart call
    // returns to heal and heal logs it: wait for the line.
    let performed = format!("action{{incident={incident} step=1}}");
    let heal_log = wait_log(
        &log,
        &format!("{performed}: heal::live: action "),
        Duration::from_secs(15),
    );
    let want = format!("summary=restart container/{name}: {name} running");
    assert!(
        heal_log
            .lines()
            .any(|l| l.contains(&performed) && l.contains(&want)),
        "no {want:?} for {incident} in heal's log:\n{heal_log}"
    );
    wait_serving(&name, "after the leak's restart");
    // Verified once the restart is over (a restart of a PID 1 that ignores
    // SIGTERM takes the engine's 10 s stop timeout, twice the rule's 5 s
    // wait), never judged while it ran: recovered.
    let verified = format!("incident={incident} step=1 outcome=");
    let heal_log = wait_log(&log, &verified, Duration::from_secs(30));
    let line_of = |needle: &str| heal_log.lines().position(|l| l.contains(needle));
    assert!(
        line_of(&performed) < line_of(&verified),
        "verified before the action finished:\n{heal_log}"
    );
    assert!(
        heal_log.contains(&format!("{verified}\"recovered\"")),
        "{heal_log}"
    );
}
